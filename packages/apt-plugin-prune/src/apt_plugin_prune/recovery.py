"""Recovery by knowledge distillation from the model as it was before pruning.

After pruning, the unpruned model is the best available description of what the pruned one should
compute, and its full next-token distribution carries far more signal per token than the one-hot
label (Minitron, Sheared-LLaMA and LLM-Pruner all recover this way). So the recovery objective is

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE

averaged over tokens: position ``i`` predicts token ``i + 1`` and counts iff that label is not
``-100`` and position ``i`` is a real (not padding) token -- the same positions the model's own
cross-entropy counts. ``T^2`` keeps the soft term's gradient independent of ``T`` (Hinton et al. 2015).
``alpha = 0`` is exactly plain next-token fine-tuning.

:class:`DistillationLoss` is a ``loss_fn`` for the core Trainer. The teacher is held outside the
student's module tree, so it is never optimised, synchronised by DDP or saved in a checkpoint; it
runs in eval mode under ``no_grad``, on the student's device and dtype and inside the trainer's
autocast (the loss function is called within it). This module is deliberately independent of
apt-plugin-distill: pruning must work with apt-core and this package alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from apt_plugin_prune.options import (
    DEFAULT_KD_ALPHA,
    DEFAULT_KD_TEMPERATURE,
    DEFAULT_RECOVERY,
    check_kd_alpha,
    check_kd_temperature,
    check_recovery,
)

__all__ = ["Recovery", "DistillationLoss", "distillation_kl", "counted_positions"]


@dataclass(frozen=True)
class Recovery:
    """How a pruned model is fine-tuned: ``mode`` ``kd`` (distil from the unpruned model) or ``ce``.

    ``alpha`` and ``temperature`` only matter for ``kd``. Defaults: ``options.DEFAULT_*``.
    """

    mode: str = DEFAULT_RECOVERY
    alpha: float = DEFAULT_KD_ALPHA
    temperature: float = DEFAULT_KD_TEMPERATURE

    def __post_init__(self) -> None:
        check_recovery(self.mode)
        # Frozen dataclass: store the checked, converted numbers through object.__setattr__.
        object.__setattr__(self, "alpha", check_kd_alpha(self.alpha, "kd alpha"))
        object.__setattr__(self, "temperature", check_kd_temperature(self.temperature, "kd temperature"))

    @property
    def uses_teacher(self) -> bool:
        return self.mode == "kd"

    def loss_fn(self, teacher: nn.Module | None) -> DistillationLoss | None:
        """The trainer's ``loss_fn`` for this recovery (None for ``ce``: the trainer's own CE)."""
        if not self.uses_teacher:
            return None
        if teacher is None:
            raise ValueError("distillation recovery needs the unpruned model as teacher")
        return DistillationLoss(teacher, self.alpha, self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def counted_positions(labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T-1]`` bool: which logits positions ``0 .. T-2`` predict a counted label."""
    valid = labels[:, 1:] != -100
    if attention_mask is not None:
        valid = valid & attention_mask[:, :-1].to(torch.bool)
    return valid


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    attention_mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * mean over counted tokens of KL(softmax(teacher / T) || softmax(student / T))``.

    Computed in float32 whatever the logits' dtype (softmax of bf16 logits loses the small
    probabilities the soft targets are made of). Memory is a few float32 ``tokens x vocab`` tensors:
    fine for fine-tuning batches; not chunked.
    """
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ")
    valid = counted_positions(labels, attention_mask)
    if not bool(valid.any()):  # nothing to learn from, but keep the graph connected for backward
        return student_logits.sum() * 0.0
    student = student_logits[:, :-1][valid].float() / temperature
    teacher = teacher_logits[:, :-1][valid].float() / temperature
    # kl_div(input=log q, target=log p, log_target) = sum p (log p - log q) = KL(teacher || student).
    kl = F.kl_div(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True, reduction="sum")
    return kl * (temperature**2 / student.shape[0])


class DistillationLoss:
    """Core-trainer ``loss_fn``: ``alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE``.

    Returns ``(loss, {"kd_loss": ..., "ce_loss": ...})``; the trainer averages the metrics over its
    logging window. The teacher is never modified: it is put in eval mode, moved to the student's
    device and dtype on first use (the trainer moves the student when it is built), and run under
    ``no_grad`` -- its ``requires_grad`` flags are left alone because callers may deep-copy it into
    models that must train.
    """

    def __init__(self, teacher: nn.Module, alpha: float = 1.0, temperature: float = 1.0) -> None:
        self.teacher = teacher.eval()
        self.alpha = check_kd_alpha(alpha, "kd alpha")
        self.temperature = check_kd_temperature(temperature, "kd temperature")

    def _place_teacher(self, like: torch.Tensor) -> None:
        current = next(self.teacher.parameters())
        if current.device != like.device or current.dtype != like.dtype:
            self.teacher.to(device=like.device, dtype=like.dtype)
        if self.teacher.training:  # something (e.g. a shared module) switched it back
            self.teacher.eval()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        input_ids, labels = batch["input_ids"], batch["labels"]
        mask = batch.get("attention_mask")
        self._place_teacher(next(model.parameters()))
        # The student's own forward (through any DDP/compile wrapper) gives its CE exactly as plain
        # fine-tuning computes it, so alpha = 0 reproduces the ce recovery.
        out = model(input_ids, labels=labels, attention_mask=mask)
        with torch.no_grad():
            teacher_logits = self.teacher(input_ids, attention_mask=mask).logits
        kd = distillation_kl(out.logits, teacher_logits, labels, mask, self.temperature)
        loss = self.alpha * kd + (1.0 - self.alpha) * out.loss
        return loss, {"kd_loss": kd.detach(), "ce_loss": out.loss.detach()}
