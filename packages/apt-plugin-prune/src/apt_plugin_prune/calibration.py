"""Calibration statistics for data-aware criteria: Taylor scores and Wanda input norms.

Taylor: ``|w * dL/dw|`` accumulated over calibration batches (first-order estimate of the loss
change when ``w`` is set to zero). Wanda (Sun et al. 2023): ``|W_ij| * ||X_j||_2``, where
``||X_j||`` is the L2 norm of input feature ``j`` of that linear layer over all calibration tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from apt_core.errors import APTError

__all__ = ["CalibrationStats", "calibration_batches", "collect_stats"]


@dataclass
class CalibrationStats:
    """What :func:`collect_stats` measured; keys are parameter names (``layers.0.ffn.w1.weight``)."""

    #: Accumulated ``|w * grad|`` per parameter (Taylor importance), same shape as the parameter.
    taylor: dict[str, torch.Tensor] = field(default_factory=dict)
    #: L2 norm of each input feature of every linear layer, keyed by its weight's name.
    input_norms: dict[str, torch.Tensor] = field(default_factory=dict)
    batches: int = 0
    tokens: int = 0


def calibration_batches(tokenizer, data: str = "default", n_batches: int = 8, batch_size: int = 8,
                        seq_len: int = 128, max_seq_len: int | None = None) -> list[torch.Tensor]:
    """``n_batches`` LongTensors [batch_size, seq_len] of consecutive tokens from a ``--data`` spec.

    The first blocks of the data are used (deterministic, so a re-run gives the same masks).
    """
    from apt_core.data import iter_documents, tokenize_documents

    if n_batches < 1 or batch_size < 1:
        raise APTError("calibration needs at least one batch of at least one sequence")
    if max_seq_len is not None:
        seq_len = min(seq_len, max_seq_len)
    needed = n_batches * batch_size * seq_len
    documents, pending, length = iter_documents(data), [], 0
    for doc in documents:  # stop reading once enough text is there (the corpus may be large)
        pending.append(doc)
        length += len(doc)
        if length >= needed * 8:
            break
    tokens = tokenize_documents(pending, tokenizer)
    if len(tokens) < needed:
        raise APTError(f"calibration data {data!r} has {len(tokens)} tokens; {needed} needed "
                       f"({n_batches} batches x {batch_size} x {seq_len}); lower --calibration-batches")
    blocks = tokens[:needed].view(n_batches, batch_size, seq_len)
    return list(blocks.unbind(0))


def _weights_of_linears(model: nn.Module, names: set[str] | None) -> dict[str, nn.Linear]:
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            key = f"{module_name}.weight"
            if names is None or key in names:
                found[key] = module
    return found


def collect_stats(model: nn.Module, batches: list[torch.Tensor], *, taylor: bool = False,
                  input_norms: bool = False, names: set[str] | None = None) -> CalibrationStats:
    """Run the calibration batches through *model* and gather what the criteria need.

    The model runs in eval mode (no dropout); gradients are only computed when ``taylor`` is set
    and are cleared afterwards, so the model is left as it was.
    """
    stats = CalibrationStats()
    linears = _weights_of_linears(model, names)
    params = dict(model.named_parameters())
    sq_sums: dict[str, torch.Tensor] = {}
    handles = []
    if input_norms:
        for key, module in linears.items():
            def hook(mod, args, _key=key):
                x = args[0].detach().float().reshape(-1, args[0].shape[-1])
                acc = sq_sums.get(_key)
                part = (x * x).sum(dim=0)
                sq_sums[_key] = part if acc is None else acc + part
            handles.append(module.register_forward_pre_hook(hook))
    wanted = [n for n in params if names is None or n in names]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            batch = batch.to(device)
            if taylor:
                model.zero_grad(set_to_none=True)
                loss = model(batch, labels=batch).loss
                loss.backward()
                for name in wanted:
                    p = params[name]
                    if p.grad is None:
                        continue
                    score = (p.detach() * p.grad).abs().float()
                    acc = stats.taylor.get(name)
                    stats.taylor[name] = score if acc is None else acc + score
            else:
                with torch.no_grad():
                    model(batch)
            stats.batches += 1
            stats.tokens += batch.numel()
    finally:
        for handle in handles:
            handle.remove()
        if taylor:
            model.zero_grad(set_to_none=True)
        model.train(was_training)
    stats.input_norms = {k: v.sqrt() for k, v in sq_sums.items()}
    return stats
