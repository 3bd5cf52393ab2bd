"""Validation of user-facing pruning options (shared by the CLI, the config section and the API).

Kept free of torch so the CLI and the config validator can use it without importing heavy modules.
"""

from __future__ import annotations

from collections.abc import Iterable

from apt_core.errors import APTError

__all__ = [
    "METHODS",
    "STRUCTURED_TARGETS",
    "SCOPES",
    "check_sparsity",
    "check_method",
    "check_scope",
    "parse_structured",
    "parse_nm",
    "parse_sparsities",
    "RECOVERY_MODES",
    "DEFAULT_RECOVERY",
    "DEFAULT_KD_ALPHA",
    "DEFAULT_KD_TEMPERATURE",
    "check_recovery",
    "check_kd_alpha",
    "check_kd_temperature",
]

#: Importance criteria. ``random`` is the control every other criterion must beat.
METHODS = ("magnitude", "taylor", "wanda", "random")
#: What structured pruning can remove: attention heads, FFN channels, autopoietic rank components.
STRUCTURED_TARGETS = ("heads", "ffn", "rank")
#: ``layer``: every tensor (or layer) loses the same fraction; ``global``: one threshold for all.
SCOPES = ("layer", "global")
#: How a pruned model is fine-tuned: ``kd`` distils from the model as it was before pruning
#: (KL to its soft targets mixed with next-token CE); ``ce`` is plain next-token training.
RECOVERY_MODES = ("kd", "ce")
#: Defaults of the recovery objective, the setting measured best in bench/bench_prune.py (README).
DEFAULT_RECOVERY = "kd"
DEFAULT_KD_ALPHA = 0.5
DEFAULT_KD_TEMPERATURE = 1.0


def check_sparsity(value: float, name: str = "sparsity") -> float:
    """Return *value* as a float in [0, 1), or raise one clear APTError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise APTError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= number < 1.0 or number != number:
        raise APTError(f"{name} must be in [0, 1) (1 would remove everything), got {value!r}")
    return number


def check_method(method: str) -> str:
    """Return *method* if it is a known importance criterion."""
    if method not in METHODS:
        raise APTError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def check_scope(scope: str) -> str:
    """Return *scope* if it is ``layer`` or ``global``."""
    if scope not in SCOPES:
        raise APTError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return scope


def parse_structured(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"heads,ffn"`` -> ``("heads", "ffn")``; empty/None -> ``()`` (unstructured)."""
    if not text:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in STRUCTURED_TARGETS]
    if unknown:
        raise APTError(f"unknown structured target(s) {', '.join(unknown)}; choose from {', '.join(STRUCTURED_TARGETS)}")
    return tuple(dict.fromkeys(items))


def parse_nm(text: str | None) -> tuple[int, int] | None:
    """``"2:4"`` -> ``(2, 4)``: keep N of every M consecutive weights of an input row."""
    if not text:
        return None
    try:
        n_text, m_text = text.split(":")
        n, m = int(n_text), int(m_text)
    except ValueError:
        raise APTError(f"N:M pattern must look like 2:4, got {text!r}") from None
    if not 0 < n < m:
        raise APTError(f"N:M pattern needs 0 < N < M, got {text!r}")
    return n, m


def parse_sparsities(text: str) -> list[float]:
    """``"0.3,0.5,0.7"`` -> ``[0.3, 0.5, 0.7]`` (each checked, sorted, duplicates removed)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise APTError("--sparsities needs at least one value, e.g. 0.3,0.5,0.7,0.9")
    return sorted({check_sparsity(t, "each sparsity") for t in items})


def check_recovery(mode: str) -> str:
    """Return *mode* if it is a known recovery objective (``kd`` or ``ce``)."""
    if mode not in RECOVERY_MODES:
        raise APTError(f"unknown recovery {mode!r}; choose one of {', '.join(RECOVERY_MODES)}")
    return mode


def _number(value, name: str, expected: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise APTError(f"{name} must be {expected}, got {value!r}") from None
    if number != number:  # NaN passes no comparison, so name it here
        raise APTError(f"{name} must be {expected}, got {value!r}")
    return number


def check_kd_alpha(value, name: str = "--kd-alpha") -> float:
    """Weight of the distillation term, a number in [0, 1] (``1 - alpha`` weighs next-token CE)."""
    number = _number(value, name, "a number in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise APTError(f"{name} must be in [0, 1] (the weight of the distillation term), got {value!r}")
    return number


def check_kd_temperature(value, name: str = "--kd-temperature") -> float:
    """Softmax temperature of the distillation term, a finite number > 0."""
    number = _number(value, name, "a number > 0")
    if not 0.0 < number < float("inf"):
        raise APTError(f"{name} must be > 0 (the softmax temperature), got {value!r}")
    return number
