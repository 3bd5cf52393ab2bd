"""Checkpoints: a directory of safetensors + JSON files, written atomically, with a ``latest`` pointer.

Layout of one checkpoint directory::

    config.json            APTConfig fields
    model.safetensors      weights
    tokenizer.json         the tokenizer (required to load for generation/eval)
    trainer_state.json     step, epoch, data position, metrics, RNG states (base64) -- when saved by a trainer
    optimizer.safetensors  optimizer tensors (e.g. AdamW moments), keyed ``state.<param index>.<name>``
    optimizer.json         everything else in the optimizer state dict (param groups, scalars)

A run directory holds ``checkpoint-0000100/`` ... plus ``latest`` (a text file naming one of them).
A checkpoint is first written to a hidden temporary sibling and renamed into place, and ``latest``
is replaced last, so a crash at any moment leaves either the old or the new checkpoint, never half.
No pickle anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from apt_core.errors import APTError
from apt_core.model import APTConfig, APTModel
from apt_core.model.serialization import read_safetensors, write_safetensors
from apt_core.tokenizer import TOKENIZER_FILE, APTTokenizer

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_optimizer_state",
    "read_optimizer_state",
    "check_param_groups",
    "resolve_checkpoint",
    "list_checkpoints",
    "remove_old_checkpoints",
    "read_trainer_state",
    "write_latest",
    "checkpoint_name",
    "unwrap_model",
    "capture_rng_state",
    "restore_rng_state",
]

LATEST = "latest"
_NAME_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    model: APTModel
    tokenizer: APTTokenizer | None
    trainer_state: dict[str, Any] | None

    @property
    def config(self) -> APTConfig:
        return self.model.config


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint at *step* (zero-padded so names sort by step)."""
    return f"checkpoint-{step:07d}"


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# ---------------------------------------------------------------------------------------- saving
def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    tokenizer: APTTokenizer | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
    *,
    update_latest: bool = False,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically; with ``update_latest`` point ``<parent>/latest`` at it.

    An existing directory of the same name is replaced only after the new one is complete.
    ``model_state`` / ``optimizer_state`` are written instead of ``model.state_dict()`` /
    ``optimizer.state_dict()`` when given: a sharded (FSDP) model's weights gathered into full
    tensors, and its optimizer state in the ordinary layout (``state`` keyed by parameter index).
    """
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    model = unwrap_model(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
    try:
        model.config.to_json_file(tmp / "config.json")
        write_safetensors(model.state_dict() if model_state is None else model_state, tmp / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save(tmp)
        if optimizer is not None:
            _save_optimizer(optimizer.state_dict() if optimizer_state is None else optimizer_state,
                            type(optimizer).__name__, tmp)
        if trainer_state is not None:
            _write_json(tmp / "trainer_state.json", trainer_state)
        _fsync_tree(tmp)
        if directory.exists():
            old = parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if update_latest:
        write_latest(parent, directory.name)
    return directory


def write_latest(run_dir: str | Path, name: str) -> None:
    """Atomically replace ``run_dir/latest`` with *name*."""
    run_dir = Path(run_dir)
    tmp = run_dir / f".{LATEST}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run_dir / LATEST)
    _fsync_dir(run_dir)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _save_optimizer(state: dict[str, Any], name: str, directory: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    write_safetensors(tensors, directory / "optimizer.safetensors")
    layout = {"format": "apt-optimizer-v1", "optimizer": name,
              "param_groups": state["param_groups"], "scalars": scalars}
    _write_json(directory / "optimizer.json", layout)


# ---------------------------------------------------------------------------------------- loading
def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory *path* names: itself, or what a run directory's ``latest`` names.

    A run directory without ``latest`` (e.g. interrupted before the first pointer) resolves to its
    highest complete ``checkpoint-N``. The result is checked for ``config.json`` and ``model.safetensors``.
    """
    path = Path(path)
    if not path.exists():
        raise APTError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise APTError(f"not a checkpoint directory: {path}")
    target = path
    if (path / LATEST).is_file():
        name = (path / LATEST).read_text(encoding="utf-8").strip()
        if not name or "/" in name or name.startswith("."):
            raise APTError(f"invalid checkpoint pointer {path / LATEST}: {name!r}")
        target = path / name
        if not target.is_dir():
            raise APTError(f"{path / LATEST} names {name}, which does not exist")
    elif not (path / "config.json").exists():
        found = list_checkpoints(path)
        if not found:
            raise APTError(f"not an APT checkpoint: {path} has no config.json and no checkpoints")
        target = found[-1]
    for required in ("config.json", "model.safetensors"):
        if not (target / required).is_file():
            raise APTError(f"incomplete checkpoint {target}: {required} is missing")
    return target


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` directories of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _NAME_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def remove_old_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest *keep_last* checkpoints (never the one ``latest`` names)."""
    run_dir = Path(run_dir)
    if keep_last is None or keep_last <= 0:
        return []
    pointer = (run_dir / LATEST).read_text().strip() if (run_dir / LATEST).is_file() else None
    removed = []
    for path in list_checkpoints(run_dir)[:-keep_last]:
        if path.name != pointer:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def read_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """``trainer_state.json`` of a checkpoint, or None if it has none."""
    file = Path(path) / "trainer_state.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APTError(f"corrupt trainer state {file}: {exc}") from None


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", require_tokenizer: bool = True
) -> Checkpoint:
    """Load model, tokenizer and trainer state from a checkpoint (or a run directory's latest).

    Any user-fixable problem (missing files, corrupt safetensors, unknown config fields, missing
    tokenizer, weights that do not fit the config) raises :class:`APTError` with one line.
    """
    directory = resolve_checkpoint(path)
    model = APTModel.from_pretrained(directory, map_location=map_location)
    tokenizer = None
    if (directory / TOKENIZER_FILE).is_file():
        tokenizer = APTTokenizer.from_pretrained(directory)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise APTError(f"tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model only "
                           f"{model.config.vocab_size}")
    elif require_tokenizer:
        raise APTError(f"missing tokenizer: {directory} has no {TOKENIZER_FILE}")
    return Checkpoint(path=directory, model=model, tokenizer=tokenizer, trainer_state=read_trainer_state(directory))


def read_optimizer_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The optimizer state dict saved with a checkpoint (``state`` keyed by parameter index)."""
    directory = Path(path)
    layout_file = directory / "optimizer.json"
    if not layout_file.is_file():
        raise APTError(f"checkpoint {directory} has no optimizer state (optimizer.json missing)")
    try:
        layout = json.loads(layout_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APTError(f"corrupt optimizer state {layout_file}: {exc}") from None
    tensors = read_safetensors(directory / "optimizer.safetensors", device=map_location)
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in layout.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = layout["param_groups"]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer,
                         map_location: str | torch.device = "cpu") -> None:
    """Restore an optimizer saved with a checkpoint (the optimizer must be built over the same params)."""
    directory = Path(path)
    saved = read_optimizer_state(directory, map_location)
    state, groups = saved["state"], saved["param_groups"]
    check_param_groups(groups, optimizer, directory)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise APTError(f"optimizer state in {directory} does not fit: {exc}") from None


def check_param_groups(groups: list[dict[str, Any]], optimizer: torch.optim.Optimizer, source: str | Path) -> None:
    """One APTError line unless saved *groups* hold as many parameters, group by group, as *optimizer*."""
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
        raise APTError(f"optimizer state in {source} does not match the model's parameters")


# ---------------------------------------------------------------------------------------- RNG
def capture_rng_state() -> dict[str, Any]:
    """Python and torch (CPU + CUDA) RNG states as JSON-ready values (torch states base64-encoded)."""
    def encode(t: torch.Tensor) -> str:
        return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")

    state: dict[str, Any] = {"python": _python_state_to_json(random.getstate()),
                             "torch": encode(torch.get_rng_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()

    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


def _python_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
