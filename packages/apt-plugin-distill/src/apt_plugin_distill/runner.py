"""One distillation run, as a library call: the command line and the benchmark both use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from apt_core.errors import APTError
from apt_core.training import TrainingArguments

from .objective import DistillationModule, DistillSettings, distill_loss_fn
from .student import model_vocab_size
from .training import DistillTrainer, Throughput

__all__ = ["DistillResult", "run_distillation", "check_vocab"]


@dataclass
class DistillResult:
    """What :func:`run_distillation` returns."""

    student: torch.nn.Module
    metrics: dict[str, float]
    tokens_per_second: float | None
    checkpoint: str | None
    history: list[dict[str, float]] = field(default_factory=list)


def check_vocab(teacher: torch.nn.Module, student: torch.nn.Module, tokenizer: Any = None) -> None:
    """Teacher and student must share one vocabulary (and the tokenizer must fit it): else one clear line."""
    t_vocab, s_vocab = model_vocab_size(teacher), model_vocab_size(student)
    if t_vocab != s_vocab:
        raise APTError(f"teacher vocabulary has {t_vocab} tokens, student vocabulary {s_vocab}: distillation "
                       "compares next-token distributions, so both must use the same tokenizer")
    if tokenizer is not None and tokenizer.vocab_size > s_vocab:
        raise APTError(f"the tokenizer has {tokenizer.vocab_size} tokens, more than the models' {s_vocab}")


def run_distillation(teacher: torch.nn.Module | None, student: torch.nn.Module, settings: DistillSettings,
                     args: TrainingArguments, train_data: Any, eval_data: Any = None, tokenizer: Any = None,
                     hook: Any = None) -> DistillResult:
    """Train *student* against *teacher* through the core Trainer (hooks, checkpoints, resume, DDP).

    *teacher* may be ``None`` only for plain training (``alpha == 0`` and no feature/relation terms).
    The trained student is returned (and saved under ``args.out_dir`` as an ordinary APT checkpoint).
    """
    if teacher is not None:
        check_vocab(teacher, student, tokenizer)
    module = DistillationModule(student, teacher if settings.needs_teacher else None, settings)
    throughput = Throughput()
    trainer = DistillTrainer(module, args, train_data, eval_data=eval_data, tokenizer=tokenizer,
                             loss_fn=distill_loss_fn, callbacks=[throughput], hook=hook)
    metrics = trainer.train()
    checkpoint = None
    if trainer.out_dir is not None and trainer.state.last_checkpoint:
        checkpoint = str(trainer.out_dir / trainer.state.last_checkpoint)
    return DistillResult(student=student, metrics=metrics, tokens_per_second=throughput.tokens_per_second,
                         checkpoint=checkpoint, history=list(trainer.state.eval_history))
