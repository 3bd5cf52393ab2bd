"""Autoregressive generation with a KV cache: temperature, top-k, top-p, repetition penalty, EOS stop."""

from __future__ import annotations

import torch

from apt_core.errors import APTError

__all__ = ["generate", "sample_next_token"]


def sample_next_token(
    logits: torch.Tensor,
    generated: torch.Tensor,
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token for each row of ``logits`` ([B, V]); ``temperature`` 0/None means greedy."""
    logits = logits.float()
    if repetition_penalty != 1.0:
        # CTRL-style: make every token already in the sequence less likely, whatever its sign.
        seen = torch.gather(logits, 1, generated)
        seen = torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty)
        logits = logits.scatter(1, generated, seen)
    if not temperature:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the top token always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int = 50,
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_token_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``input_ids`` followed by up to ``max_new_tokens`` new tokens ([B, T + n]; 1-D in, 1-D out).

    Rows that produced ``eos_token_id`` are padded with it until every row has finished. When the
    sequence outgrows ``max_seq_len`` the context window slides: the cache is rebuilt from the last
    half window (positions restart), so generation can run past the trained length.
    """
    if max_new_tokens < 0:
        raise APTError("max_new_tokens must be >= 0")
    if repetition_penalty <= 0:
        raise APTError("repetition_penalty must be > 0")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise APTError("top_p must be in (0, 1]")
    squeeze = input_ids.dim() == 1
    ids = input_ids.unsqueeze(0) if squeeze else input_ids
    if ids.shape[1] == 0:
        raise APTError("generation needs at least one prompt token")
    ids = ids.to(model.device)
    window = model.config.max_seq_len
    was_training = model.training
    model.eval()
    try:
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        cache, next_input = None, ids[:, -window:]
        for _ in range(max_new_tokens):
            if use_cache:
                if cache is not None and cache.seq_len + next_input.shape[1] > window:
                    cache, next_input = None, ids[:, -max(1, window // 2):]
                out = model(next_input, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
            else:
                out = model(ids[:, -window:])
            token = sample_next_token(out.logits[:, -1, :], ids, temperature, top_k, top_p,
                                      repetition_penalty, generator)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished = finished | (token == eos_token_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            next_input = token[:, None]
            if eos_token_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return ids[0] if squeeze else ids
