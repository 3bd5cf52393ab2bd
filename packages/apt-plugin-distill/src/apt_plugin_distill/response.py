"""Response (logit) distillation: forward / reverse KL with temperature, mixed with hard-label CE.

Notation: student logits ``s``, teacher logits ``t`` (``[B, T, V]``), labels ``y`` (``[B, T]``, unshifted,
``-100`` = ignored) and ``attention_mask`` ``a`` (1 = real token). Position ``i`` predicts token ``i+1``,
so it counts iff ``y[i+1] != -100`` and ``a[i] = a[i+1] = 1``; ``N`` is the number of counted positions
(tokens of the whole batch, not sequences). With ``p = softmax(t_i / T)`` and ``q = softmax(s_i / T)``::

    forward KL  = T^2 / N * sum_i sum_v p_v (log p_v - log q_v)        # KL(teacher || student), Hinton
    reverse KL  = T^2 / N * sum_i sum_v q_v (log q_v - log p_v)        # KL(student || teacher), MiniLLM
    CE          = 1 / N   * sum_i -log softmax(s_i)[y_{i+1}]
    loss        = alpha * KL + (1 - alpha) * CE

The ``T^2`` factor keeps the gradient magnitude of the soft term independent of ``T`` (Hinton et al. 2015).

Memory: the loss is computed over chunks of positions, and the gradient with respect to the student
logits is computed in the same pass (closed form) and stored once, in the logits' dtype. So a large
vocabulary never needs an fp32 ``[B, T, V]`` copy of either model's logits -- only ``chunk x V`` fp32
temporaries -- and no softmax is kept for a second pass.

Closed-form gradients (``u = s / T``): forward KL ``dL/ds = T / N * (q - p)``; reverse KL
``dL/ds = T / N * q * (log q - log p - KL_i)``; CE ``dL/ds = 1 / N * (softmax(s) - onehot(y))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from apt_core.errors import APTError

__all__ = ["KL_KINDS", "ResponseLoss", "response_loss", "kd_positions", "DEFAULT_CHUNK_TOKENS"]

#: ``forward`` = KL(teacher || student) (mode-covering, the classic), ``reverse`` = KL(student || teacher).
KL_KINDS = ("forward", "reverse")
#: Positions per chunk. 2048 x 32k vocab x 4 bytes x ~4 temporaries = 1 GiB at most.
DEFAULT_CHUNK_TOKENS = 2048


@dataclass
class ResponseLoss:
    """``loss`` (differentiable) = ``alpha * kd + (1 - alpha) * ce``; ``kd`` / ``ce`` are detached parts."""

    loss: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor
    num_tokens: int


def kd_positions(labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices ``(rows, targets)`` of the counted positions: ``rows`` index the ``[B*T]`` logits
    that predict, ``targets`` the ``[B*T]`` labels they predict (``rows + 1``, within one sequence)."""
    bsz, seq = labels.shape
    valid = labels[:, 1:] != -100
    if attention_mask is not None:
        mask = attention_mask.to(torch.bool)
        valid = valid & mask[:, 1:] & mask[:, :-1]
    batch_idx, pos = valid.nonzero(as_tuple=True)
    rows = batch_idx * seq + pos
    return rows, rows + 1


def _chunk_terms(s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor, temperature: float, kind: str,
                 alpha: float, norm: float):
    """Loss sums and d(loss)/ds for one chunk of positions (fp32, or fp64 for fp64 inputs)."""
    compute = torch.promote_types(s.dtype, torch.float32)
    s = s.to(compute)
    kd_sum = s.new_zeros(())
    grad = torch.zeros_like(s)
    if t is not None and alpha > 0:
        log_q = F.log_softmax(s / temperature, dim=-1)
        log_p = F.log_softmax(t.to(compute) / temperature, dim=-1)
        if kind == "forward":
            p = log_p.exp()
            per_pos = (p * (log_p - log_q)).sum(-1)
            grad += (alpha * temperature / norm) * (log_q.exp() - p)
        else:
            q = log_q.exp()
            diff = log_q - log_p
            per_pos = (q * diff).sum(-1)
            grad += (alpha * temperature / norm) * q * (diff - per_pos[:, None])
        kd_sum = per_pos.sum() * temperature**2
    ce_sum = s.new_zeros(())
    if alpha < 1:
        log_r = F.log_softmax(s, dim=-1)
        ce_sum = -log_r.gather(-1, y[:, None]).sum()
        soft = log_r.exp()
        soft[torch.arange(len(y), device=s.device), y] -= 1.0
        grad += ((1.0 - alpha) / norm) * soft
    return kd_sum, ce_sum, grad


