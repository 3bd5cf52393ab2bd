"""The Trainer every training loop in the ecosystem runs through (plain, distillation, pruning
fine-tunes, lottery rounds), so the lifecycle hooks -- and with them e.g. automatic backup -- apply
to all of them.

Hooks fire on the main process (rank 0) only; ``callbacks`` run on every rank because they usually
change the model (e.g. re-applying pruning masks) and all replicas must stay identical.

Under ``torchrun`` the model is replicated with DDP, or sharded with FSDP2 when
``args.distributed == "fsdp"`` (see :mod:`apt_core.training.fsdp`); a single process trains plainly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from apt_core.checkpoint import (
    capture_rng_state,
    checkpoint_name,
    load_optimizer_state,
    read_optimizer_state,
    read_trainer_state,
    remove_old_checkpoints,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from apt_core.data import TokenBlocks
from apt_core.errors import APTError
from apt_core.model import APTModel
from apt_core.model.serialization import read_safetensors
from apt_core.training.arguments import TrainingArguments, lr_at_step
from apt_core.training.batching import BatchCursor, collate
from apt_core.training.distributed import setup_distributed
from apt_core.training.fsdp import (
    full_model_state,
    full_optimizer_state,
    load_full_state_dicts,
    shard_model,
    sync_replicated_grads,
)
from apt_core.training.profiling import StepProfiler

__all__ = ["Trainer", "TrainerState"]

LossFn = Callable[[torch.nn.Module, dict], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainerState:
    """Progress of a run; saved as ``trainer_state.json`` with every checkpoint."""

    step: int = 0
    epoch: int = 0
    #: Examples of the current epoch's permutation already consumed (the data position).
    epoch_offset: int = 0
    tokens_seen: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: str | None = None
    #: The data the run trains on, as given (``--data`` specs), for model cards and provenance.
    data: list[str] = field(default_factory=list)


class Trainer:
    """AdamW + warmup/cosine training with accumulation, clipping, autocast, eval, checkpoints and hooks.

    ``train_data`` / ``eval_data``: a 1-D LongTensor token stream (cut into ``args.seq_len`` blocks) or
    any sized indexable of examples (a LongTensor ``[T]`` or a dict with ``input_ids`` and optional
    ``labels`` / ``attention_mask``). ``loss_fn(model, batch)`` returns a loss or ``(loss, metrics)``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: TrainingArguments,
        train_data: Any,
        eval_data: Any = None,
        tokenizer: Any = None,
        loss_fn: LossFn | None = None,
        callbacks: Iterable[Any] = (),
        hook: Any = None,
    ) -> None:
        if hook is None:
            from apt_core.plugins import get_plugin_manager

            hook = get_plugin_manager().hook
        self.args, self.tokenizer, self.hook = args, tokenizer, hook
        self.loss_fn, self.callbacks = loss_fn, list(callbacks)
        self.dist = setup_distributed(args.device)
        self.device = self.dist.device
        self.autocast_dtype = self._autocast_dtype()
        #: True when the model is sharded over the processes (FSDP); a single process never shards.
        self.sharded = args.distributed == "fsdp" and self.dist.enabled
        #: Parameters FSDP cannot shard (0-dim scalars); kept replicated, gradients averaged by hand.
        self.replicated_params: list[torch.nn.Parameter] = []
        if self.sharded:
            self.model = self._shard(model)
        else:
            self.model = model.to(self.device)
        self.train_data = self._as_dataset(train_data)
        self.eval_data = self._as_dataset(eval_data) if eval_data is not None else None
        self.out_dir = Path(args.out_dir) if args.out_dir else None
        if args.profile_steps:
            self.callbacks.append(StepProfiler(*args.profile_steps, self.out_dir / "profile", self.dist.rank,
                                               self.device))
        self.state = TrainerState()
        # After sharding: fully_shard replaces the parameters, and the optimizer must hold the shards.
        self.optimizer = self._build_optimizer()
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.wrapped_model = self._wrap(self.model)
        self.global_batch = args.batch_size * args.grad_accum_steps * self.dist.world_size

    # ------------------------------------------------------------------ setup
    def _as_dataset(self, data: Any) -> Any:
        if isinstance(data, torch.Tensor) and data.dim() == 1:
            return TokenBlocks(data, self.args.seq_len)
        if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise APTError("training data must be a token tensor or a sized, indexable dataset")
        return data

    def _build_optimizer(self) -> torch.optim.Optimizer:
        # No weight decay on gains, biases and scalars (norm weights, ap_tau): decaying them only hurts.
        decay = [p for _, p in self.model.named_parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for _, p in self.model.named_parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": self.args.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.args.lr, betas=(self.args.adam_beta1, self.args.adam_beta2),
                                 eps=self.args.adam_eps, fused=self.device.type == "cuda")

    def _autocast_dtype(self) -> torch.dtype | None:
        mode = self.args.mixed_precision
        if mode == "auto":
            return torch.bfloat16 if self.device.type == "cuda" else None
        if mode == "no":
            return None
        if mode == "fp16" and self.device.type != "cuda":
            raise APTError("fp16 mixed precision needs a CUDA device; use bf16 or no")
        return torch.bfloat16 if mode == "bf16" else torch.float16

    def _shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """FSDP: shard *model* in place (before the optimizer exists, which must see the shards)."""
        if not isinstance(model, APTModel):  # wrapper modules (e.g. distillation) shard and save differently
            raise APTError(f"distributed fsdp trains an APTModel, not a {type(model).__name__}; use ddp")
        if self.autocast_dtype == torch.float16:
            raise APTError("fp16 mixed precision is not supported with distributed fsdp; use bf16")
        # Mixed precision through FSDP's policy instead of autocast: blocks are gathered in bf16 (half
        # the all-gather traffic and unsharded-weight memory) and compute in bf16, while the shards the
        # optimizer updates and the gradient reduce-scatter stay fp32. Autocast would gather fp32
        # weights and cast them again on every forward. So no autocast on this path.
        self.replicated_params = shard_model(model, self.device, param_dtype=self.autocast_dtype)
        self.autocast_dtype = None
        return model

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.dist.enabled and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            options = {}
            if self.args.compile:
                # One graph for the whole DDP step. By default dynamo splits the graph at every
                # gradient bucket so all-reduce overlaps the backward; on 2 H200s those split graphs
                # lost more fusion than the overlap won (0.77x the tokens/s of one graph).
                torch._dynamo.config.optimize_ddp = False
                # With one backward graph every gradient is ready at once, so buckets overlap nothing:
                # one bucket for the whole model is one all-reduce a step instead of ~14 waiting on
                # each other. README "Two GPUs" has the measurements (bench/bench_ddp.py).
                options["bucket_cap_mb"] = 1024
            # Gradients live in DDP's bucket (no copies in and out of it), and no buffer broadcast
            # before each forward: APT's buffers are constant position tables.
            model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                            gradient_as_bucket_view=True, **options)
        # FSDP: the model is already sharded (in __init__), so compiling here compiles the sharded model.
        return torch.compile(model) if self.args.compile else model

    @property
    def is_main_process(self) -> bool:
        return self.dist.is_main

    # ------------------------------------------------------------------ resume
    def resume(self, path: str | Path) -> Path:
        """Load weights, optimizer, data position and RNG state from a checkpoint or run directory."""
        directory = resolve_checkpoint(path)
        state = read_trainer_state(directory)
        if state is None:
            raise APTError(f"cannot resume from {directory}: it has no trainer_state.json")
        if self.sharded:
            # Every process reads the full files and keeps its own shard of them.
            load_full_state_dicts(self.model, self.optimizer, read_safetensors(directory / "model.safetensors"),
                                  read_optimizer_state(directory), source=str(directory))
        else:
            self.model.load_weights(read_safetensors(directory / "model.safetensors", device=self.device),
                                    source=directory / "model.safetensors")
            load_optimizer_state(directory, self.optimizer, map_location=self.device)
        known = {f for f in TrainerState.__dataclass_fields__}
        self.state = TrainerState(**{k: v for k, v in state.items() if k in known})
        if "rng" in state:
            restore_rng_state(state["rng"])
        return directory

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, float]:
        """Run until ``args.max_steps``; returns the final metrics."""
        args = self.args
        if args.resume_from:
            self.resume(args.resume_from)
        else:
            torch.manual_seed(args.seed)
        cursor = BatchCursor(len(self.train_data), self.global_batch, args.seed,
                             epoch=self.state.epoch, offset=self.state.epoch_offset)
        if self.is_main_process:
            self.hook.apt_train_start(trainer=self)
        bar = self._progress_bar()
        running_loss = torch.zeros((), device=self.device)
        running_extra: dict[str, Any] = {}
        window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
        started = time.perf_counter()
        self.wrapped_model.train()
        while self.state.step < args.max_steps:
            step = self.state.step
            lr = lr_at_step(args, step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            indices = cursor.next_step()
            micro = cursor.micro_batches(indices, args.batch_size, args.grad_accum_steps,
                                         self.dist.rank, self.dist.world_size)
            step_loss, step_tokens = self._accumulate(micro, running_extra)
            grad_norm = self._optimizer_step()
            for callback in self.callbacks:
                if hasattr(callback, "on_step_end"):
                    callback.on_step_end(self)
            running_loss += step_loss
            self.state.step = step + 1
            self.state.epoch, self.state.epoch_offset = cursor.epoch, cursor.offset
            self.state.tokens_seen += step_tokens * self.dist.world_size
            window_steps += 1
            window_tokens += step_tokens * self.dist.world_size
            metrics: dict[str, float] = {"lr": lr}
            last = self.state.step == args.max_steps
            if self.state.step % args.log_every == 0 or last:
                metrics.update(self._read_window(running_loss, running_extra, window_steps, grad_norm))
                elapsed = time.perf_counter() - window_start
                metrics["tokens_per_second"] = window_tokens / max(elapsed, 1e-9)
                running_loss.zero_()
                running_extra.clear()
                window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
                self.state.metrics = dict(metrics)
                if bar is not None:
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{lr:.2e}")
            if bar is not None:
                bar.update(1)
            if self.is_main_process:
                self.hook.apt_train_step_end(trainer=self, step=self.state.step, metrics=metrics)
            paused = time.perf_counter()
            if self.eval_data is not None and args.eval_every and self.state.step % args.eval_every == 0 and not last:
                self.evaluate()
            if self.out_dir and args.save_every and self.state.step % args.save_every == 0 and not last:
                self.save()
            window_start += time.perf_counter() - paused  # tokens/s counts training steps only
        if bar is not None:
            bar.close()
        final = dict(self.state.metrics)
        if self.eval_data is not None:
            final.update(self.evaluate())
        if self.out_dir and args.save_final:
            self.save()
        final.update(step=float(self.state.step), tokens_seen=float(self.state.tokens_seen),
                     train_seconds=time.perf_counter() - started)
        self.state.metrics = final
        if self.is_main_process:
            self.hook.apt_train_end(trainer=self, metrics=final)
        return final

    def _accumulate(self, micro: list[list[int]], extra: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """Forward/backward all micro-batches of one step; returns (mean loss tensor, tokens on this rank)."""
        accum = len(micro)
        total = torch.zeros((), device=self.device)
        tokens = 0
        for i, indices in enumerate(micro):
            batch = self._to_device(collate([self.train_data[j] for j in indices]))
            tokens += batch["input_ids"].numel()
            # DDP: only the last micro-batch all-reduces gradients. FSDP reduce-scatters every micro-batch
            # into the sharded gradients: deferring it would keep full, unsharded gradients for the whole
            # model on every process, the memory sharding is there to save.
            defer = self.dist.enabled and not self.sharded and i < accum - 1
            sync = self.wrapped_model.no_sync() if defer else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    loss, metrics = self._compute_loss(batch)
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.detach() / accum
            for name, value in metrics.items():
                value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                extra[name] = extra.get(name, 0) + value.to(self.device) / accum
        extra["_steps"] = extra.get("_steps", 0) + 1
        return total, tokens

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Move a CPU batch to the device without stalling the host.

        A copy from ordinary (pageable) memory makes the host wait until the GPU has finished all
        queued work, so Python could never run ahead to queue the next step. From pinned memory the copy
        is queued like a kernel (the pinned block is recycled only after the copy has run)."""
        if self.device.type != "cuda":
            return batch
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}

    def _compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.loss_fn is None:
            mask = batch.get("attention_mask")
            # An APTModel is asked for the loss alone (no logits to carry through a compiled backward).
            loss_only = {"return_logits": False} if isinstance(self.model, APTModel) else {}
            out = self.wrapped_model(batch["input_ids"], labels=batch["labels"], attention_mask=mask, **loss_only)
            return out.loss, {}
        result = self.loss_fn(self.wrapped_model, batch)
        if isinstance(result, tuple):
            return result[0], dict(result[1])
        return result, {}

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _optimizer_step(self) -> torch.Tensor | None:
        grad_norm = None
        if self.replicated_params:
            sync_replicated_grads(self.replicated_params)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor norm over the shards
                grad_norm = grad_norm.full_tensor()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _read_window(self, running_loss, extra, steps, grad_norm) -> dict[str, float]:
        """Average loss (and loss_fn metrics) since the last log, reduced over ranks: the one host sync."""
        n_steps = extra.pop("_steps", steps)
        names = sorted(extra)
        values = torch.stack([running_loss.float()] + [extra[n].float() for n in names]) / max(n_steps, 1)
        values = self.dist.all_reduce_sum(values) / self.dist.world_size
        numbers = values.tolist()
        loss = numbers[0]
        if not math.isfinite(loss):
            raise APTError(f"training diverged: loss is {loss} at step {self.state.step + 1}; lower the learning rate")
        metrics = {"loss": loss, **dict(zip(names, numbers[1:]))}
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        return metrics

    # ------------------------------------------------------------------ eval and save
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Token-weighted mean next-token loss and perplexity on the eval data (sharded over ranks)."""
        if self.eval_data is None:
            raise APTError("no eval data was given to the trainer")
        self.model.eval()
        size = self.args.eval_batch_size or self.args.batch_size
        n_batches = math.ceil(len(self.eval_data) / size)
        if self.args.eval_batches:
            n_batches = min(n_batches, self.args.eval_batches)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        world = self.dist.world_size
        # FSDP: every forward gathers weights with all processes, so all must run the same number of
        # them; a process past the last batch runs batch 0 again and does not count it.
        end = math.ceil(n_batches / world) * world if self.sharded else n_batches
        for b in range(self.dist.rank, end, world):
            real = b < n_batches
            start = b * size if real else 0
            items = [self.eval_data[i] for i in range(start, min(start + size, len(self.eval_data)))]
            batch = self._to_device(collate(items))
            with self._autocast():
                out = self.model(batch["input_ids"], labels=batch["labels"], attention_mask=batch.get("attention_mask"))
            if real:
                valid = (batch["labels"][:, 1:] != -100).sum()
                loss_sum += out.loss.double() * valid
                count += valid
        totals = self.dist.all_reduce_sum(torch.stack([loss_sum, count]))
        self.model.train()
        eval_loss = (totals[0] / totals[1].clamp(min=1)).item()
        metrics = {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 50.0))}
        self.state.eval_history.append({"step": self.state.step, **metrics})
        if self.is_main_process:
            self.hook.apt_evaluate_end(trainer=self, metrics=metrics)
        return metrics

    def save(self) -> Path | None:
        """Write ``checkpoint-<step>`` into ``out_dir`` (main process), update ``latest``, apply retention."""
        if self.out_dir is None:
            raise APTError("no out_dir: the trainer has nowhere to save checkpoints")
        path = self.out_dir / checkpoint_name(self.state.step)
        model_state = optimizer_state = None
        if self.sharded:  # a collective: every process sends its shards, rank 0 gets full CPU tensors
            model_state = full_model_state(self.model)
            optimizer_state = full_optimizer_state(self.model, self.optimizer)
        if self.is_main_process:
            self.state.last_checkpoint = path.name
            state = {**asdict(self.state), "rng": capture_rng_state(), "args": self.args.to_dict(),
                     "world_size": self.dist.world_size, "global_batch_size": self.global_batch}
            save_checkpoint(path, self.model, self.tokenizer, self.optimizer, state, update_latest=True,
                            model_state=model_state, optimizer_state=optimizer_state)
            remove_old_checkpoints(self.out_dir, self.args.keep_last)
            self.hook.apt_checkpoint_saved(trainer=self, path=path)
        self.dist.barrier()
        return path

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's full, unsharded weights (e.g. to build a plain copy for generation).

        Under FSDP a collective that every process must call: rank 0 gets the tensors on the CPU,
        the others an empty dict. Otherwise ``model.state_dict()``.
        """
        if self.sharded:
            return full_model_state(self.model)
        return self.model.state_dict()

    def _progress_bar(self):
        if not (self.args.progress and self.is_main_process):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.args.max_steps, initial=self.state.step, desc="train", unit="step", dynamic_ncols=True)
