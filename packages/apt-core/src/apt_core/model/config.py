"""APTConfig: the plain-JSON description of an APT model (``config.json``).

Every field is a JSON scalar or a list of ints, so a structurally pruned model (fewer heads or a
narrower FFN in some layers) is still an ordinary APT checkpoint: ``n_heads`` and ``d_ff`` may be
per-layer lists. Validation raises :class:`~apt_core.errors.APTError` so a bad ``config.json`` ends
with one clear line instead of a traceback deep inside ``torch.nn``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from apt_core.errors import APTError

__all__ = ["APTConfig", "PRESETS", "load_preset_file"]

#: Names of the presets shipped in ``apt_core/presets/<name>.json``.
PRESETS = ("tiny", "small", "base")

# Keys a config.json may carry that are not model fields (written by us or by exporters).
_IGNORED_KEYS = {"model_type", "apt_version", "training", "architectures"}


@dataclass
class APTConfig:
    """Hyper-parameters of an APT model. See DESIGN.md section 4 for what each part does."""

    vocab_size: int = 260
    d_model: int = 256
    n_layers: int = 4
    #: Heads per layer: one int for all layers, or a list with one entry per layer.
    n_heads: int | list[int] = 4
    #: Width of each head. ``None`` means ``d_model // n_heads`` (of the first layer); fixed explicitly
    #: once heads are pruned, because the head width must not change when the head count does.
    head_dim: int | None = None
    #: Hidden width of the gated FFN: one int or one per layer.
    d_ff: int | list[int] = 688
    max_seq_len: int = 256
    dropout: float = 0.0
    norm_eps: float = 1e-5
    #: "pre" (RMSNorm before each sub-layer, recommended) or "post" (the original APT). Measured on the small
    #: preset (600 steps, sinusoidal): held-out perplexity 147-152 for pre-norm variants vs 381 post-norm
    #: (bench/results/cpu_train.json, "preset_sweep").
    norm_placement: str = "pre"
    #: "sinusoidal" (added to the embeddings, as in the original) or "rope" (the small/base presets use
    #: rope: 75.6 vs 147-152 held-out perplexity in the same sweep).
    position_encoding: str = "sinusoidal"
    rope_theta: float = 10000.0
    activation: str = "silu"
    tie_embeddings: bool = True
    init_std: float = 0.02
    # --- autopoietic attention term: o' = o + alpha * tanh(tau) * g * ((x U) V)
    autopoietic: bool = True
    autopoietic_alpha: float = 0.1
    autopoietic_tau_init: float = 1.0
    sr_ratio: int = 4
    # --- left-spin residual: u' = u + du / sqrt(1 + phi^2), phi = a * softplus(|du|/(eps+|u|) - t0)
    left_spin: bool = True
    left_spin_a: float = 0.5
    left_spin_t0: float = 1.0
    left_spin_eps: float = 1e-6
    # --- special token ids (fixed, shared with APTTokenizer)
    pad_token_id: int = 0
    unk_token_id: int = 1
    bos_token_id: int = 2
    eos_token_id: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived values
    def heads_per_layer(self) -> list[int]:
        """Number of attention heads of each layer."""
        return self._per_layer("n_heads")

    def d_ff_per_layer(self) -> list[int]:
        """FFN hidden width of each layer."""
        return self._per_layer("d_ff")

    @property
    def resolved_head_dim(self) -> int:
        """The width of one attention head."""
        if self.head_dim is not None:
            return self.head_dim
        return self.d_model // self.heads_per_layer()[0]

    @property
    def autopoietic_rank(self) -> int:
        """Rank r of the low-rank autopoietic path: max(4, d_model // sr_ratio)."""
        return max(4, self.d_model // self.sr_ratio)

    def _per_layer(self, name: str) -> list[int]:
        value = getattr(self, name)
        return list(value) if isinstance(value, list) else [value] * self.n_layers

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise APTError naming the first invalid field."""

        def bad(msg: str) -> APTError:
            return APTError(f"invalid APT config: {msg}")

        for name in ("vocab_size", "d_model", "n_layers", "max_seq_len", "sr_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        for name in ("n_heads", "d_ff"):
            value = getattr(self, name)
            items = value if isinstance(value, list) else [value]
            if isinstance(value, list) and len(value) != self.n_layers:
                raise bad(f"{name} has {len(value)} entries but n_layers is {self.n_layers}")
            if not items or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in items):
                raise bad(f"{name} must be a positive integer or a list of them, got {value!r}")
        if self.head_dim is None:
            first = self.heads_per_layer()[0]
            if self.d_model % first:
                raise bad(f"d_model {self.d_model} is not divisible by n_heads {first}; set head_dim")
        elif not isinstance(self.head_dim, int) or self.head_dim <= 0:
            raise bad(f"head_dim must be a positive integer, got {self.head_dim!r}")
        if self.position_encoding == "rope" and self.resolved_head_dim % 2:
            raise bad("rope needs an even head_dim")
        if self.norm_placement not in ("pre", "post"):
            raise bad(f"norm_placement must be 'pre' or 'post', got {self.norm_placement!r}")
        if self.position_encoding not in ("sinusoidal", "rope"):
            raise bad(f"position_encoding must be 'sinusoidal' or 'rope', got {self.position_encoding!r}")
        if self.activation not in ("silu", "gelu", "relu"):
            raise bad(f"activation must be silu, gelu or relu, got {self.activation!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise bad(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("norm_eps", "left_spin_eps", "rope_theta"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise bad(f"{name} must be a positive number")
        for name in ("autopoietic", "left_spin", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise bad(f"{name} must be true or false, got {getattr(self, name)!r}")
        specials = [self.pad_token_id, self.unk_token_id, self.bos_token_id, self.eos_token_id]
        if any(not isinstance(i, int) or not 0 <= i < self.vocab_size for i in specials):
            raise bad(f"special token ids {specials} must lie inside vocab_size {self.vocab_size}")
        if not isinstance(self.extra, dict):
            raise bad("extra must be a JSON object")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready field dict (what ``config.json`` holds, plus ``model_type``)."""
        data = dataclasses.asdict(self)
        return {"model_type": "apt", **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> APTConfig:
        """Build a config from a dict, rejecting unknown fields with one clear line."""
        if not isinstance(data, dict):
            raise APTError(f"invalid APT config: expected a JSON object, got {type(data).__name__}")
        if data.get("model_type", "apt") != "apt":
            raise APTError(f"invalid APT config: model_type is {data['model_type']!r}, expected 'apt'")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - _IGNORED_KEYS)
        if unknown:
            raise APTError(f"invalid APT config: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise APTError(f"invalid APT config: {exc}") from None

    def to_json_file(self, path: str | Path) -> None:
        """Write ``config.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json_file(cls, path: str | Path) -> APTConfig:
        """Read a ``config.json`` (or a preset-style file with a ``training`` section)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise APTError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APTError(f"invalid APT config: {path} is not valid JSON ({exc})") from None
        if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
            data = data["model"]
        return cls.from_dict(data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> APTConfig:
        """One of the shipped presets: ``tiny`` (tests), ``small`` (CPU demo, the default), ``base``;
        keyword arguments override fields (``APTConfig.preset("tiny", vocab_size=512)``)."""
        return cls.from_dict({**load_preset_file(name)["model"], **overrides})

    def replace(self, **changes: Any) -> APTConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        """Parameter count this config produces (tied embedding counted once)."""
        d, total = self.d_model, 0
        total += self.vocab_size * d * (1 if self.tie_embeddings else 2)
        total += d  # final norm
        hd, r = self.resolved_head_dim, self.autopoietic_rank
        for heads, ff in zip(self.heads_per_layer(), self.d_ff_per_layer()):
            inner = heads * hd
            total += 2 * d  # norms
            total += d * 3 * inner + inner * d  # qkv + out
            if self.autopoietic:
                total += d * r + r * inner + d * heads + heads + 1
            total += 3 * d * ff
        return total


def load_preset_file(name: str) -> dict[str, Any]:
    """The raw preset JSON ``{"model": {...}, "training": {...}}`` for a preset name."""
    if name not in PRESETS:
        raise APTError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} or give a JSON file")
    text = resources.files("apt_core").joinpath("presets", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
