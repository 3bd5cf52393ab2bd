"""Hugging Face configuration of the APT (Autopoietic Transformer) causal language model.

Self-contained: imports only transformers, so it runs as ``trust_remote_code`` next to an exported
model. Field names are APT's own (``d_model``, ``n_layers`` ...); the usual transformers names
(``hidden_size``, ``num_hidden_layers`` ...) are aliases. ``n_heads`` and ``d_ff`` may be per-layer
lists (a structurally pruned model).
"""

from __future__ import annotations

try:  # transformers >= 5 spells it PreTrainedConfig; keep the 4.x name as a fallback
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # pragma: no cover
    from transformers import PretrainedConfig as _BaseConfig

__all__ = ["APTConfig"]


class APTConfig(_BaseConfig):
    """Configuration of :class:`APTForCausalLM` (``model_type = "apt"``)."""

    model_type = "apt"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "max_seq_len",
        "initializer_range": "init_std",
        "rms_norm_eps": "norm_eps",
    }

    def __init__(
        self,
        vocab_size: int = 260,
        d_model: int = 256,
        n_layers: int = 4,
        n_heads: int | list[int] = 4,
        head_dim: int | None = None,
        d_ff: int | list[int] = 688,
        max_seq_len: int = 256,
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
        norm_placement: str = "pre",
        position_encoding: str = "sinusoidal",
        rope_theta: float = 10000.0,
        activation: str = "silu",
        init_std: float = 0.02,
        autopoietic: bool = True,
        autopoietic_alpha: float = 0.1,
        autopoietic_tau_init: float = 1.0,
        sr_ratio: int = 4,
        left_spin: bool = True,
        left_spin_a: float = 0.5,
        left_spin_t0: float = 1.0,
        left_spin_eps: float = 1e-6,
        tie_word_embeddings: bool = True,
        pad_token_id: int = 0,
        unk_token_id: int = 1,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = list(n_heads) if isinstance(n_heads, (list, tuple)) else n_heads
        self.head_dim = head_dim
        self.d_ff = list(d_ff) if isinstance(d_ff, (list, tuple)) else d_ff
        self.max_seq_len = max_seq_len
        self.dropout = dropout
        self.norm_eps = norm_eps
        self.norm_placement = norm_placement
        self.position_encoding = position_encoding
        self.rope_theta = rope_theta
        self.activation = activation
        self.init_std = init_std
        self.autopoietic = autopoietic
        self.autopoietic_alpha = autopoietic_alpha
        self.autopoietic_tau_init = autopoietic_tau_init
        self.sr_ratio = sr_ratio
        self.left_spin = left_spin
        self.left_spin_a = left_spin_a
        self.left_spin_t0 = left_spin_t0
        self.left_spin_eps = left_spin_eps
        self.unk_token_id = unk_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        # Some transformers versions reset these in the base __init__; APT always ties as configured.
        self.tie_word_embeddings = tie_word_embeddings

    # ------------------------------------------------------------------ derived values
    def heads_per_layer(self) -> list[int]:
        """Number of attention heads of each layer."""
        return list(self.n_heads) if isinstance(self.n_heads, list) else [self.n_heads] * self.n_layers

    def d_ff_per_layer(self) -> list[int]:
        """FFN hidden width of each layer."""
        return list(self.d_ff) if isinstance(self.d_ff, list) else [self.d_ff] * self.n_layers

    @property
    def resolved_head_dim(self) -> int:
        """Width of one attention head."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.heads_per_layer()[0]

    @property
    def autopoietic_rank(self) -> int:
        """Rank of the low-rank autopoietic path: max(4, d_model // sr_ratio)."""
        return max(4, self.d_model // self.sr_ratio)
