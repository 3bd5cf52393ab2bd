"""``apt-model train``: train an APT model (by default the small preset on the embedded corpus)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["train"]

DEFAULT_PROMPT = "ROMEO:"


@click.command()
@click.option("--data", "data_specs", multiple=True, metavar="SPEC",
              help="Training data: a file/directory path, 'default' (embedded corpus) or SCHEME:LOCATION "
                   "from a plugin (repeatable). Default: the embedded Shakespeare corpus.")
@click.option("--eval-data", metavar="SPEC", help="Held-out data. Default: the corpus's held-out split, "
                                                   "or the last 5% of the training tokens.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text in JSONL data.")
@click.option("--config", "config_name", default="small", show_default=True, metavar="PRESET|FILE",
              help="Model preset (tiny, small, base) or a JSON file with model fields (and optionally "
                   "a 'training' section).")
@click.option("--steps", type=int, help="Optimizer steps (default from the preset).")
@click.option("--out", "out_dir", default="runs/apt", show_default=True, type=click.Path(file_okay=False),
              help="Run directory for checkpoints.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, help="Sequences per micro-batch and process.")
@click.option("--grad-accum", type=int, help="Micro-batches per optimizer step.")
@click.option("--seq-len", type=int, help="Training sequence length.")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--eval-every", type=int, help="Evaluate every N steps (0: only at the end).")
@click.option("--save-every", type=int, help="Checkpoint every N steps (0: only at the end).")
@click.option("--keep-last", type=int, help="Checkpoints to keep.")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(exists=True),
              help="tokenizer.json (or a directory with one) to use instead of training one.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--mixed-precision", type=click.Choice(["auto", "bf16", "fp16", "no"]), help="Autocast mode.")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option("--distributed", type=click.Choice(["ddp", "fsdp"]),
              help="Under torchrun: ddp (replicate the model) or fsdp (shard it, for models that do not "
                   "fit one card). Default ddp.")
@click.option("--profile", "profile_window", metavar="START:END",
              help="Profile steps START+1..END with torch.profiler: a trace and a table of the costliest "
                   "operations per process in OUT/profile/.")
@click.option("--prompt", help=f"Prompt for the sample printed at the end (default {DEFAULT_PROMPT!r} "
                               "on the embedded corpus).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON (no progress bar).")
def train(data_specs, eval_data, text_field, config_name, steps, out_dir, resume, seed, batch_size, grad_accum,
          seq_len, lr, eval_every, save_every, keep_last, tokenizer_path, device, mixed_precision, use_compile,
          distributed, profile_window, prompt, as_json) -> None:
    """Train an APT model and save checkpoints to --out.

    With no options: the small preset on the embedded Shakespeare corpus, a few minutes on 2 CPU cores.
    Runs unchanged under torchrun (DDP, or FSDP with --distributed fsdp).
    """
    import torch

    from apt_core.checkpoint import read_trainer_state, resolve_checkpoint
    from apt_core.commands._output import print_json, print_table
    from apt_core.data import iter_documents, split_tail, tokenize_documents
    from apt_core.errors import APTError
    from apt_core.model import APTConfig, APTModel
    from apt_core.model.config import PRESETS, load_preset_file
    from apt_core.tokenizer import APTTokenizer
    from apt_core.training import Trainer, TrainingArguments

    specs = list(data_specs) or ["default"]
    run_dir = Path(out_dir)
    overrides = {"max_steps": steps, "batch_size": batch_size, "grad_accum_steps": grad_accum, "seq_len": seq_len,
                 "lr": lr, "eval_every": eval_every, "save_every": save_every, "keep_last": keep_last,
                 "mixed_precision": mixed_precision, "distributed": distributed}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if profile_window is not None:
        overrides["profile_steps"] = _parse_window(profile_window)

    if resume:
        checkpoint = resolve_checkpoint(run_dir)
        state = read_trainer_state(checkpoint) or {}
        config = APTConfig.from_json_file(checkpoint / "config.json")
        tokenizer = APTTokenizer.from_pretrained(checkpoint)
        training = dict(state.get("args", {}))
        training.pop("profile_steps", None)  # a profile is asked for per invocation
        training.update(overrides)
        training["resume_from"] = str(run_dir)
        seed = training.get("seed", seed)
    else:
        if run_dir.exists() and (run_dir / "latest").exists():
            raise APTError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        if config_name in PRESETS:
            preset = load_preset_file(config_name)
            config = APTConfig.from_dict(preset["model"])
            training = dict(preset.get("training", {}))
        else:
            path = Path(config_name)
            if not path.is_file():
                raise APTError(f"--config {config_name!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
            import json

            raw = json.loads(path.read_text(encoding="utf-8"))
            config = APTConfig.from_json_file(path)
            training = dict(raw.get("training", {})) if isinstance(raw, dict) else {}
        training.update(overrides)
        training["seed"] = seed
        tokenizer = None
    training.update(out_dir=str(run_dir), device=device, progress=not as_json)
    if use_compile:
        training["compile"] = True
    args = TrainingArguments.from_dict(training)
    if args.seq_len > config.max_seq_len:
        raise APTError(f"--seq-len {args.seq_len} exceeds the model's max_seq_len {config.max_seq_len}")

    documents = [doc for spec in specs for doc in iter_documents(spec, text_field=text_field)]
    if tokenizer is None:
        if tokenizer_path:
            tokenizer = APTTokenizer.from_pretrained(tokenizer_path)
        elif config.vocab_size <= 260:
            tokenizer = APTTokenizer.byte_level()
        else:
            tokenizer = APTTokenizer.train(documents, vocab_size=config.vocab_size)
    if tokenizer.vocab_size > config.vocab_size:
        raise APTError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}")
    train_tokens = tokenize_documents(documents, tokenizer)
    if eval_data:
        eval_tokens = tokenize_documents(iter_documents(eval_data, text_field=text_field), tokenizer)
    elif specs == ["default"]:
        eval_tokens = tokenize_documents(iter_documents("default:eval"), tokenizer)
    else:
        train_tokens, eval_tokens = split_tail(train_tokens)
    if len(eval_tokens) < args.seq_len:
        eval_tokens = None

    torch.manual_seed(seed)
    model = APTModel(config)
    trainer = Trainer(model, args, train_tokens, eval_tokens, tokenizer=tokenizer)
    if not resume:
        trainer.state.data = specs
    main = trainer.is_main_process
    if main and not as_json:
        click.echo(f"training {model.num_parameters():,} parameters on {len(train_tokens):,} tokens "
                   f"({', '.join(specs)}) for {args.max_steps} steps -> {run_dir}", err=True)
    metrics = trainer.train()
    sample_model = trainer.model
    if trainer.sharded:
        # FSDP: every process holds only shards, and a forward needs all of them. Gather a plain copy
        # (on the CPU: the model may not fit one card) for rank 0's sample.
        state = trainer.full_state_dict()
        if main:
            sample_model = APTModel(config)
            sample_model.load_weights(state)
    if not main:
        return

    if prompt is None:
        first_line = next((line for doc in documents for line in doc.splitlines() if line.strip()), "\n")
        prompt = DEFAULT_PROMPT if specs == ["default"] else first_line[:30]
    sample = _sample(sample_model, tokenizer, prompt, seed)
    checkpoint = resolve_checkpoint(run_dir)
    result = {
        "checkpoint": str(checkpoint), "parameters": model.num_parameters(), "steps": trainer.state.step,
        "tokens_seen": trainer.state.tokens_seen, "train_seconds": metrics.get("train_seconds"),
        "tokens_per_second": trainer.state.tokens_seen / max(metrics.get("train_seconds", 0.0), 1e-9),
        "train_loss": metrics.get("loss"), "eval_loss": metrics.get("eval_loss"),
        "eval_perplexity": metrics.get("eval_perplexity"), "sample": sample,
    }
    if args.profile_steps:
        # Rank 0 reports what it wrote (each process writes its own pair of files).
        written = sorted(str(p) for p in (run_dir / "profile").glob("rank0.*"))
        if len(written) != 2:
            raise APTError(f"the profile was not written to {run_dir / 'profile'}")
        result["profile"] = written
    if as_json:
        print_json(result)
        return
    print_table([
        ("parameters", result["parameters"]), ("steps", result["steps"]), ("tokens seen", result["tokens_seen"]),
        ("time (s)", result["train_seconds"]), ("tokens/s (whole run)", result["tokens_per_second"]),
        ("train loss (last window)", result["train_loss"]), ("eval loss", result["eval_loss"]),
        ("eval perplexity", result["eval_perplexity"]), ("checkpoint", result["checkpoint"]),
    ], title="\ntraining summary")
    click.echo(f"\nsample ({prompt!r}, temperature 0.8):\n{sample}")
    if args.profile_steps:
        click.echo(f"\nprofile of steps {args.profile_steps[0] + 1}-{args.profile_steps[1]}: "
                   f"{', '.join(result['profile'])}")
    click.echo(f"\nnext: apt-model generate {run_dir} {prompt!r}")


def _parse_window(text: str) -> list[int]:
    """``"40:45"`` -> ``[40, 45]`` (TrainingArguments checks the range)."""
    from apt_core.errors import APTError

    start, sep, end = text.partition(":")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise APTError(f"--profile takes START:END step numbers, e.g. 40:45; got {text!r}")
    return [int(start), int(end)]


def _sample(model, tokenizer, prompt: str, seed: int) -> str:
    import torch

    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.long)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    out = model.generate(ids, max_new_tokens=80, temperature=0.8, top_k=50, eos_token_id=tokenizer.eos_id,
                         generator=generator)
    return tokenizer.decode(out.tolist())
