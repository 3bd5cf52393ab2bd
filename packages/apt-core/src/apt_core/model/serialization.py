"""Reading and writing safetensors files with user-facing errors (no pickle anywhere)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from apt_core.errors import APTError

__all__ = ["read_safetensors", "write_safetensors"]


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, corrupt or truncated file raises one clear APTError."""
    path = Path(path)
    if not path.is_file():
        raise APTError(f"missing file: {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise APTError(f"corrupt or truncated safetensors file {path}: {reason}") from None


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors (made contiguous, moved to CPU) to a safetensors file."""
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    save_file(cpu, str(path), metadata={"format": "pt", **(metadata or {})})
