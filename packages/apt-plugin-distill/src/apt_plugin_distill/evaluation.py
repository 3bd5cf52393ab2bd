"""Perplexity of any causal LM (APT or a model-loader's model) on token blocks, computed one way for both
teacher and student so the two numbers are comparable."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["perplexity"]


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, batch_size: int = 16,
               max_blocks: int | None = None, device: torch.device | str | None = None) -> dict[str, float]:
    """Token-weighted next-token loss and perplexity over non-overlapping ``seq_len`` blocks of ``tokens``.

    Uses only ``model(input_ids).logits``, so teachers from any model loader are measured the same way.
    Runs without autocast (in the models' own dtype): a reported perplexity should not depend on
    mixed-precision rounding, and the pass is short.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n_blocks = len(tokens) // seq_len
    if max_blocks:
        n_blocks = min(n_blocks, max_blocks)
    blocks = tokens[: n_blocks * seq_len].view(n_blocks, seq_len)
    was_training = model.training
    model.eval()
    loss_sum, count = 0.0, 0
    for start in range(0, n_blocks, batch_size):
        ids = blocks[start : start + batch_size].to(device)
        logits = model(ids).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                               reduction="sum")
        loss_sum += float(loss)
        count += ids[:, 1:].numel()
    model.train(was_training)
    mean = loss_sum / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": float(count)}
