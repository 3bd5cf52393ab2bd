"""``apt-model hf train``: train the HF-wrapped APT model with ``transformers.Trainer``.

The transformers way end to end: documents from any ``--data`` source (``file``, ``default``, ``hf:``),
tokenised with the HF tokenizer through ``datasets.map``, grouped into fixed-length blocks, batched by
``DataCollatorForLanguageModeling(mlm=False)``, trained by ``Trainer`` (so ``accelerate launch``,
``torchrun``, multi-GPU and ``--deepspeed`` work unchanged), evaluated every ``--eval-every`` steps.

Checkpoints are APT checkpoints (safetensors + JSON, ``checkpoint-N`` + ``latest``) written by a
callback, so ``apt-model eval/generate/export`` read the result; transformers' own pickled optimizer
checkpoints are not written. The core lifecycle hooks ``apt_checkpoint_saved`` and ``apt_train_end``
fire with an :class:`HFTrainRun` (``.model``, ``.args``, ``.state``, ``.out_dir``), so ``auto_upload``
and automatic backups work here too.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = ["train_command", "HFTrainRun", "train_with_transformers"]


@dataclass
class RunState:
    step: int = 0
    epoch: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    eval_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class HFTrainRun:
    """What lifecycle hooks receive as ``trainer`` during ``hf train`` (mirrors the core trainer's attributes)."""

    model: Any
    args: Any
    out_dir: Path
    tokenizer: Any
    apt_config: Any
    data: list[str]
    seq_len: int
    state: RunState = field(default_factory=RunState)
    is_main_process: bool = True


def _tokenizer_for(config, documents: list[str], init, tokenizer_path):
    from apt_core.errors import APTError
    from apt_core.tokenizer import APTTokenizer

    if init is not None:
        return init.tokenizer
    if tokenizer_path:
        return APTTokenizer.from_pretrained(tokenizer_path)
    if config.vocab_size <= 260:
        return APTTokenizer.byte_level()
    if not documents:
        raise APTError("no training text to fit a tokenizer on")
    return APTTokenizer.train(documents, vocab_size=config.vocab_size)


def _blocks(documents: list[str], hf_tok, seq_len: int):
    """A ``datasets.Dataset`` of ``input_ids`` blocks: tokenise (EOS after each document), concatenate, cut."""
    import datasets

    from apt_core.errors import APTError

    raw = datasets.Dataset.from_dict({"text": documents})
    eos = hf_tok.eos_token_id

    def tokenize(batch):
        # verbose=False: whole documents exceed model_max_length on purpose; they are cut into blocks below.
        encoded = hf_tok(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
        return {"input_ids": [ids + [eos] for ids in encoded]}

    def group(batch):
        flat = [i for ids in batch["input_ids"] for i in ids]
        usable = len(flat) // seq_len * seq_len
        return {"input_ids": [flat[i : i + seq_len] for i in range(0, usable, seq_len)]}

    tokens = raw.map(tokenize, batched=True, remove_columns=["text"], desc="tokenize")
    # One group over everything (batch_size=None): no tokens lost at batch edges on small corpora.
    blocks = tokens.map(group, batched=True, batch_size=None, desc=f"blocks of {seq_len}")
    if len(blocks) == 0:
        raise APTError(f"not enough data: fewer than {seq_len} tokens")
    return blocks


def _save_apt_checkpoint(run: HFTrainRun, hf_model) -> Path:
    """Write ``out_dir/checkpoint-<step>`` as an APT checkpoint and fire ``apt_checkpoint_saved``."""
    from apt_core.checkpoint import checkpoint_name, save_checkpoint
    from apt_core.model import APTModel
    from apt_core.plugins import get_plugin_manager

    from .convert import hf_to_apt_state

    state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in hf_model.state_dict().items()}
    apt_model = APTModel(run.apt_config)
    apt_model.load_weights(hf_to_apt_state(state, run.apt_config.tie_embeddings), source="the trained model")
    path = run.out_dir / checkpoint_name(run.state.step)
    trainer_state = {
        "step": run.state.step, "epoch": run.state.epoch, "metrics": dict(run.state.metrics),
        "eval_history": list(run.state.eval_history), "data": list(run.data), "trainer": "transformers.Trainer",
        "args": {"seq_len": run.seq_len, "max_steps": run.args.max_steps, "lr": run.args.learning_rate,
                 "batch_size": run.args.per_device_train_batch_size,
                 "grad_accum_steps": run.args.gradient_accumulation_steps, "seed": run.args.seed},
    }
    save_checkpoint(path, apt_model, run.tokenizer, trainer_state=trainer_state, update_latest=True)
    get_plugin_manager().hook.apt_checkpoint_saved(trainer=run, path=path)
    return path


def _callback_class():
    from transformers import TrainerCallback

    class APTCheckpointCallback(TrainerCallback):
        """Keeps :class:`RunState` current and writes APT checkpoints every ``save_every`` steps."""

        def __init__(self, run: HFTrainRun, save_every: int) -> None:
            self.run, self.save_every = run, save_every

        def on_log(self, args, state, control, logs=None, **kwargs):
            for key, value in (logs or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.run.state.metrics[key] = float(value)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                entry = {"step": state.global_step, "eval_loss": float(metrics["eval_loss"]),
                         "eval_perplexity": math.exp(min(float(metrics["eval_loss"]), 50.0))}
                self.run.state.eval_history.append(entry)
                self.run.state.metrics.update({k: v for k, v in entry.items() if k != "step"})

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.run.state.step, self.run.state.epoch = state.global_step, float(state.epoch or 0.0)
            if self.save_every and state.global_step % self.save_every == 0 and state.is_world_process_zero \
                    and state.global_step < state.max_steps:
                _save_apt_checkpoint(self.run, model)

    return APTCheckpointCallback


def train_with_transformers(*, data_specs: list[str], out_dir: Path, config, text_field: str = "text",
                            eval_spec: str | None = None, streaming: bool = False, init: str | None = None,
                            tokenizer_path: str | None = None, steps: int = 20, batch_size: int = 8,
                            grad_accum: int = 1, seq_len: int = 64, lr: float = 3e-4, warmup_steps: int = 10,
                            eval_every: int = 0, save_every: int = 0, seed: int = 0, deepspeed: str | None = None,
                            progress: bool = True) -> dict:
    """Train and write the final APT checkpoint into *out_dir*; returns the summary."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    from apt_core.checkpoint import load_checkpoint, resolve_checkpoint
    from apt_core.data import iter_documents
    from apt_core.errors import APTError
    from apt_core.plugins import get_plugin_manager

    from .convert import apt_to_hf_config, apt_to_hf_state
    from .hf_tokenizer import to_hf_tokenizer
    from .remote.configuration_apt import APTConfig as HFAPTConfig
    from .remote.modeling_apt import APTForCausalLM

    if (out_dir / "latest").exists():
        raise APTError(f"{out_dir} already holds a run; choose another --out")
    loaded = load_checkpoint(resolve_checkpoint(init)) if init else None
    if loaded is not None:
        config = loaded.config
    if seq_len > config.max_seq_len:
        raise APTError(f"--seq-len {seq_len} exceeds the model's max_seq_len {config.max_seq_len}")
    documents = [doc for spec in data_specs for doc in iter_documents(spec, text_field=text_field, streaming=streaming)]
    tokenizer = _tokenizer_for(config, documents, loaded, tokenizer_path)
    if tokenizer.vocab_size > config.vocab_size:
        raise APTError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}")
    hf_tok = to_hf_tokenizer(tokenizer, config.max_seq_len)
    train_blocks = _blocks(documents, hf_tok, seq_len)
    if eval_spec:
        eval_docs = list(iter_documents(eval_spec, text_field=text_field, streaming=streaming))
        eval_blocks = _blocks(eval_docs, hf_tok, seq_len)
    elif len(train_blocks) >= 20:
        cut = len(train_blocks) - max(1, len(train_blocks) // 20)  # the tail 5%, as the core trainer does
        train_blocks, eval_blocks = train_blocks.select(range(cut)), train_blocks.select(range(cut, len(train_blocks)))
    else:
        eval_blocks = None

    set_seed(seed)
    model = APTForCausalLM(HFAPTConfig(**apt_to_hf_config(config)))
    if loaded is not None:
        missing, unexpected = model.load_state_dict(apt_to_hf_state(loaded.model.state_dict(), config.tie_embeddings),
                                                    strict=False)
        if unexpected or [m for m in missing if m != "lm_head.weight"]:
            raise APTError(f"--init {init} does not fit the model: missing {missing}, unexpected {unexpected}")
    use_cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(out_dir / "transformers"), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, gradient_accumulation_steps=grad_accum, learning_rate=lr,
        warmup_steps=warmup_steps, lr_scheduler_type="cosine", weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0,
        eval_strategy="steps" if (eval_blocks is not None and eval_every) else "no",
        eval_steps=eval_every or None, save_strategy="no", logging_steps=max(1, min(10, steps)), seed=seed,
        report_to=[], use_cpu=not use_cuda, bf16=use_cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0, disable_tqdm=not progress, deepspeed=deepspeed,
        ddp_find_unused_parameters=False,  # every APT parameter takes part in every forward pass
    )
    run = HFTrainRun(model=model, args=args, out_dir=out_dir, tokenizer=tokenizer, apt_config=config,
                     data=list(data_specs), seq_len=seq_len)
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks,
                      data_collator=DataCollatorForLanguageModeling(hf_tok, mlm=False),
                      callbacks=[_callback_class()(run, save_every)])
    if not progress:  # --json: stdout carries the summary only
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    run.is_main_process = trainer.is_world_process_zero()
    result = trainer.train()
    run.state.step = trainer.state.global_step
    run.state.metrics["train_loss"] = float(result.training_loss)
    if eval_blocks is not None:
        trainer.evaluate()  # on_evaluate records eval_loss / eval_perplexity
    summary = {"steps": run.state.step, "train_loss": run.state.metrics.get("train_loss"),
               "eval_loss": run.state.metrics.get("eval_loss"),
               "eval_perplexity": run.state.metrics.get("eval_perplexity"),
               "train_seconds": result.metrics.get("train_runtime"), "parameters": model.num_parameters()}
    if run.is_main_process:
        summary["checkpoint"] = str(_save_apt_checkpoint(run, trainer.model))
        with contextlib.suppress(OSError):  # transformers' output_dir stays empty (save_strategy="no")
            Path(args.output_dir).rmdir()
        get_plugin_manager().hook.apt_train_end(trainer=run, metrics=dict(run.state.metrics))
    return summary


@click.command("train")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run directory (APT checkpoints + latest).")
@click.option("--data", "data_specs", multiple=True, metavar="SPEC",
              help="Training data (repeatable): a path, default, hf:NAME[:CONFIG][:SPLIT], hf:FILE ...")
@click.option("--eval-data", metavar="SPEC", help="Held-out data (default: the last 5% of the training blocks).")
@click.option("--text-field", default="text", show_default=True)
@click.option("--streaming", is_flag=True, help="Stream --data sources that support it.")
@click.option("--config", "config_name", default="tiny", show_default=True, help="Preset (tiny/small/base) or JSON file.")
@click.option("--init", metavar="CKPT", help="Start from this APT checkpoint (its config and tokenizer).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(), help="tokenizer.json or a directory holding one.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True, help="0 = only at the end.")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True, help="0 = only at the end.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--deepspeed", type=click.Path(exists=True), help="DeepSpeed JSON config (passed to transformers).")
@click.option("--json", "as_json", is_flag=True)
def train_command(out_dir, data_specs, eval_data, text_field, streaming, config_name, init, tokenizer_path, steps,
                  batch_size, grad_accum, seq_len, lr, warmup_steps, eval_every, save_every, seed, deepspeed,
                  as_json) -> None:
    """Train APT with transformers.Trainer (accelerate / torchrun / DeepSpeed); writes APT checkpoints to --out."""
    import json

    from apt_core.errors import APTError
    from apt_core.model import APTConfig
    from apt_core.model.config import PRESETS

    if config_name in PRESETS:
        config = APTConfig.preset(config_name)
    elif Path(config_name).is_file():
        config = APTConfig.from_json_file(config_name)
    else:
        raise APTError(f"--config {config_name!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    summary = train_with_transformers(
        data_specs=list(data_specs) or ["default"], out_dir=Path(out_dir), config=config, text_field=text_field,
        eval_spec=eval_data, streaming=streaming, init=init, tokenizer_path=tokenizer_path, steps=steps,
        batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len, lr=lr, warmup_steps=warmup_steps,
        eval_every=eval_every, save_every=save_every, seed=seed, deepspeed=deepspeed, progress=not as_json)
    if "checkpoint" not in summary:  # not the main process of a distributed run
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for key, value in summary.items():
            click.echo(f"  {key:<16} {value:.4g}" if isinstance(value, float) else f"  {key:<16} {value}")
