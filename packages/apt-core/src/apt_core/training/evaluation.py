"""Perplexity of a causal LM on a token stream (used by ``apt-model eval``)."""

from __future__ import annotations

import math

import torch

from apt_core.data import TokenBlocks

__all__ = ["perplexity"]


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, batch_size: int = 8,
               max_batches: int = 0, device: str | torch.device | None = None) -> dict[str, float]:
    """Token-weighted mean next-token loss over non-overlapping ``seq_len`` blocks, and its exp.

    The same blocking as the trainer's evaluation, so both report the same number for the same data.
    """
    blocks = TokenBlocks(tokens, seq_len)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, count, n_batches = 0.0, 0, 0
    try:
        for start in range(0, len(blocks), batch_size):
            if max_batches and n_batches >= max_batches:
                break
            ids = torch.stack([blocks[i]["input_ids"] for i in range(start, min(start + batch_size, len(blocks)))])
            ids = ids.to(device)
            out = model(ids, labels=ids)
            valid = ids.shape[0] * (ids.shape[1] - 1)
            loss_sum += float(out.loss) * valid
            count += valid
            n_batches += 1
    finally:
        model.train(was_training)
    loss = loss_sum / max(count, 1)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_tokens": float(count)}
