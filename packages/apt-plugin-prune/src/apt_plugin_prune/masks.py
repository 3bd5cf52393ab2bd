"""Unstructured pruning: importance scores -> boolean masks -> zeros in the real weights.

Why explicit masks and not ``torch.nn.utils.prune``: that API reparametrises modules into
``weight_orig``/``weight_mask`` (which then leak into checkpoints) and gives no speed-up anyway. Here
the weights themselves hold the zeros, so every checkpoint is plain; a :class:`MaskSet` keeps the
pruned positions at zero while training (gradient hooks plus re-application after each optimizer
step through the core trainer's ``callbacks``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from apt_core.errors import APTError

__all__ = [
    "prunable_weights",
    "importance_scores",
    "compute_masks",
    "MaskSet",
    "MaskEnforcer",
]


def prunable_weights(model: nn.Module, include_embeddings: bool = False) -> dict[str, nn.Parameter]:
    """The weight matrices unstructured pruning may touch, by parameter name.

    Every linear weight inside the blocks (qkv, out, autopoietic U/V, FFN W1/W2/W3). Excluded: norm
    gains, biases, ``ap_tau`` and the per-head gate ``ap_gate`` (d x heads: a control signal, not
    capacity; global Taylor scores empty it first). The token embedding (which is also the LM head
    when tied) only with ``include_embeddings``.
    """
    chosen: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module_name.startswith("layers.") and not module_name.endswith("ap_gate"):
            chosen[f"{module_name}.weight"] = module.weight
        elif include_embeddings and isinstance(module, (nn.Embedding, nn.Linear)) and module_name in ("embed", "lm_head"):
            chosen[f"{module_name}.weight"] = module.weight
    if not chosen:
        raise APTError("the model has no prunable weight matrices")
    return chosen


def importance_scores(method: str, weights: dict[str, nn.Parameter], stats=None,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """One score per weight (higher = keep) for ``magnitude``, ``taylor``, ``wanda`` or ``random``."""
    scores: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(seed)
    for name, weight in weights.items():
        w = weight.detach().float()
        if method == "magnitude":
            scores[name] = w.abs()
        elif method == "random":
            scores[name] = torch.rand(w.shape, generator=generator).to(w.device)
        elif method == "taylor":
            if stats is None or name not in stats.taylor:
                raise APTError(f"taylor scores need calibration gradients for {name}")
            scores[name] = stats.taylor[name].to(w.device)
        elif method == "wanda":
            if stats is None or name not in stats.input_norms:
                if name.startswith(("embed", "lm_head")):
                    raise APTError("wanda has no input norms for the embedding; drop --include-embeddings")
                raise APTError(f"wanda scores need calibration input norms for {name}")
            scores[name] = w.abs() * stats.input_norms[name].to(w.device)[None, :]
        else:
            raise APTError(f"unknown pruning method {method!r}")
    return scores


def _keep_top(flat_scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Boolean mask keeping all but the ``n_prune`` lowest scores (exact count, ties broken by index)."""
    keep = torch.ones_like(flat_scores, dtype=torch.bool)
    if n_prune > 0:
        keep[torch.topk(flat_scores, n_prune, largest=False, sorted=False).indices] = False
    return keep


