"""Reading and writing transformers-style safetensors weights, single-file or sharded with an index.

``model.safetensors`` when everything fits in one shard, else ``model-0000i-of-0000n.safetensors`` plus
``model.safetensors.index.json`` (``{"metadata": {"total_size": ...}, "weight_map": {name: file}}``),
exactly what ``from_pretrained`` expects. No pickle anywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from apt_core.errors import APTError

__all__ = ["parse_size", "write_weights", "read_weights", "WEIGHTS_NAME", "WEIGHTS_INDEX_NAME"]

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: str | int) -> int:
    """Bytes in ``"2GB"``, ``"500MB"``, ``"64KiB"``, ``"1.5GB"`` or a plain integer (decimal units, as transformers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        unit = match.group(2).upper() if match else None
        if not match or unit not in _UNITS:
            raise APTError(f"invalid size {value!r}: use e.g. 2GB, 500MB, 64KiB or a number of bytes")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise APTError(f"size must be positive, got {value!r}")
    return size


def write_weights(state: dict, directory: Path, max_shard_size: str | int = "2GB") -> list[str]:
    """Write *state* (name -> tensor) as safetensors into *directory*; returns the file names written."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    split = split_torch_state_dict_into_shards(state, max_shard_size=parse_size(max_shard_size))
    written = []
    for filename, names in split.filename_to_tensors.items():
        tensors = {name: state[name].detach().to("cpu").contiguous() for name in names}
        save_file(tensors, str(directory / filename), metadata={"format": "pt"})
        written.append(filename)
    if split.is_sharded:
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(split.tensor_to_filename.items()))}
        (directory / WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        written.append(WEIGHTS_INDEX_NAME)
    return written


def read_weights(directory: Path) -> dict:
    """All tensors of a folder's ``model.safetensors`` (or its shards, via the index)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    index_file = directory / WEIGHTS_INDEX_NAME
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise APTError(f"corrupt {index_file}: {exc}") from None
        files = sorted(set(weight_map.values()))
    elif (directory / WEIGHTS_NAME).is_file():
        files = [WEIGHTS_NAME]
    else:
        raise APTError(f"{directory} has no {WEIGHTS_NAME} (or {WEIGHTS_INDEX_NAME}); only safetensors weights are read")
    state: dict = {}
    for name in files:
        path = directory / name
        if not path.is_file() or ".." in Path(name).parts:
            raise APTError(f"weights file {path} is missing")
        try:
            state.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise APTError(f"corrupt safetensors file {path}: {str(exc).splitlines()[0]}") from None
    return state
