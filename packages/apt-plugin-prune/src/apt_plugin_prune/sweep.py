"""Sparsity sweep: prune a checkpoint at several sparsities, measure perplexity, plot it."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from apt_core.errors import APTError

__all__ = ["run_sweep", "format_sweep", "plot_sweep"]

log = logging.getLogger(__name__)


def run_sweep(checkpoint: str | Path, out: str | Path, sparsities: list[float], settings, *, finetune_steps: int = 0,
              data: str = "default", eval_data: str | None = None, lr: float = 3e-4, eval_batches: int = 20,
              device: str = "auto", progress: bool = True, recovery=None) -> dict[str, Any]:
    """Prune a copy of the checkpoint at each sparsity; write ``sweep.json`` and ``sweep.png`` into *out*.

    Fine-tuning recovers as *recovery* says (default ``kd``: distillation from the unpruned checkpoint).
    """
    from apt_core.checkpoint import load_checkpoint, resolve_checkpoint
    from apt_plugin_prune.finetune import finetune, load_token_data, perplexity
    from apt_plugin_prune.pruning import check_out_dir, prune_model
    from apt_plugin_prune.recovery import Recovery
    from apt_plugin_prune.stats import sparsity_report

    recovery = Recovery() if recovery is None else recovery

    source = resolve_checkpoint(checkpoint)
    out = check_out_dir(out, source)
    ckpt = load_checkpoint(source, require_tokenizer=True)
    tokens = load_token_data(ckpt.tokenizer, data, eval_data)

    def ppl(model) -> float:
        return perplexity(model, tokens.eval, settings.seq_len, settings.batch_size, eval_batches)

    rows = [{"sparsity": 0.0, "parameters": ckpt.model.num_parameters(), "effective_sparsity": 0.0,
             "perplexity": ppl(ckpt.model), "finetuned_perplexity": None}]
    # Every sparsity prunes a fresh copy of the loaded (unpruned) model; the teacher is one more copy
    # because distillation moves it to the training device, where the next copy must not come from.
    teacher = copy.deepcopy(ckpt.model) if finetune_steps and recovery.uses_teacher else None
    for sparsity in sparsities:
        model = copy.deepcopy(ckpt.model)
        model, masks, _ = prune_model(model, replace(settings, sparsity=sparsity), ckpt.tokenizer)
        row = {"sparsity": sparsity, "parameters": model.num_parameters(),
               "effective_sparsity": sparsity_report(model)["sparsity_prunable"], "perplexity": ppl(model),
               "finetuned_perplexity": None}
        if finetune_steps:
            finetune(model, tokens, finetune_steps, tokenizer=ckpt.tokenizer, masks=masks, lr=lr,
                     batch_size=settings.batch_size, seq_len=settings.seq_len, seed=settings.seed, device=device,
                     progress=progress, eval_batches=eval_batches, loss_fn=recovery.loss_fn(teacher))
            row["finetuned_perplexity"] = ppl(model.cpu())
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    result = {"source": str(source), "method": settings.method, "structured": list(settings.structured),
              "scope": settings.scope, "finetune_steps": finetune_steps, "rows": rows}
    if finetune_steps:
        result["recovery"] = recovery.to_dict()
    result["plot"] = plot_sweep(result, out / "sweep.png")
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def format_sweep(result: dict[str, Any]) -> str:
    """Plain-text table of a sweep."""
    lines = [f"{'sparsity':>8}  {'effective':>9}  {'params':>11}  {'perplexity':>10}  {'fine-tuned':>10}"]
    for row in result["rows"]:
        tuned = f"{row['finetuned_perplexity']:.2f}" if row["finetuned_perplexity"] is not None else "-"
        lines.append(f"{row['sparsity']:>8.2f}  {row['effective_sparsity']:>9.2%}  {row['parameters']:>11,}  "
                     f"{row['perplexity']:>10.2f}  {tuned:>10}")
    return "\n".join(lines)


def plot_sweep(result: dict[str, Any], path: Path) -> str | None:
    """Perplexity against sparsity as a PNG; None (with a warning naming the fix) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed, so no plot was drawn: pip install 'apt-plugin-prune[plot]'")
        return None
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["sparsity"] for r in rows]
    ax.plot(x, [r["perplexity"] for r in rows], "o-", label="after pruning")
    if any(r["finetuned_perplexity"] is not None for r in rows):
        pts = [(r["sparsity"], r["finetuned_perplexity"]) for r in rows if r["finetuned_perplexity"] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "s-", label=f"after {result['finetune_steps']} fine-tune steps")
    kind = ",".join(result["structured"]) or "unstructured"
    ax.set(xlabel="sparsity", ylabel="perplexity (log scale)", yscale="log",
           title=f"{result['method']} pruning ({kind}, {result['scope']})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    if not path.is_file():
        raise APTError(f"could not write the plot {path}")
    return str(path)