def compute_masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "layer",
                  per_row: bool = False, nm: tuple[int, int] | None = None,
                  previous: MaskSet | None = None) -> MaskSet:
    """Masks pruning a ``sparsity`` fraction of the scored weights.

    ``scope='layer'``: each tensor loses that fraction; ``'global'``: one threshold across tensors.
    ``per_row``: each output row loses that fraction (Wanda's comparison group). ``nm=(N, M)``:
    keep the N best of every M consecutive weights along the input dimension (sparsity = 1 - N/M).
    ``previous`` masks stay pruned (scored lowest), so iterative pruning only removes more.
    Raises APTError if a tensor would lose every weight.
    """
    scores = {k: v.float().clone() for k, v in scores.items()}
    if previous is not None:
        for name, score in scores.items():
            if name in previous.masks:
                score[~previous.masks[name].to(score.device)] = -float("inf")
    masks: dict[str, torch.Tensor] = {}
    if nm is not None:
        n, m = nm
        for name, score in scores.items():
            if score.dim() != 2 or score.shape[1] % m:
                raise APTError(f"{name} has {score.shape[-1]} inputs, not a multiple of M={m} for the N:M pattern")
            groups = score.reshape(-1, m)
            keep = torch.zeros_like(groups, dtype=torch.bool)
            keep.scatter_(1, torch.topk(groups, n, dim=1).indices, True)
            masks[name] = keep.reshape(score.shape)
    elif scope == "global":
        flat = torch.cat([s.flatten().cpu() for s in scores.values()])
        keep = _keep_top(flat, round(sparsity * flat.numel()))
        offset = 0
        for name, score in scores.items():
            masks[name] = keep[offset : offset + score.numel()].view(score.shape).to(score.device)
            offset += score.numel()
    elif per_row:
        for name, score in scores.items():
            rows = score.reshape(score.shape[0], -1)
            n_prune = round(sparsity * rows.shape[1])
            keep = torch.ones_like(rows, dtype=torch.bool)
            if n_prune:
                keep.scatter_(1, torch.topk(rows, n_prune, dim=1, largest=False).indices, False)
            masks[name] = keep.view(score.shape)
    else:
        for name, score in scores.items():
            masks[name] = _keep_top(score.flatten(), round(sparsity * score.numel())).view(score.shape)
    if previous is not None:  # already-pruned weights stay pruned even if the new target is lower
        for name in masks:
            if name in previous.masks:
                masks[name] = masks[name] & previous.masks[name].to(masks[name].device)
    for name, mask in masks.items():
        if not bool(mask.any()):
            raise APTError(f"sparsity {sparsity} would prune every weight of {name}; "
                           "lower --sparsity or use --scope layer")
    return MaskSet(masks)


class MaskSet:
    """Boolean keep-masks by parameter name; True = the weight survives."""

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = {name: mask.bool() for name, mask in masks.items()}

    @classmethod
    def from_zeros(cls, model: nn.Module, names) -> MaskSet:
        """Masks of the weights that are exactly zero now (how a saved pruned checkpoint is resumed)."""
        params = dict(model.named_parameters())
        return cls({name: params[name].detach() != 0 for name in names})

    @property
    def sparsity(self) -> float:
        """Fraction of masked entries over all masked tensors."""
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return 1.0 - kept / total if total else 0.0

    def layer_sparsity(self) -> dict[str, float]:
        """Fraction masked in each tensor."""
        return {name: 1.0 - float(m.float().mean()) for name, m in self.masks.items()}

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of *model* in place (the weights themselves, no reparametrisation)."""
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            param = params[name]
            param.mul_(mask.to(device=param.device, dtype=param.dtype))

    @contextlib.contextmanager
    def enforced(self, model: nn.Module) -> Iterator[None]:
        """While active, gradients of pruned weights are zeroed (so optimizer moments stay clean)."""
        params = dict(model.named_parameters())
        handles = []
        for name, mask in self.masks.items():
            param = params[name]
            keep = mask.to(device=param.device, dtype=param.dtype)
            handles.append(param.register_hook(lambda grad, _keep=keep: grad * _keep.to(grad.dtype)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class MaskEnforcer:
    """Core-trainer callback: re-applies the masks right after every optimizer step.

    Weight decay and momentum would otherwise revive pruned weights; with gradient hooks alone,
    AdamW's decoupled decay keeps zeros at zero, but re-applying makes it a guarantee.
    """

    def __init__(self, masks: MaskSet) -> None:
        self.masks = masks

    def on_step_end(self, trainer) -> None:
        from apt_core.checkpoint import unwrap_model

        self.masks.apply(unwrap_model(trainer.model))
