"""Building the student: from a checkpoint, from a config (preset or file), or from a subset of teacher layers."""

from __future__ import annotations

from pathlib import Path

import torch

from apt_core.errors import APTError
from apt_core.model import PRESETS, APTConfig, APTModel

__all__ = ["parse_layers", "student_from_teacher", "student_from_config", "model_vocab_size", "model_width"]


def parse_layers(text: str, n_layers: int) -> list[int]:
    """``"0,2"`` or ``"0-1,3"`` -> sorted distinct 0-based layer indices, each ``< n_layers``."""
    layers: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.extend(range(lo, hi + 1))
            elif part:
                layers.append(int(part))
    except ValueError:
        raise APTError(f"--student-from-teacher expects layer indices like 0,2 or 0-3, got {text!r}") from None
    if not layers:
        raise APTError("--student-from-teacher needs at least one layer index")
    if len(set(layers)) != len(layers) or layers != sorted(layers):
        raise APTError(f"teacher layers must be distinct and increasing, got {text!r}")
    if layers[0] < 0 or layers[-1] >= n_layers:
        raise APTError(f"teacher has layers 0..{n_layers - 1}; {text!r} is out of range")
    return layers


def student_from_teacher(teacher: torch.nn.Module, layers: list[int]) -> APTModel:
    """A student with the teacher's embedding, final norm (and LM head) and the chosen blocks, copied.

    Only APT teachers qualify: their blocks are what the student is made of.
    """
    if not isinstance(teacher, APTModel):
        raise APTError("--student-from-teacher needs an APT teacher (an hf: teacher has different blocks)")
    cfg = teacher.config
    heads, widths = cfg.heads_per_layer(), cfg.d_ff_per_layer()
    changes = {"n_layers": len(layers)}
    if isinstance(cfg.n_heads, list):
        changes["n_heads"] = [heads[i] for i in layers]
    if isinstance(cfg.d_ff, list):
        changes["d_ff"] = [widths[i] for i in layers]
    if cfg.head_dim is None and isinstance(cfg.n_heads, list):
        changes["head_dim"] = cfg.resolved_head_dim  # the first kept layer may have another head count
    student = APTModel(cfg.replace(**changes))
    source = teacher.state_dict()
    state = {}
    for name in student.state_dict():
        if name.startswith("layers."):
            _, index, rest = name.split(".", 2)
            state[name] = source[f"layers.{layers[int(index)]}.{rest}"]
        else:
            state[name] = source[name]
    student.load_weights({k: v.detach().clone().float() for k, v in state.items()}, source="teacher layers")
    return student


def student_from_config(spec: str, vocab_size: int) -> APTModel:
    """A freshly initialised student from a preset name (vocabulary set to the teacher's) or a JSON file
    (whose ``vocab_size`` must equal the teacher's)."""
    if spec in PRESETS:
        return APTModel(APTConfig.preset(spec).replace(vocab_size=vocab_size))
    path = Path(spec)
    if not path.is_file():
        raise APTError(f"--student-config: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    config = APTConfig.from_json_file(path)
    if config.vocab_size != vocab_size:
        raise APTError(f"student config {path} has vocab_size {config.vocab_size}, the teacher {vocab_size}; "
                       "they must match")
    return APTModel(config)


def model_vocab_size(model: torch.nn.Module) -> int:
    """Vocabulary size of an APT or Hugging Face causal LM (from its config, else its output embedding)."""
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None)
    if isinstance(size, int):
        return size
    if hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None:
        return model.get_output_embeddings().weight.shape[0]
    raise APTError(f"cannot tell the vocabulary size of {type(model).__name__}")


def model_width(model: torch.nn.Module) -> int:
    """Hidden width (``d_model`` / ``hidden_size``) of an APT or Hugging Face model."""
    config = getattr(model, "config", None)
    for name in ("d_model", "hidden_size", "n_embd"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise APTError(f"cannot tell the hidden width of {type(model).__name__}")
