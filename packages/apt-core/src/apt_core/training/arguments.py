"""TrainingArguments and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from apt_core.errors import APTError

__all__ = ["TrainingArguments", "lr_at_step"]


@dataclass
class TrainingArguments:
    """Everything the :class:`~apt_core.training.Trainer` needs besides model and data."""

    #: Run directory for checkpoints (``checkpoint-N/`` + ``latest``); None = never save.
    out_dir: str | None = None
    max_steps: int = 1000
    #: Sequences per micro-batch on each process.
    batch_size: int = 16
    #: Micro-batches per optimizer step (global batch = batch_size * world_size * grad_accum_steps).
    grad_accum_steps: int = 1
    #: Block length used when the training data is a token stream.
    seq_len: int = 128
    lr: float = 3e-4
    #: The cosine schedule ends at ``lr * min_lr_ratio``.
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    #: Gradient-norm clipping; None or 0 disables it.
    max_grad_norm: float | None = 1.0
    #: Evaluate every N steps (0 = only at the end).
    eval_every: int = 0
    #: At most this many eval batches per evaluation (0 = the whole eval set).
    eval_batches: int = 0
    eval_batch_size: int | None = None
    #: Save a checkpoint every N steps (0 = only at the end); keep the newest ``keep_last``.
    save_every: int = 0
    keep_last: int = 3
    save_final: bool = True
    #: Read the loss back from the device every N steps (the only host sync in the step loop).
    log_every: int = 10
    seed: int = 0
    #: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16", "fp16" (CUDA, with a grad scaler) or "no".
    mixed_precision: str = "auto"
    compile: bool = False
    #: How a run under ``torchrun`` spreads over its processes: "ddp" (every process holds the whole
    #: model, gradients are all-reduced) or "fsdp" (parameters, gradients and optimizer state are
    #: sharded over the processes, for models that do not fit one card). A single process ignores it.
    distributed: str = "ddp"
    #: "auto" (cuda:LOCAL_RANK when available, else cpu) or an explicit torch device string.
    device: str = "auto"
    progress: bool = True
    #: Checkpoint or run directory to continue from.
    resume_from: str | None = None
    #: ``[start, end]``: profile optimizer steps start+1..end with torch.profiler; every process writes a
    #: trace and a table of its costliest operations to ``out_dir/profile/`` (see StepProfiler).
    profile_steps: list[int] | None = None

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accum_steps", "seq_len", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise APTError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "save_every", "keep_last"):
            if getattr(self, name) < 0:
                raise APTError(f"{name} must be >= 0")
        if not self.lr > 0:
            raise APTError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise APTError("min_lr_ratio must be in [0, 1]")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise APTError(f"mixed_precision must be auto, bf16, fp16 or no, got {self.mixed_precision!r}")
        if self.distributed not in ("ddp", "fsdp"):
            raise APTError(f"distributed must be ddp or fsdp, got {self.distributed!r}")
        if self.profile_steps is not None:
            window = list(self.profile_steps)
            if len(window) != 2 or not all(isinstance(v, int) for v in window) or not 1 <= window[0] < window[1] <= self.max_steps:
                raise APTError(f"profile_steps must be [start, end] with 1 <= start < end <= max_steps "
                               f"({self.max_steps}), got {self.profile_steps!r}")
            if not self.out_dir:
                raise APTError("profile_steps needs an out_dir to write the profile to")
            self.profile_steps = window

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingArguments:
        """Build from a dict (e.g. a preset's ``training`` section), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise APTError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lr_at_step(args: TrainingArguments, step: int) -> float:
    """Learning rate for optimizer step *step* (0-based): linear warmup, then cosine to min_lr."""
    if args.warmup_steps and step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    decay_steps = max(1, args.max_steps - args.warmup_steps)
    progress = min(1.0, (step - args.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cosine)
