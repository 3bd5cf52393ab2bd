"""Resolving ``--model`` / ``--teacher`` values to a causal LM through the ``model_loaders`` registry.

A bare path or ``apt:PATH`` is an APT checkpoint (a checkpoint directory or a run directory with a
``latest`` pointer). Other schemes (``hf:gpt2`` ...) come from plugins.
"""

from __future__ import annotations

from pathlib import Path

from apt_core.data import parse_data_spec

__all__ = ["load_model", "load_apt_model", "parse_model_spec"]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``(scheme, location)`` of a model spec; no scheme (or an existing path) means ``apt``."""
    scheme, location = parse_data_spec(spec)
    if scheme in ("file", "default"):
        return "apt", str(spec)
    return scheme, location


def load_model(spec: str | Path):
    """The model a ``--model`` / ``--teacher`` value names, in eval mode on the CPU."""
    from apt_core.registry import get_registry

    scheme, location = parse_model_spec(str(spec))
    model = get_registry("model_loaders").get(scheme)(location)
    model.eval()
    return model


def load_apt_model(location: str):
    """Load the APT model of a checkpoint (or run) directory; the tokenizer is not required."""
    from apt_core.checkpoint import load_checkpoint

    return load_checkpoint(location, require_tokenizer=False).model
