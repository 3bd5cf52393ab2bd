"""Lottery tickets: iterative magnitude pruning (IMP) with rewinding, plus the two controls.

Frankle & Carbin (2019) rewind survivors to their initial values θ₀; Frankle et al. (2020) rewind to
an early step θ_k, which is what makes tickets appear in larger networks. Each round:

1. train (through the core trainer, fresh optimizer) from the rewound weights with the current mask;
2. prune ``rate`` of the *remaining* weights by magnitude (so after n rounds 1 - (1 - rate)^n is gone);
3. rewind the survivors to θ₀ / θ_k.

Controls, trained the same number of steps with the final sparsity: the ticket's mask on a fresh
random initialisation (random re-init), and a random mask of the same per-tensor sparsity on the
rewound weights (random mask). A ticket is only a ticket if it beats both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apt_core.errors import APTError
from apt_plugin_prune.options import check_scope, check_sparsity

__all__ = ["LotterySettings", "RewindCapture", "rewind", "run_lottery"]


@dataclass
class LotterySettings:
    """Options of ``apt-model prune lottery``."""

    rounds: int = 3
    rate: float = 0.2
    steps: int = 200
    rewind_step: int = 0
    scope: str = "global"
    include_embeddings: bool = False
    controls: bool = True
    lr: float = 1e-3
    batch_size: int = 8
    seq_len: int = 128
    seed: int = 0
    eval_batches: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise APTError(f"--rounds must be a positive integer, got {self.rounds!r}")
        self.rate = check_sparsity(self.rate, "--rate")
        if self.rate == 0:
            raise APTError("--rate must be above 0 (the fraction of remaining weights pruned per round)")
        if self.steps < 1:
            raise APTError(f"--steps must be >= 1, got {self.steps}")
        if not 0 <= self.rewind_step < self.steps:
            raise APTError(f"--rewind-step must be in [0, --steps), got {self.rewind_step}")
        check_scope(self.scope)

    def sparsity_after(self, round_index: int) -> float:
        """Target sparsity after *round_index* (1-based) rounds."""
        return 1.0 - (1.0 - self.rate) ** round_index


class RewindCapture:
    """Trainer callback that snapshots the weights right after optimizer step ``step`` (θ_k)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.state: dict[str, torch.Tensor] | None = None

    def on_step_end(self, trainer) -> None:
        from apt_core.checkpoint import unwrap_model

        # Callbacks run before the trainer increments state.step: the step just completed is step + 1.
        if trainer.state.step + 1 == self.step:
            model = unwrap_model(trainer.model)
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, state: dict[str, torch.Tensor], masks) -> None:
    """Reset every weight to *state* (θ₀ or θ_k), then zero the pruned ones."""
    model.load_state_dict({k: v.to(model.device) for k, v in state.items()}, strict=True)
    masks.apply(model)


def _train(model, tokens, steps, masks, settings, tokenizer, out_dir, progress, device, callbacks=()):
    from apt_plugin_prune.finetune import finetune, perplexity

    # Plain next-token CE, never distillation: a ticket and its controls must differ only in the
    # mask and the initialisation, and a teacher would hand every one of them the dense solution.
    metrics = finetune(model, tokens, steps, tokenizer=tokenizer, out_dir=out_dir, masks=masks, lr=settings.lr,
                       batch_size=settings.batch_size, seq_len=settings.seq_len, seed=settings.seed, device=device,
                       progress=progress, eval_batches=settings.eval_batches, callbacks=callbacks)
    model.cpu()
    ppl = perplexity(model, tokens.eval, settings.seq_len, settings.batch_size, settings.eval_batches)
    return {"perplexity": ppl, "train_loss": metrics.get("loss"), "steps": steps}


def run_lottery(checkpoint: str | Path, out: str | Path, settings: LotterySettings, *, data: str = "default",
                eval_data: str | None = None, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Run IMP from the weights of *checkpoint* (taken as θ₀) and write ``out/lottery_report.json``.

    Layout of *out*: ``dense/`` (the unpruned run), ``round-1/`` … ``round-R/`` (each a trainer run
    directory; the last one's ``latest`` is the winning ticket), ``control-reinit/``, ``control-random-mask/``.
    """
    from apt_core.checkpoint import load_checkpoint, resolve_checkpoint
    from apt_core.model import APTModel
    from apt_plugin_prune.finetune import load_token_data
    from apt_plugin_prune.masks import MaskSet, compute_masks, importance_scores, prunable_weights
    from apt_plugin_prune.pruning import check_out_dir
    from apt_plugin_prune.stats import sparsity_report

    source = resolve_checkpoint(checkpoint)
    out = check_out_dir(out, source)
    ckpt = load_checkpoint(source, require_tokenizer=True)
    model, tokenizer = ckpt.model, ckpt.tokenizer
    tokens = load_token_data(tokenizer, data, eval_data)
    names = list(prunable_weights(model, settings.include_embeddings))
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    masks = MaskSet({n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n in names})
    report: dict[str, Any] = {"source": str(source), "settings": asdict(settings), "rounds": []}

    # Round 0: the dense network, which also provides θ_k for rewinding.
    capture = RewindCapture(settings.rewind_step)
    report["dense"] = _train(model, tokens, settings.steps, None, settings, tokenizer, out / "dense", progress,
                             device, callbacks=(capture,) if settings.rewind_step else ())
    rewind_state = theta0 if settings.rewind_step == 0 else capture.state
    if rewind_state is None:  # pragma: no cover - the trainer always reaches rewind_step < steps
        raise RuntimeError("the rewind point was never reached")
    round_steps = settings.steps - settings.rewind_step
    for index in range(1, settings.rounds + 1):
        weights = prunable_weights(model, settings.include_embeddings)
        masks = compute_masks(importance_scores("magnitude", weights), settings.sparsity_after(index),
                              settings.scope, previous=masks)
        rewind(model, rewind_state, masks)
        result = _train(model, tokens, round_steps, masks, settings, tokenizer, out / f"round-{index}",
                        progress, device)
        result.update(round=index, sparsity=sparsity_report(model)["sparsity_prunable"])
        report["rounds"].append(result)
    report["ticket"] = str(resolve_checkpoint(out / f"round-{settings.rounds}"))
    if settings.controls:
        torch.manual_seed(settings.seed + 1)
        fresh = APTModel(model.config)  # a new random initialisation, same architecture
        masks.apply(fresh)
        report["control_reinit"] = _train(fresh, tokens, settings.steps, masks, settings, tokenizer,
                                          out / "control-reinit", progress, device)
        weights = prunable_weights(model, settings.include_embeddings)
        random_masks = MaskSet({})
        for name, score in importance_scores("random", weights, seed=settings.seed + 2).items():
            kept = masks.masks[name]
            target = 1.0 - float(kept.float().mean())
            random_masks.masks.update(compute_masks({name: score}, target, "layer").masks)
        rewind(model, rewind_state, random_masks)
        report["control_random_mask"] = _train(model, tokens, round_steps, random_masks, settings, tokenizer,
                                               out / "control-random-mask", progress, device)
    (out / "lottery_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return report
