"""Feature (hidden-state) distillation through learned projections, and attention-map distillation.

Hidden states are the tuples models return with ``output_hidden_states=True``: index 0 is the embedding
output, index ``l`` the output of block ``l`` (``L`` blocks). Student block ``i`` (1-based) is matched to
teacher block ``m(i) = ceil(i * L_t / L_s)``, so the last blocks always meet and the map spreads evenly.

Feature loss, with ``W_i`` a learned ``Linear(d_s, d_t)`` per matched pair and ``n(x)`` the parameter-free
layer normalisation (zero mean, unit variance over the feature axis; it removes the scale difference
between models, which would otherwise dominate)::

    L_feat = 1 / |map| * sum_i  1 / (N * d_t) * sum_{tokens j} || n(W_i h^s_{i,j}) - n(h^t_{m(i),j}) ||^2

over the ``N`` real (unpadded) tokens. The projections train with the student but are not part of it:
they are never written into the student checkpoint.

Attention loss (APT models; recomputed from the hidden states, because scaled-dot-product kernels never
materialise the maps)::

    L_attn = 1 / |map| * sum_i 1 / (N * H) * sum_{h, query j} KL(A^t_{m(i),h,j} || A^s_{i,h,j})

when both layers have the same number of heads; when the teacher has ``k`` times as many heads, each
student head is matched to the mean of ``k`` consecutive teacher heads; any other ratio is an error.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from apt_core.errors import APTError

__all__ = ["layer_map", "FeatureProjections", "feature_loss", "apt_attention_probs", "attention_loss"]


def layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``[(i, ceil(i * L_t / L_s))]`` for student blocks ``i = 1..L_s`` (hidden-state indices)."""
    if student_layers < 1 or teacher_layers < 1:
        raise APTError("layer map needs at least one layer on each side")
    return [(i, math.ceil(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


class FeatureProjections(nn.Module):
    """One ``Linear(d_student, d_teacher)`` per matched layer; identity-initialised when widths agree
    (so a student that already equals its teacher starts at zero feature loss)."""

    def __init__(self, d_student: int, d_teacher: int, pairs: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pairs = list(pairs)
        self.proj = nn.ModuleList(nn.Linear(d_student, d_teacher, bias=False) for _ in self.pairs)
        for linear in self.proj:
            if d_student == d_teacher:
                nn.init.eye_(linear.weight)
            else:
                nn.init.normal_(linear.weight, std=1.0 / math.sqrt(d_student))

    def forward(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj[index](hidden)


def _token_mask(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    return attention_mask.to(torch.bool)


def feature_loss(student_hidden, teacher_hidden, projections: FeatureProjections,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``L_feat`` of the module docstring: mean squared distance of normalised, projected states."""
    mask = _token_mask(student_hidden[0], attention_mask)
    total = student_hidden[0].new_zeros((), dtype=torch.float32)
    for index, (s_idx, t_idx) in enumerate(projections.pairs):
        s = student_hidden[s_idx][mask]
        t = teacher_hidden[t_idx][mask].detach()
        ps = projections(index, s.to(projections.proj[index].weight.dtype)).float()
        ps = F.layer_norm(ps, ps.shape[-1:])
        pt = F.layer_norm(t.float(), t.shape[-1:])
        total = total + F.mse_loss(ps, pt, reduction="mean")
    return total / max(len(projections.pairs), 1)


def apt_attention_probs(model: nn.Module, hidden_states, layer: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities ``[B, H, T, T]`` of APT block ``layer`` (1-based), recomputed from its input
    ``hidden_states[layer - 1]`` exactly as the block computes them (norm placement, RoPE, causal mask)."""
    if not hasattr(model, "layers") or not hasattr(model.layers[0], "attn"):
        raise APTError("attention distillation needs APT models (teacher and student)")
    block = model.layers[layer - 1]
    attn = block.attn
    x = hidden_states[layer - 1]
    if block.pre_norm:
        x = block.attn_norm(x)
    bsz, seq, _ = x.shape
    q, k, _v = attn.qkv(x).view(bsz, seq, 3, attn.n_heads, attn.head_dim).unbind(dim=2)
    q, k = q.transpose(1, 2).float(), k.transpose(1, 2).float()
    if getattr(model.config, "position_encoding", "sinusoidal") == "rope":
        cos, sin = model.rope_cos[:seq].float(), model.rope_sin[:seq].float()
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    allowed = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()[None, None]
    if attention_mask is not None:
        keys = attention_mask.to(torch.bool)[:, None, None, :]
        allowed = (allowed & keys) | torch.eye(seq, dtype=torch.bool, device=x.device)[None, None]
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as APT applies it (tables hold both halves; rotate_half written with ``roll``)."""
    half = x.shape[-1] // 2
    sign = torch.cat([-torch.ones(half, dtype=x.dtype, device=x.device), torch.ones(half, dtype=x.dtype, device=x.device)])
    return x * cos + torch.roll(x, shifts=half, dims=-1) * sign * sin


def attention_loss(student, teacher, student_hidden, teacher_hidden, pairs: list[tuple[int, int]],
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``L_attn`` of the module docstring (forward KL between attention rows, real queries only)."""
    mask = _token_mask(student_hidden[0], attention_mask)
    total = student_hidden[0].new_zeros((), dtype=torch.float32)
    for s_idx, t_idx in pairs:
        a_s = apt_attention_probs(student, student_hidden, s_idx, attention_mask)
        with torch.no_grad():
            a_t = apt_attention_probs(teacher, teacher_hidden, t_idx, attention_mask)
        h_s, h_t = a_s.shape[1], a_t.shape[1]
        if h_t != h_s:
            if h_t % h_s:
                raise APTError(f"attention distillation: teacher layer {t_idx} has {h_t} heads, student layer "
                               f"{s_idx} has {h_s}; the teacher's count must be a multiple of the student's")
            a_t = a_t.view(a_t.shape[0], h_s, h_t // h_s, *a_t.shape[2:]).mean(dim=2)
        log_s = torch.log(a_s.clamp_min(1e-12))
        log_t = torch.log(a_t.clamp_min(1e-12))
        per_query = (a_t * (log_t - log_s)).sum(-1)  # [B, H, T]
        per_query = per_query.mean(dim=1)  # over heads
        total = total + per_query[mask].mean()
    return total / max(len(pairs), 1)
