"""Sparsity statistics measured on the effective weights (the zeros really in the tensors).

Denominators are explicit because "50% sparse" means little without them:

* ``prunable``: the weight matrices inside the blocks (what pruning touches by default);
* ``all``: every parameter, embedding (= tied LM head) and norms included, each counted once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from apt_plugin_prune.masks import prunable_weights

__all__ = ["sparsity_report", "format_report", "directory_size"]


def directory_size(path: str | Path) -> int:
    """Bytes of the files in a checkpoint directory (not recursive: a checkpoint is flat)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def sparsity_report(model: nn.Module, path: str | Path | None = None) -> dict[str, Any]:
    """Global and per-layer sparsity, parameter counts, widths and (with *path*) size on disk."""
    prunable = prunable_weights(model)
    layers: dict[int, dict[str, int]] = {}
    for name, weight in prunable.items():
        index = int(name.split(".")[1])
        entry = layers.setdefault(index, {"zeros": 0, "total": 0})
        entry["zeros"] += _zeros(weight.detach())
        entry["total"] += weight.numel()
    seen, all_zeros, all_total = set(), 0, 0
    for param in model.parameters():  # parameters() yields a tied tensor once
        if id(param) in seen:
            continue
        seen.add(id(param))
        all_zeros += _zeros(param.detach())
        all_total += param.numel()
    p_zeros = sum(e["zeros"] for e in layers.values())
    p_total = sum(e["total"] for e in layers.values())
    config = getattr(model, "config", None)
    report: dict[str, Any] = {
        "parameters": all_total,
        "nonzero_parameters": all_total - all_zeros,
        "sparsity_prunable": p_zeros / p_total if p_total else 0.0,
        "sparsity_all": all_zeros / all_total if all_total else 0.0,
        "prunable_parameters": p_total,
        "denominators": {
            "prunable": "linear weight matrices inside the blocks (qkv, out, autopoietic U/V, FFN W1/W2/W3)",
            "all": "every parameter, tied embedding/LM head counted once, norms and biases included",
        },
        "layers": [],
        "tensors": {name: _zeros(w.detach()) / w.numel() for name, w in prunable.items()},
    }
    heads = config.heads_per_layer() if config is not None else [None] * len(layers)
    d_ff = config.d_ff_per_layer() if config is not None else [None] * len(layers)
    for index in sorted(layers):
        entry = layers[index]
        report["layers"].append({"layer": index, "heads": heads[index], "d_ff": d_ff[index],
                                 "parameters": entry["total"], "sparsity": entry["zeros"] / entry["total"]})
    if config is not None:
        report["autopoietic_rank"] = config.autopoietic_rank if config.autopoietic else 0
    if path is not None:
        report["size_on_disk_bytes"] = directory_size(path)
        weights = Path(path) / "model.safetensors"
        if weights.is_file():
            report["weights_file_bytes"] = weights.stat().st_size
    return report


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table ``apt-model prune stats`` prints."""
    lines = [
        f"parameters:          {report['parameters']:,} ({report['nonzero_parameters']:,} non-zero)",
        f"sparsity (prunable): {report['sparsity_prunable']:.2%} of {report['prunable_parameters']:,} weights "
        f"[{report['denominators']['prunable']}]",
        f"sparsity (all):      {report['sparsity_all']:.2%} of {report['parameters']:,} "
        f"[{report['denominators']['all']}]",
    ]
    if "size_on_disk_bytes" in report:
        lines.append(f"size on disk:        {_mb(report['size_on_disk_bytes'])} "
                     f"(model.safetensors {_mb(report.get('weights_file_bytes', 0))})")
    if "autopoietic_rank" in report:
        lines.append(f"autopoietic rank:    {report['autopoietic_rank']}")
    lines.append("")
    lines.append(f"{'layer':>5}  {'heads':>5}  {'d_ff':>6}  {'weights':>10}  {'sparsity':>8}")
    for row in report["layers"]:
        lines.append(f"{row['layer']:>5}  {row['heads']!s:>5}  {row['d_ff']!s:>6}  {row['parameters']:>10,}  "
                     f"{row['sparsity']:>8.2%}")
    return "\n".join(lines)
