"""One pruning run: load a checkpoint, score, prune (unstructured or structured), optionally
fine-tune through the core trainer, and write an ordinary APT checkpoint plus a JSON report."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apt_core.errors import APTError
from apt_plugin_prune.options import check_method, check_scope, check_sparsity

__all__ = ["PruneSettings", "prune_model", "prune_checkpoint", "check_out_dir", "measure_latency"]

log = logging.getLogger(__name__)

#: Largest logit difference tolerated between a structurally pruned model and the original with
#: the same channels zeroed (float32 round-off of summing fewer terms).
EQUIVALENCE_TOLERANCE = 1e-3


@dataclass
class PruneSettings:
    """What to prune and how (the CLI options of ``apt-model prune``)."""

    method: str = "magnitude"
    sparsity: float = 0.5
    structured: tuple[str, ...] = ()
    scope: str = "layer"
    nm: tuple[int, int] | None = None
    include_embeddings: bool = False
    round_to: int = 8
    calibration_data: str = "default"
    calibration_batches: int = 8
    batch_size: int = 8
    seq_len: int = 128
    seed: int = 0
    ffn_engine: str = "torch-pruning"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_method(self.method)
        check_scope(self.scope)
        self.sparsity = check_sparsity(self.sparsity)
        if self.nm is not None:
            if self.structured:
                raise APTError("an N:M pattern is unstructured; do not combine it with --structured")
            self.sparsity = 1.0 - self.nm[0] / self.nm[1]
        if self.structured and self.include_embeddings:
            raise APTError("structured pruning never touches the embedding; drop --include-embeddings")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise APTError(f"round_to must be a positive integer, got {self.round_to!r}")
        if self.ffn_engine not in ("torch-pruning", "slice"):
            raise APTError(f"ffn_engine must be torch-pruning or slice, got {self.ffn_engine!r}")

    @property
    def needs_calibration(self) -> bool:
        return self.method in ("taylor", "wanda")


def _calibrate(model: nn.Module, tokenizer, settings: PruneSettings):
    from apt_plugin_prune.calibration import calibration_batches, collect_stats

    if not settings.needs_calibration:
        return None
    if tokenizer is None:
        raise APTError(f"--method {settings.method} needs calibration data, and this checkpoint has no tokenizer.json")
    batches = calibration_batches(tokenizer, settings.calibration_data, settings.calibration_batches,
                                  settings.batch_size, settings.seq_len, model.config.max_seq_len)
    return collect_stats(model, batches, taylor=settings.method == "taylor", input_norms=settings.method == "wanda")


def prune_model(model: nn.Module, settings: PruneSettings, tokenizer=None) -> tuple[nn.Module, Any, dict]:
    """Prune *model*; returns ``(model, masks_or_None, details)``.

    Unstructured: the same model with zeros, plus the :class:`MaskSet` to keep them through training.
    Structured: a new, smaller model (no masks); ``details['max_logit_diff']`` is the measured
    difference to the original with the removed channels zeroed (checked, must be ~0).
    """
    from apt_plugin_prune.masks import MaskSet, compute_masks, importance_scores, prunable_weights
    from apt_plugin_prune.structured import apply_structured, plan_structured, zero_removed

    stats = _calibrate(model, tokenizer, settings)
    details: dict[str, Any] = {}
    if not settings.structured:
        weights = prunable_weights(model, settings.include_embeddings)
        previous = MaskSet.from_zeros(model, weights)
        scores = importance_scores(settings.method, weights, stats, settings.seed)
        masks = compute_masks(scores, settings.sparsity, settings.scope, per_row=settings.method == "wanda",
                              nm=settings.nm, previous=previous if previous.sparsity > 0 else None)
        masks.apply(model)
        details["mask_sparsity"] = masks.sparsity
        details["engine"] = "masks (zeros in the weights)"
        return model, masks, details
    plan = plan_structured(model, settings.structured, settings.sparsity, settings.method, stats,
                           settings.scope, settings.round_to, settings.seed)
    reference = copy.deepcopy(model).eval()
    zero_removed(reference, plan)
    pruned = apply_structured(model, plan, settings.ffn_engine).eval()
    # Prove the surgery exact on real token ids: pruned == original with those channels zeroed.
    probe = torch.randint(0, model.config.vocab_size, (2, min(32, model.config.max_seq_len)),
                          generator=torch.Generator().manual_seed(settings.seed)).to(pruned.device)
    with torch.no_grad():
        diff = float((pruned(probe).logits - reference(probe).logits).abs().max())
    if not diff <= EQUIVALENCE_TOLERANCE:
        raise RuntimeError(f"structured pruning is not exact (max logit difference {diff}); please report this bug")
    details.update(plan.summary(model.config), max_logit_diff=diff)
    return pruned, None, details


@torch.no_grad()
def measure_latency(models: dict[str, nn.Module], batch_size: int, seq_len: int, reps: int = 10,
                    warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each of *reps* forward passes per model on the same random batch, measured
    interleaved after *warmup* passes (so load on the machine hits every model alike).

    Runs in the caller's autocast context, if any; CUDA models are synchronised around each pass."""
    times: dict[str, list[float]] = {name: [] for name in models}
    first = next(iter(models.values()))
    ids = torch.randint(0, first.config.vocab_size, (batch_size, min(seq_len, first.config.max_seq_len)),
                        generator=torch.Generator().manual_seed(0))
    for model in models.values():
        for _ in range(warmup):
            model.eval()(ids.to(model.device))
    for _ in range(reps):
        for name, model in models.items():
            batch = ids.to(model.device)
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            start = time.perf_counter()
            model(batch)
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            times[name].append(time.perf_counter() - start)
    return times


