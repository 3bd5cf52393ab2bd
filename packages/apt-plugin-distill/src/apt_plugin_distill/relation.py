"""Relational knowledge distillation (RKD, Park et al. 2019) on sampled token embeddings.

Instead of matching states one by one, RKD matches the *geometry* of a set of embeddings, so student and
teacher widths may differ and no projection is needed. From ``K`` real tokens sampled per batch (the same
positions on both sides) with student embeddings ``e_1..e_K`` and teacher embeddings ``f_1..f_K``:

Distance term, with ``mu`` the mean pairwise distance (scale normalisation)::

    psi_D(e)_{ij} = ||e_i - e_j|| / mu(e)
    L_dist  = mean_{i != j} huber(psi_D(e)_{ij}, psi_D(f)_{ij})

Angle term, over all triplets (``O(K^3)``, hence the sampling)::

    psi_A(e)_{ijk} = < (e_i - e_j) / ||e_i - e_j||, (e_k - e_j) / ||e_k - e_j|| >
    L_angle = mean_{i,j,k} huber(psi_A(e)_{ijk}, psi_A(f)_{ijk})

    L_rel = w_dist * L_dist + w_angle * L_angle          (w_dist = 1, w_angle = 2 as in the paper)

``huber`` is the smooth-L1 loss with ``beta = 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rkd_distance", "rkd_angle", "relation_loss", "sample_token_embeddings"]

_EPS = 1e-12


def _pairwise_distance(e: torch.Tensor) -> torch.Tensor:
    # Via the difference tensor, not the Gram trick: exact zeros on the diagonal, stable gradients.
    diff = e[:, None, :] - e[None, :, :]
    return diff.pow(2).sum(-1).clamp_min(_EPS).sqrt()


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``L_dist`` for ``[K, d_s]`` student and ``[K, d_t]`` teacher embeddings of the same K items."""
    k = student.shape[0]
    off_diag = ~torch.eye(k, dtype=torch.bool, device=student.device)
    with torch.no_grad():
        d_t = _pairwise_distance(teacher.float())[off_diag]
        d_t = d_t / d_t.mean().clamp_min(_EPS)
    d_s = _pairwise_distance(student.float())[off_diag]
    d_s = d_s / d_s.mean().clamp_min(_EPS)
    return F.smooth_l1_loss(d_s, d_t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=-1)  # [j, i, d]: unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)  # <unit(e_i - e_j), unit(e_k - e_j)>


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``L_angle`` for ``[K, d_s]`` student and ``[K, d_t]`` teacher embeddings of the same K items."""
    with torch.no_grad():
        a_t = _angles(teacher.float())
    return F.smooth_l1_loss(_angles(student.float()), a_t)


def relation_loss(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 1.0,
                  angle_weight: float = 2.0) -> torch.Tensor:
    """``L_rel = w_dist * L_dist + w_angle * L_angle`` (module docstring)."""
    return distance_weight * rkd_distance(student, teacher) + angle_weight * rkd_angle(student, teacher)


def sample_token_embeddings(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                            attention_mask: torch.Tensor | None, num_samples: int,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``num_samples`` real tokens (uniformly, without replacement) from ``[B, T, d]`` states."""
    flat_s = student_hidden.reshape(-1, student_hidden.shape[-1])
    flat_t = teacher_hidden.reshape(-1, teacher_hidden.shape[-1])
    if attention_mask is None:
        candidates = torch.arange(flat_s.shape[0], device=flat_s.device)
    else:
        candidates = attention_mask.reshape(-1).to(torch.bool).nonzero(as_tuple=True)[0]
    if len(candidates) > num_samples:
        pick = torch.randperm(len(candidates), generator=generator, device="cpu")[:num_samples]
        candidates = candidates[pick.to(candidates.device)]
    return flat_s[candidates], flat_t[candidates]
