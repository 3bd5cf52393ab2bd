"""Recovery training and evaluation, always through the core :class:`~apt_core.training.Trainer`.

Why not a loop of our own: the trainer is where the lifecycle hooks fire, so checkpoints, metrics
and automatic backup (apt-plugin-cloud) work for pruning fine-tunes and lottery rounds exactly as
for plain training. Masks ride along as a trainer callback plus gradient hooks; distillation from the
unpruned model (``recovery``) rides along as the trainer's ``loss_fn``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apt_core.errors import APTError

__all__ = ["TokenData", "load_token_data", "finetune", "perplexity"]


@dataclass
class TokenData:
    """Training and held-out token streams (1-D LongTensors)."""

    train: torch.Tensor
    eval: torch.Tensor


def load_token_data(tokenizer, data: str = "default", eval_data: str | None = None) -> TokenData:
    """Tokenize a ``--data`` spec; held-out data is ``eval_data``, the embedded corpus' eval split for
    ``default``, or else the tail of *data* (``apt_core.data.EVAL_FRACTION``)."""
    from apt_core.data import iter_documents, split_tail, tokenize_documents

    if tokenizer is None:
        raise APTError("this checkpoint has no tokenizer.json; data-driven pruning needs one")
    tokens = tokenize_documents(iter_documents(data), tokenizer)
    if eval_data:
        return TokenData(tokens, tokenize_documents(iter_documents(eval_data), tokenizer))
    if data in ("default", "default:train"):
        return TokenData(tokens, tokenize_documents(iter_documents("default:eval"), tokenizer))
    train, held_out = split_tail(tokens)
    return TokenData(train, held_out)


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, seq_len: int = 128, batch_size: int = 8,
               max_batches: int = 0) -> float:
    """Token-weighted next-token perplexity of *model* on non-overlapping blocks of *tokens*."""
    seq_len = min(seq_len, model.config.max_seq_len)
    n_blocks = len(tokens) // seq_len
    if n_blocks == 0:
        raise APTError(f"evaluation data has {len(tokens)} tokens, fewer than one block of {seq_len}")
    blocks = tokens[: n_blocks * seq_len].view(n_blocks, seq_len)
    if max_batches:
        blocks = blocks[: max_batches * batch_size]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for start in range(0, len(blocks), batch_size):
            batch = blocks[start : start + batch_size].to(device)
            loss = model(batch, labels=batch).loss
            n = batch.shape[0] * (seq_len - 1)
            total += float(loss) * n
            count += n
    finally:
        model.train(was_training)
    return math.exp(min(total / count, 50.0))


def finetune(model: nn.Module, data: TokenData, steps: int, *, tokenizer=None, out_dir: str | Path | None = None,
             masks=None, lr: float = 3e-4, batch_size: int = 8, seq_len: int = 128, warmup_steps: int | None = None,
             seed: int = 0, device: str = "auto", progress: bool = True, eval_batches: int = 20,
             callbacks: tuple = (), hook: Any = None, loss_fn: Any = None) -> dict[str, float]:
    """Train *model* in place for *steps* optimizer steps through the core trainer.

    A fresh AdamW is built (right after structural pruning the old optimizer's shapes no longer fit,
    and a lottery round must start from a reset optimizer). With *masks*, pruned weights stay zero:
    their gradients are masked and the masks are re-applied after every optimizer step.
    Checkpoints (when *out_dir* is given) contain plain weights with zeros. *loss_fn* is the
    trainer's (e.g. :class:`~apt_plugin_prune.recovery.DistillationLoss`); None is next-token CE.
    """
    from apt_core.training import Trainer, TrainingArguments
    from apt_plugin_prune.masks import MaskEnforcer

    if steps < 1:
        raise APTError(f"fine-tuning needs at least one step, got {steps}")
    seq_len = min(seq_len, model.config.max_seq_len)
    args = TrainingArguments(
        out_dir=str(out_dir) if out_dir else None, max_steps=steps, batch_size=batch_size, seq_len=seq_len,
        lr=lr, warmup_steps=min(steps // 10, 100) if warmup_steps is None else warmup_steps,
        eval_batches=eval_batches, keep_last=1, seed=seed, device=device, progress=progress,
    )
    # The mask enforcer runs first, so later callbacks (e.g. a lottery rewind capture) see masked weights.
    all_callbacks = ([MaskEnforcer(masks)] if masks is not None else []) + list(callbacks)
    trainer = Trainer(model, args, data.train, eval_data=data.eval, tokenizer=tokenizer, loss_fn=loss_fn,
                      callbacks=all_callbacks, hook=hook)
    if masks is not None:
        masks.apply(trainer.model)
    guard = masks.enforced(trainer.model) if masks is not None else contextlib.nullcontext()
    with guard:
        return trainer.train()
