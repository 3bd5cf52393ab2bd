"""Deterministic, resumable batch order shared by every process of a run.

Each epoch is a permutation of the dataset drawn from ``seed + epoch`` (independent of the global
RNG), consumed ``global_batch`` examples at a time. The cursor ``(epoch, offset)`` is all a
checkpoint needs to continue with exactly the batches an uninterrupted run would have seen. Under
DDP every rank computes the same permutation and takes its own slice of each micro-batch, so N
processes see the same examples per step as one process with an N-times larger batch.
"""

from __future__ import annotations

from typing import Any

import torch

from apt_core.errors import APTError

__all__ = ["BatchCursor", "collate"]


class BatchCursor:
    """Yields the dataset indices of each optimizer step for one rank."""

    def __init__(self, num_examples: int, global_batch: int, seed: int, epoch: int = 0, offset: int = 0) -> None:
        if num_examples < global_batch:
            raise APTError(f"the training data has {num_examples} sequences, fewer than one global batch "
                           f"({global_batch}); use more data or a smaller --batch-size")
        self.num_examples, self.global_batch, self.seed = num_examples, global_batch, seed
        self.epoch, self.offset = epoch, offset
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1

    def _permutation(self) -> torch.Tensor:
        if self._perm_epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.num_examples, generator=generator)
            self._perm_epoch = self.epoch
        return self._perm

    def next_step(self) -> list[int]:
        """Global indices of the next optimizer step (length ``global_batch``); advances the cursor."""
        if self.offset + self.global_batch > self.num_examples:
            self.epoch, self.offset = self.epoch + 1, 0
        indices = self._permutation()[self.offset : self.offset + self.global_batch].tolist()
        self.offset += self.global_batch
        return indices

    @staticmethod
    def micro_batches(indices: list[int], batch_size: int, accum: int, rank: int, world: int) -> list[list[int]]:
        """This rank's slices: micro-batch ``a`` holds ``indices[(a*world + rank)*batch_size : +batch_size]``."""
        return [indices[(a * world + rank) * batch_size : (a * world + rank + 1) * batch_size] for a in range(accum)]


def collate(items: list[Any]) -> dict[str, torch.Tensor]:
    """Stack examples (tensors or dicts with ``input_ids`` / ``labels`` / ``attention_mask``) into a batch.

    Missing labels default to the inputs, with padding (attention_mask 0) set to -100.
    """
    if isinstance(items[0], torch.Tensor):
        items = [{"input_ids": t} for t in items]
    batch = {"input_ids": torch.stack([torch.as_tensor(i["input_ids"]) for i in items])}
    if "attention_mask" in items[0]:
        batch["attention_mask"] = torch.stack([torch.as_tensor(i["attention_mask"]) for i in items])
    if "labels" in items[0]:
        batch["labels"] = torch.stack([torch.as_tensor(i["labels"]) for i in items])
    else:
        labels = batch["input_ids"].clone()
        if "attention_mask" in batch:
            labels = labels.masked_fill(batch["attention_mask"] == 0, -100)
        batch["labels"] = labels
    return batch