def check_out_dir(out: str | Path, source: str | Path | None = None) -> Path:
    """Refuse an output directory that exists with content or that is the source (never overwrite work)."""
    out = Path(out)
    if source is not None and out.resolve() == Path(source).resolve():
        raise APTError(f"--out {out} is the input checkpoint; choose a new directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise APTError(f"output directory {out} already exists and is not empty; choose a new one")
    return out


def prune_checkpoint(checkpoint: str | Path, out: str | Path, settings: PruneSettings, *, finetune_steps: int = 0,
                     data: str = "default", eval_data: str | None = None, lr: float = 3e-4,
                     eval_batches: int = 20, device: str = "auto", progress: bool = True,
                     latency_reps: int = 10, recovery=None) -> dict[str, Any]:
    """Prune a checkpoint into the run directory *out* (``checkpoint-N/`` + ``latest`` + ``prune_report.json``).

    *recovery* (a :class:`~apt_plugin_prune.recovery.Recovery`, default ``kd``) says how the
    ``finetune_steps`` recover: by distillation from the model as loaded, before pruning, or by plain CE.
    """
    from apt_core.checkpoint import checkpoint_name, load_checkpoint, resolve_checkpoint, save_checkpoint
    from apt_plugin_prune.finetune import finetune, load_token_data, perplexity
    from apt_plugin_prune.recovery import Recovery
    from apt_plugin_prune.stats import sparsity_report

    recovery = Recovery() if recovery is None else recovery

    source = resolve_checkpoint(checkpoint)
    out = check_out_dir(out, source)
    if finetune_steps < 0:
        raise APTError(f"--finetune-steps must be >= 0, got {finetune_steps}")
    ckpt = load_checkpoint(source, require_tokenizer=False)
    model, tokenizer = ckpt.model, ckpt.tokenizer
    report: dict[str, Any] = {"source": str(source), "settings": asdict(settings), "finetune_steps": finetune_steps}
    if finetune_steps:
        report["recovery"] = recovery.to_dict()
    tokens = load_token_data(tokenizer, data, eval_data) if tokenizer is not None and (eval_batches or finetune_steps) else None
    if finetune_steps and tokens is None:
        raise APTError(f"fine-tuning needs tokenized data, and {source} has no tokenizer.json")
    ppl = (lambda m: perplexity(m, tokens.eval, settings.seq_len, settings.batch_size, eval_batches)) \
        if tokens is not None and eval_batches else None
    report["dense"] = {"parameters": model.num_parameters(), "perplexity": ppl(model) if ppl else None,
                       "weights_file_bytes": (source / "model.safetensors").stat().st_size}
    # The unpruned model, kept for the latency comparison and as the distillation teacher (pruning
    # changes *model* in place or replaces it, so the copy must be taken now).
    teacher = copy.deepcopy(model) if finetune_steps and recovery.uses_teacher else None
    dense = (teacher if teacher is not None else copy.deepcopy(model)) if latency_reps else None
    started = time.perf_counter()
    model, masks, details = prune_model(model, settings, tokenizer)
    report["prune_seconds"] = time.perf_counter() - started
    report["details"] = details
    report["pruned"] = {"parameters": model.num_parameters(), "perplexity": ppl(model) if ppl else None}
    if dense is not None:  # CPU forward latency: what the user's smaller model buys
        samples = measure_latency({"dense": dense, "pruned": model}, settings.batch_size, settings.seq_len, latency_reps)
        seconds = {name: sorted(values)[len(values) // 2] for name, values in samples.items()}  # median
        report["latency"] = {"device": "cpu", "threads": torch.get_num_threads(),
                             "batch": [settings.batch_size, min(settings.seq_len, model.config.max_seq_len)],
                             "dense_ms": seconds["dense"] * 1e3, "pruned_ms": seconds["pruned"] * 1e3,
                             "speedup": seconds["dense"] / seconds["pruned"]}
        del dense
    if finetune_steps:
        metrics = finetune(model, tokens, finetune_steps, tokenizer=tokenizer, out_dir=out, masks=masks, lr=lr,
                           batch_size=settings.batch_size, seq_len=settings.seq_len, seed=settings.seed,
                           device=device, progress=progress, eval_batches=eval_batches or 20,
                           loss_fn=recovery.loss_fn(teacher))
        del teacher
        model = model.cpu()
        report["finetuned"] = {"metrics": metrics, "perplexity": ppl(model) if ppl else None}
        final = resolve_checkpoint(out)
    else:
        final = save_checkpoint(out / checkpoint_name(0), model, tokenizer, update_latest=True)
    report["checkpoint"] = str(final)
    report["stats"] = sparsity_report(model, final)
    report["pruned"]["weights_file_bytes"] = (final / "model.safetensors").stat().st_size
    (out / "prune_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report
