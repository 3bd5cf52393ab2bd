"""torch.distributed setup for runs under ``torchrun`` (env RANK / WORLD_SIZE / LOCAL_RANK)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from apt_core.errors import APTError

__all__ = ["DistributedContext", "resolve_device", "setup_distributed"]


@dataclass
class DistributedContext:
    """Where this process sits in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(device: str = "auto") -> torch.device:
    """This process's device for a ``--device`` value: ``auto`` is ``cuda:LOCAL_RANK`` when a GPU is
    available, else the CPU; a plain ``cuda`` is ``cuda:LOCAL_RANK`` (each torchrun process its own GPU)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        target = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", local_rank)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise APTError(f"--device {device}: no CUDA device is available here")
    return target


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistributedContext(rank=rank, world_size=world, local_rank=local_rank, device=target)