class _ChunkedResponse(torch.autograd.Function):
    """Loss and its gradient in one chunked pass; backward only scales the stored gradient."""

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, labels, rows, targets, temperature, kind, alpha, chunk):
        vocab = student_logits.shape[-1]
        flat_s = student_logits.reshape(-1, vocab)  # a view for the contiguous logits models return
        flat_t = teacher_logits.reshape(-1, vocab) if teacher_logits is not None else None
        flat_y = labels.reshape(-1)
        norm = float(max(len(rows), 1))
        grad = torch.zeros_like(flat_s) if student_logits.requires_grad else None
        compute = torch.promote_types(flat_s.dtype, torch.float32)
        kd_total = flat_s.new_zeros((), dtype=compute)
        ce_total = flat_s.new_zeros((), dtype=compute)
        for start in range(0, len(rows), chunk):
            r, tg = rows[start:start + chunk], targets[start:start + chunk]
            kd_sum, ce_sum, g = _chunk_terms(flat_s[r], None if flat_t is None else flat_t[r], flat_y[tg],
                                             temperature, kind, alpha, norm)
            kd_total += kd_sum
            ce_total += ce_sum
            if grad is not None:
                grad.index_copy_(0, r, g.to(grad.dtype))
        kd, ce = kd_total / norm, ce_total / norm
        loss = alpha * kd + (1.0 - alpha) * ce
        ctx.save_for_backward(grad.view_as(student_logits) if grad is not None else None)
        ctx.mark_non_differentiable(kd, ce)
        return loss, kd, ce

    @staticmethod
    def backward(ctx, grad_loss, _grad_kd, _grad_ce):
        (grad,) = ctx.saved_tensors
        grad_s = None if grad is None else grad * grad_loss.to(grad.dtype)
        return grad_s, None, None, None, None, None, None, None, None


def response_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.9,
    kind: str = "forward",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> ResponseLoss:
    """Masked, token-averaged ``alpha * T^2 * KL + (1 - alpha) * CE`` (see the module docstring).

    :param student_logits: ``[B, T, V]``, any float dtype; the only input that receives a gradient.
    :param teacher_logits: ``[B, T, V]`` (no gradient), or ``None`` when ``alpha == 0`` (CE only).
    :param labels: ``[B, T]`` token ids, unshifted (position ``i`` predicts ``labels[i+1]``); ``-100`` ignored.
    :param attention_mask: ``[B, T]``, 1 for real tokens; padding never counts, on either side.
    :param kind: ``"forward"`` (KL(teacher || student)) or ``"reverse"`` (KL(student || teacher)).
    """
    if kind not in KL_KINDS:
        raise APTError(f"unknown KL direction {kind!r} (use {' or '.join(KL_KINDS)})")
    if not 0.0 <= alpha <= 1.0:
        raise APTError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise APTError(f"temperature must be positive, got {temperature}")
    if teacher_logits is None and alpha > 0:
        raise ValueError("teacher logits are required when alpha > 0")
    if teacher_logits is not None and teacher_logits.shape != student_logits.shape:
        raise APTError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                       f"{tuple(student_logits.shape)} differ (vocabulary sizes must match)")
    if labels.shape != student_logits.shape[:2]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match logits {tuple(student_logits.shape)}")
    rows, targets = kd_positions(labels, attention_mask)
    loss, kd, ce = _ChunkedResponse.apply(
        student_logits.contiguous(), None if teacher_logits is None else teacher_logits.detach().contiguous(),
        labels, rows, targets, float(temperature), kind, float(alpha), int(chunk_tokens))
    return ResponseLoss(loss=loss, kd=kd, ce=ce, num_tokens=len(rows))
