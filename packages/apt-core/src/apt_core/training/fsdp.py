"""Fully sharded data parallel (PyTorch's FSDP2, ``fully_shard``) for the Trainer.

With ``TrainingArguments(distributed="fsdp")`` under ``torchrun``, every APT block and then the root
module are sharded over the processes: each one keeps 1/N of the parameters, gradients and optimizer
state, and gathers a block's full weights only while it runs. The model is sharded in place, so
``trainer.model`` stays the same object (its parameters become ``DTensor`` shards).

Two things need care with this model:

* The tied embedding (``embed.weight``, also the LM head via ``F.linear``) belongs to the root's
  shard group. The root gathers it before the embedding and keeps it gathered through the forward,
  so both uses see one tensor and their gradients add up before the one reduce-scatter.
* ``fully_shard`` cannot shard 0-dim parameters (each block's ``ap_tau`` scalar). They stay
  replicated on every process, like under DDP, and :func:`sync_replicated_grads` averages their
  gradients once per optimizer step.

Checkpoints stay ordinary: :func:`full_model_state` and :func:`full_optimizer_state` gather full,
unsharded tensors onto rank 0 (CPU) in exactly the layout a single-process run writes, and
:func:`load_full_state_dicts` shards such files back, so a run can be resumed with either strategy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from apt_core.checkpoint import check_param_groups

__all__ = ["shard_model", "sync_replicated_grads", "full_model_state", "full_optimizer_state", "load_full_state_dicts"]


def shard_model(model: nn.Module, device: torch.device, param_dtype: torch.dtype | None = None) -> list[nn.Parameter]:
    """Shard *model* in place over all processes; returns the parameters left replicated.

    The model may still be on the CPU: each ``fully_shard`` call moves only its own group's
    parameters to *device*, so a model larger than one card is never whole on it.
    ``param_dtype`` (e.g. bf16) is the dtype blocks compute in; the shards, the optimizer and the
    gradient reduction stay fp32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    replicated = [p for p in model.parameters() if p.dim() == 0]
    for param in replicated:  # fully_shard does not move the parameters it ignores
        param.data = param.data.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    options = {"mesh": mesh, "mp_policy": policy, "ignored_params": set(replicated)}
    for block in getattr(model, "layers", ()):
        fully_shard(block, **options)
    fully_shard(model, **options)  # the rest: embedding (tied LM head), final norm, buffers
    return replicated


def sync_replicated_grads(params: list[nn.Parameter]) -> None:
    """Average the gradients of the replicated parameters over all processes (one all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.stack([g.reshape(()) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    for grad, value in zip(grads, flat):
        grad.copy_(value)


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's order: index i of a saved optimizer state is names[i]."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _gather_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full, unsharded weights on rank 0's CPU (other ranks get an empty dict).

    A collective: every process must call it.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_gather_options())


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state on rank 0's CPU, keyed by parameter index like ``optimizer.state_dict()``
    of an unsharded run (other ranks get an empty dict).

    A collective: every process must call it.
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer, options=_gather_options())
    if dist.get_rank() != 0:
        return {}
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    state = {index[name]: values for name, values in by_name["state"].items()}
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, torch.Tensor],
                          optimizer_state: dict[str, Any], source: str = "checkpoint") -> None:
    """Shard full state dicts (as a checkpoint holds them, read by every process) into *model* (a sharded
    APTModel, which checks the weights' names and shapes) and *optimizer*."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model.check_weights(model_state, source)
    names = _param_names(model, optimizer)
    groups = optimizer_state["param_groups"]
    check_param_groups(groups, optimizer, source)
    by_name = {"state": {names[i]: values for i, values in optimizer_state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in groups]}
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, by_name, options=options)
