"""Structured pruning of APT: remove attention heads, FFN channels and autopoietic rank components.

The tensors really shrink and the new per-layer widths go into the config (``n_heads`` and ``d_ff``
become per-layer lists, ``head_dim`` is written explicitly, a smaller rank becomes a larger
``sr_ratio``), so the result is an ordinary APT model that any APT tool loads.

Engines, honestly:

* FFN channels: torch-pruning's DepGraph finds the coupled group itself (W1 rows, W2 rows through
  the activation and the product, W3 columns) and prunes it (``ffn_engine="torch-pruning"``, the
  default). Each group is checked to touch only that FFN; anything else falls back to slicing.
* Attention heads and the autopoietic rank: sliced directly. DepGraph sees the fused ``qkv`` output
  only as channels behind a ``view(B, T, 3, H, hd)``, and the per-head gate (``d -> H``, broadcast
  over ``hd``) and the low-rank path ``V: r -> H*hd`` are coupled to the heads by broadcasting and
  reshapes it does not model, so it cannot form correct head groups. The slices are driven by the
  same importance scores, and :func:`zero_removed` + a logits comparison proves them exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from apt_core.errors import APTError

__all__ = ["StructuredPlan", "plan_structured", "apply_structured", "zero_removed", "group_scores"]

log = logging.getLogger(__name__)


@dataclass
class StructuredPlan:
    """Which heads / FFN channels / rank components each layer keeps (sorted index lists)."""

    heads: list[list[int]] | None = None
    ffn: list[list[int]] | None = None
    rank: list[list[int]] | None = None
    sr_ratio: int | None = None
    engines: dict[str, str] = field(default_factory=dict)

    def summary(self, config) -> dict:
        """Widths before and after, per layer."""
        out = {}
        if self.heads is not None:
            out["heads"] = {"before": config.heads_per_layer(), "after": [len(k) for k in self.heads]}
        if self.ffn is not None:
            out["d_ff"] = {"before": config.d_ff_per_layer(), "after": [len(k) for k in self.ffn]}
        if self.rank is not None:
            out["autopoietic_rank"] = {"before": config.autopoietic_rank, "after": len(self.rank[0])}
        out["engines"] = dict(self.engines)
        return out


# ------------------------------------------------------------------------------------ scoring
def _elementwise(method: str, name: str, param: torch.Tensor, stats) -> torch.Tensor | None:
    """Per-entry importance that is summed over a group (None: this tensor does not count)."""
    w = param.detach().float()
    if method == "magnitude":
        return w * w
    if method == "taylor":
        if stats is None or name not in stats.taylor:
            raise APTError(f"taylor importance needs calibration gradients for {name}")
        return stats.taylor[name].float()
    raise AssertionError(method)


def group_scores(model: nn.Module, target: str, method: str, stats=None, seed: int = 0) -> list[torch.Tensor]:
    """One importance vector per layer for ``heads`` [H], ``ffn`` [d_ff] or ``rank`` [r].

    ``magnitude``: L2 norm of every weight in the group; ``taylor``: sum of ``|w * g|`` over the
    group; ``wanda``: sum of ``|W| * ||X||`` over the group's columns of the layer that reads it
    (``attn.out`` for heads, ``ffn.w3`` for channels, ``ap_up`` for rank); ``random``: a control.
    """
    generator = torch.Generator().manual_seed(seed)
    result = []
    for i, layer in enumerate(model.layers):
        attn, ffn = layer.attn, layer.ffn
        prefix = f"layers.{i}"
        heads, hd = attn.n_heads, attn.head_dim
        sizes = {"heads": heads, "ffn": ffn.w1.out_features,
                 "rank": attn.ap_down.out_features if attn.autopoietic else 0}
        n = sizes[target]
        if method == "random":
            result.append(torch.rand(n, generator=generator))
            continue
        if method == "wanda":
            reader = {"heads": ("attn.out", attn.out), "ffn": ("ffn.w3", ffn.w3), "rank": ("attn.ap_up", getattr(attn, "ap_up", None))}[target]
            key = f"{prefix}.{reader[0]}.weight"
            if stats is None or key not in stats.input_norms:
                raise APTError(f"wanda importance needs calibration input norms for {key}")
            cols = (reader[1].weight.detach().float().abs() * stats.input_norms[key].float()[None, :]).sum(0)
            result.append((cols.view(heads, hd).sum(1) if target == "heads" else cols).cpu())
            continue

        def named(sub: str, _layer=layer, _prefix=prefix) -> tuple[str, torch.Tensor]:
            return f"{_prefix}.{sub}", _layer.get_parameter(sub)

        score = torch.zeros(n)
        if target == "heads":
            inner = heads * hd
            e = _elementwise(method, *named("attn.qkv.weight"), stats)
            score += e.view(3, heads, hd, -1).sum(dim=(0, 2, 3)).cpu()
            e = _elementwise(method, *named("attn.out.weight"), stats)
            score += e.view(-1, heads, hd).sum(dim=(0, 2)).cpu()
            if attn.autopoietic:
                e = _elementwise(method, *named("attn.ap_up.weight"), stats)
                score += e.view(heads, hd, -1).sum(dim=(1, 2)).cpu()
                score += _elementwise(method, *named("attn.ap_gate.weight"), stats).sum(1).cpu()
                score += _elementwise(method, *named("attn.ap_gate.bias"), stats).cpu()
            assert inner == attn.qkv.out_features // 3
        elif target == "ffn":
            score += _elementwise(method, *named("ffn.w1.weight"), stats).sum(1).cpu()
            score += _elementwise(method, *named("ffn.w2.weight"), stats).sum(1).cpu()
            score += _elementwise(method, *named("ffn.w3.weight"), stats).sum(0).cpu()
        else:
            score += _elementwise(method, *named("attn.ap_down.weight"), stats).sum(1).cpu()
            score += _elementwise(method, *named("attn.ap_up.weight"), stats).sum(0).cpu()
        result.append(score.sqrt() if method == "magnitude" else score)
    return result


# ------------------------------------------------------------------------------------ planning
def _round_up(n: int, multiple: int, limit: int) -> int:
    return min(limit, -(-n // multiple) * multiple) if multiple > 1 else n


def _keep_counts(scores: list[torch.Tensor], sparsity: float, scope: str, round_to: int, what: str) -> list[int]:
    sizes = [len(s) for s in scores]
    if scope == "global":
        # Normalise by each layer's mean so layers of different scale compete fairly.
        normed = torch.cat([s / s.mean().clamp_min(1e-12) for s in scores])
        n_prune = round(sparsity * normed.numel())
        pruned = torch.zeros(normed.numel(), dtype=torch.bool)
        if n_prune:
            pruned[torch.topk(normed, n_prune, largest=False).indices] = True
        counts, offset = [], 0
        for size in sizes:
            counts.append(size - int(pruned[offset : offset + size].sum()))
            offset += size
    else:
        counts = [size - round(sparsity * size) for size in sizes]
    counts = [_round_up(c, round_to, size) if c > 0 else 0 for c, size in zip(counts, sizes)]
    for layer, count in enumerate(counts):
        if count <= 0:
            raise APTError(f"sparsity {sparsity} would remove every {what} of layer {layer}; "
                           "lower --sparsity (or use --scope layer)")
    return counts


def _top(scores: torch.Tensor, count: int) -> list[int]:
    return sorted(torch.topk(scores, count).indices.tolist())


def _rank_for(d_model: int, sr_ratio: int, target: int) -> tuple[int, int]:
    """(sr_ratio, rank) closest to *target*: the config derives rank = max(4, d_model // sr_ratio)."""
    options = {}
    for sr in range(sr_ratio, d_model + 1):
        options.setdefault(max(4, d_model // sr), sr)
    rank = min(options, key=lambda r: (abs(r - target), -r))
    return options[rank], rank


def plan_structured(model: nn.Module, targets: tuple[str, ...], sparsity: float, method: str = "magnitude",
                    stats=None, scope: str = "layer", round_to: int = 8, seed: int = 0) -> StructuredPlan:
    """Decide what each layer keeps. ``sparsity`` is the fraction of heads / channels / rank removed."""
    config = model.config
    plan = StructuredPlan()
    if not targets:
        raise APTError("structured pruning needs at least one of heads, ffn, rank")
    if "heads" in targets:
        scores = group_scores(model, "heads", method, stats, seed)
        counts = _keep_counts(scores, sparsity, scope, 1, "attention head")
        plan.heads = [_top(s, c) for s, c in zip(scores, counts)]
    if "ffn" in targets:
        scores = group_scores(model, "ffn", method, stats, seed + 1)
        counts = _keep_counts(scores, sparsity, scope, round_to, "FFN channel")
        plan.ffn = [_top(s, c) for s, c in zip(scores, counts)]
    if "rank" in targets:
        if not config.autopoietic:
            raise APTError("this model has no autopoietic term (autopoietic: false), so no rank to prune")
        rank = config.autopoietic_rank
        plan.sr_ratio, new_rank = _rank_for(config.d_model, config.sr_ratio, max(1, rank - round(sparsity * rank)))
        if new_rank >= rank:
            raise APTError(f"autopoietic rank {rank} cannot shrink at sparsity {sparsity} "
                           "(rank = max(4, d_model // sr_ratio)); use a higher --sparsity")
        scores = group_scores(model, "rank", method, stats, seed + 2)
        plan.rank = [_top(s, new_rank) for s in scores]
    return plan


# ------------------------------------------------------------------------------------ applying
def _head_index(kept: list[int], head_dim: int) -> torch.Tensor:
    return torch.tensor([h * head_dim + j for h in kept for j in range(head_dim)], dtype=torch.long)


def _prune_ffn_with_torch_pruning(model: nn.Module, plan: StructuredPlan) -> bool:
    """Prune FFN channels through DepGraph; False (model untouched) if a group reaches outside the FFN."""
    import torch_pruning as tp

    example = torch.randint(0, model.config.vocab_size, (1, min(8, model.config.max_seq_len)), device=model.device)
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=example, forward_fn=lambda m, x: m(x).logits,
        unwrapped_parameters=[(p, 0) for n, p in model.named_parameters() if p.dim() == 0 or n.endswith("norm.weight")],
    )
    groups = []
    for i, layer in enumerate(model.layers):
        drop = sorted(set(range(layer.ffn.w1.out_features)) - set(plan.ffn[i]))
        if not drop:
            continue
        group = graph.get_pruning_group(layer.ffn.w1, tp.prune_linear_out_channels, idxs=drop)
        allowed = {layer.ffn.w1, layer.ffn.w2, layer.ffn.w3}
        touched = {dep.target.module for dep, _ in group if isinstance(dep.target.module, (nn.Linear, nn.Embedding))}
        if not touched <= allowed:
            log.warning("torch-pruning grouped layer %d's FFN with other layers; slicing it directly", i)
            return False
        groups.append(group)
    for group in groups:
        group.prune()
    return True


def apply_structured(model: nn.Module, plan: StructuredPlan, ffn_engine: str = "torch-pruning") -> nn.Module:
    """A new, smaller APT model following *plan* (the input model may be modified)."""
    from apt_core.model import APTModel

    config = model.config
    if plan.ffn is not None and ffn_engine == "torch-pruning":
        plan.engines["ffn"] = "torch-pruning" if _prune_ffn_with_torch_pruning(model, plan) else "slice"
    elif plan.ffn is not None:
        plan.engines["ffn"] = "slice"
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    head_dim = config.resolved_head_dim
    for i in range(config.n_layers):
        p = f"layers.{i}."
        if plan.ffn is not None and plan.engines["ffn"] == "slice":
            idx = torch.tensor(plan.ffn[i], dtype=torch.long)
            state[p + "ffn.w1.weight"] = state[p + "ffn.w1.weight"][idx]
            state[p + "ffn.w2.weight"] = state[p + "ffn.w2.weight"][idx]
            state[p + "ffn.w3.weight"] = state[p + "ffn.w3.weight"][:, idx]
        if plan.heads is not None:
            plan.engines["heads"] = "slice"
            inner = config.heads_per_layer()[i] * head_dim
            idx = _head_index(plan.heads[i], head_dim)
            qkv_idx = torch.cat([idx + s * inner for s in range(3)])
            state[p + "attn.qkv.weight"] = state[p + "attn.qkv.weight"][qkv_idx]
            state[p + "attn.out.weight"] = state[p + "attn.out.weight"][:, idx]
            if config.autopoietic:
                state[p + "attn.ap_up.weight"] = state[p + "attn.ap_up.weight"][idx]
                heads = torch.tensor(plan.heads[i], dtype=torch.long)
                state[p + "attn.ap_gate.weight"] = state[p + "attn.ap_gate.weight"][heads]
                state[p + "attn.ap_gate.bias"] = state[p + "attn.ap_gate.bias"][heads]
        if plan.rank is not None:
            plan.engines["rank"] = "slice"
            idx = torch.tensor(plan.rank[i], dtype=torch.long)
            state[p + "attn.ap_down.weight"] = state[p + "attn.ap_down.weight"][idx]
            state[p + "attn.ap_up.weight"] = state[p + "attn.ap_up.weight"][:, idx]
    changes = {"head_dim": head_dim}
    if plan.heads is not None:
        changes["n_heads"] = [len(k) for k in plan.heads]
    if plan.ffn is not None:
        changes["d_ff"] = [len(k) for k in plan.ffn]
    if plan.rank is not None:
        changes["sr_ratio"] = plan.sr_ratio
    new_config = config.replace(**changes)
    new_model = APTModel(new_config).to(model.device)
    new_model.load_weights(state, source="structured pruning")
    return new_model


@torch.no_grad()
def zero_removed(model: nn.Module, plan: StructuredPlan) -> None:
    """Zero, in place, every weight that *plan* removes: the dense equivalent of the pruned model."""
    config = model.config
    hd = config.resolved_head_dim
    for i, layer in enumerate(model.layers):
        attn, ffn = layer.attn, layer.ffn
        if plan.ffn is not None:
            drop = sorted(set(range(ffn.w1.out_features)) - set(plan.ffn[i]))
            ffn.w1.weight[drop] = 0
            ffn.w2.weight[drop] = 0
            ffn.w3.weight[:, drop] = 0
        if plan.heads is not None:
            drop = sorted(set(range(attn.n_heads)) - set(plan.heads[i]))
            inner = attn.n_heads * hd
            idx = _head_index(drop, hd)
            for s in range(3):
                attn.qkv.weight[idx + s * inner] = 0
            attn.out.weight[:, idx] = 0
            if attn.autopoietic:
                attn.ap_up.weight[idx] = 0
                attn.ap_gate.weight[drop] = 0
                attn.ap_gate.bias[drop] = 0
        if plan.rank is not None:
            drop = sorted(set(range(attn.ap_down.out_features)) - set(plan.rank[i]))
            attn.ap_down.weight[drop] = 0
            attn.ap_up.weight[:, drop] = 0
