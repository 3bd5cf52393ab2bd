"""``apt-model distill``: train a student against a teacher through the core Trainer, then summarise.

Importing this module is cheap (click only); torch and the model code load inside the command body.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

__all__ = ["distill_command"]


def _resolve_tokenizer(tokenizer: str | None, *specs: str | None):
    """--tokenizer, else the tokenizer saved with the student or teacher APT checkpoint."""
    from apt_core.checkpoint import resolve_checkpoint
    from apt_core.errors import APTError
    from apt_core.models import parse_model_spec
    from apt_core.tokenizer import APTTokenizer

    if tokenizer:
        return APTTokenizer.from_pretrained(tokenizer)
    for spec in specs:
        if not spec:
            continue
        scheme, location = parse_model_spec(spec)
        if scheme == "apt":
            directory = resolve_checkpoint(location)
            if (directory / "tokenizer.json").is_file():
                return APTTokenizer.from_pretrained(directory)
    raise APTError("no tokenizer: neither checkpoint has tokenizer.json; pass --tokenizer DIR")


def _build_student(teacher, student: str | None, student_config: str | None, from_teacher: str | None):
    from apt_core.errors import APTError
    from apt_core.model import APTModel
    from apt_core.models import load_model

    from .student import model_vocab_size, parse_layers, student_from_config, student_from_teacher

    chosen = [name for name, value in (("--student", student), ("--student-config", student_config),
                                       ("--student-from-teacher", from_teacher)) if value]
    if len(chosen) != 1:
        raise APTError("give exactly one of --student, --student-config, --student-from-teacher"
                       + (f" (got {', '.join(chosen)})" if chosen else ""))
    if student:
        model = load_model(student)
        if not isinstance(model, APTModel):
            raise APTError(f"the student must be an APT model; {student} loads as {type(model).__name__}")
        return model
    if student_config:
        return student_from_config(student_config, model_vocab_size(teacher))
    if not isinstance(teacher, APTModel):
        raise APTError("--student-from-teacher needs an APT teacher")
    return student_from_teacher(teacher, parse_layers(from_teacher, teacher.config.n_layers))


def _token_streams(tokenizer, data: str, eval_data: str | None, text_field: str):
    from apt_core.data import iter_documents, parse_data_spec, split_tail, tokenize_documents

    tokens = tokenize_documents(iter_documents(data, text_field=text_field), tokenizer)
    if eval_data:
        return tokens, tokenize_documents(iter_documents(eval_data, text_field=text_field), tokenizer)
    scheme, location = parse_data_spec(data)
    if scheme == "default" and location in ("", "train"):
        return tokens, tokenize_documents(iter_documents("default:eval"), tokenizer)
    return split_tail(tokens)


def _format_summary(summary: dict) -> str:
    t, s = summary["teacher"], summary["student"]
    ratio = s["parameters"] / t["parameters"] if t["parameters"] else float("nan")
    tps = summary["tokens_per_second"]
    lines = [
        f"distillation: method {summary['settings']['method']}, T={summary['settings']['temperature']}, "
        f"alpha={summary['settings']['alpha']}, {summary['steps']} steps, {summary['tokens_seen']:,} tokens",
        f"{'':24}{'teacher':>14}{'student':>14}",
        f"{'parameters':24}{t['parameters']:>14,}{s['parameters']:>14,}  ({ratio:.0%} of the teacher)",
        f"{'eval perplexity':24}{t['perplexity']:>14.3f}{s['perplexity']:>14.3f}"
        f"  (student before: {s['perplexity_before']:.3f})",
        f"{'train tokens/s':24}{'':>14}{(f'{tps:,.0f}' if tps else 'n/a'):>14}  (student step incl. teacher forward)",
        f"student checkpoint: {summary['checkpoint']}",
    ]
    return "\n".join(lines)


@click.command("distill")
@click.option("--teacher", required=True, metavar="SRC", help="Teacher model: APT checkpoint/run dir, apt:PATH, hf:… .")
@click.option("--student", metavar="SRC", help="Start the student from this APT checkpoint.")
@click.option("--student-config", metavar="PRESET|FILE", help="Fresh student: a preset (tiny, small, base) or config.json.")
@click.option("--student-from-teacher", metavar="LAYERS", help="Student = these teacher blocks, e.g. 0,2 (APT teacher).")
@click.option("--tokenizer", type=click.Path(), help="Tokenizer directory (default: the student's or teacher's).")
@click.option("--data", default="default", show_default=True, help="Training data spec (default = embedded corpus).")
@click.option("--eval-data", help="Evaluation data spec (default: the held-out split / tail of --data).")
@click.option("--text-field", default="text", show_default=True, help="Field of JSON Lines / dataset records.")
@click.option("--method", type=click.Choice(["response", "feature", "relation", "combined"]), help="Losses to use.")
@click.option("--temperature", type=float, help="Softmax temperature T of the KD term.")
@click.option("--alpha", type=float, help="Weight of the KD term; 1-alpha weighs the hard-label CE.")
@click.option("--kl", type=click.Choice(["forward", "reverse"]), help="KL(teacher||student) or KL(student||teacher).")
@click.option("--feature-weight", type=float, help="Weight of the feature loss.")
@click.option("--relation-weight", type=float, help="Weight of the RKD relation loss.")
@click.option("--attention-weight", type=float, help="Weight of the attention-map loss (APT models).")
@click.option("--steps", type=int, default=300, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--seq-len", type=int, help="Block length (default: min(128, the student's max_seq_len)).")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup-steps", type=int, default=30, show_default=True)
@click.option("--eval-every", type=int, default=0, show_default=True)
@click.option("--save-every", type=int, default=0, show_default=True)
@click.option("--keep-last", type=int, default=3, show_default=True)
@click.option("--eval-blocks", type=int, default=0, show_default=True, help="Limit summary perplexity to N blocks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--mixed-precision", type=click.Choice(["auto", "bf16", "fp16", "no"]), default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the student.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--out", required=True, type=click.Path(), help="Run directory for the student's checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def distill_command(teacher, student, student_config, student_from_teacher, tokenizer, data, eval_data, text_field,
                    method, temperature, alpha, kl, feature_weight, relation_weight, attention_weight, steps,
                    batch_size, grad_accum, seq_len, lr, warmup_steps, eval_every, save_every, keep_last,
                    eval_blocks, seed, device, mixed_precision, compile_, resume, out, as_json, no_progress):
    """Distill TEACHER into a smaller APT student (response / feature / relation losses).

    \b
    Example (the demo teacher into a half-depth student initialised from its blocks 0 and 2):
      apt-model distill --teacher runs/m --student-from-teacher 0,2 --steps 300 --out runs/distilled
    """
    import torch

    from apt_core.config import get_config
    from apt_core.errors import APTError
    from apt_core.models import load_model
    from apt_core.training import TrainingArguments
    from apt_core.training.distributed import resolve_device

    from .evaluation import perplexity
    from .objective import DistillSettings
    from .runner import check_vocab, run_distillation

    out_dir = Path(out)
    if (out_dir / "latest").exists() and not resume:
        raise APTError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (out_dir / "latest").exists():
        raise APTError(f"--resume: {out_dir} holds no checkpoint to continue from")
    defaults = get_config().plugin("distill")
    given = {"method": method, "temperature": temperature, "alpha": alpha, "kl": kl,
             "feature_weight": feature_weight, "relation_weight": relation_weight,
             "attention_weight": attention_weight}
    settings = DistillSettings(**{**defaults, **{k: v for k, v in given.items() if v is not None}})

    teacher_model = load_model(teacher)
    torch.manual_seed(seed)  # a fresh student's initialisation is part of the run: reproducible
    student_model = _build_student(teacher_model, student, student_config, student_from_teacher)
    tok = _resolve_tokenizer(tokenizer, student, teacher)
    check_vocab(teacher_model, student_model, tok)
    seq_len = seq_len or min(128, student_model.config.max_seq_len)
    if seq_len > student_model.config.max_seq_len:
        raise APTError(f"--seq-len {seq_len} exceeds the student's max_seq_len {student_model.config.max_seq_len}")
    train_tokens, eval_tokens = _token_streams(tok, data, eval_data, text_field)

    args = TrainingArguments(out_dir=str(out_dir), max_steps=steps, batch_size=batch_size, grad_accum_steps=grad_accum,
                             seq_len=seq_len, lr=lr, warmup_steps=min(warmup_steps, steps), eval_every=eval_every,
                             save_every=save_every, keep_last=keep_last, seed=seed, device=device,
                             mixed_precision=mixed_precision, compile=compile_, progress=not no_progress,
                             resume_from=str(out_dir) if resume else None)
    eval_device = resolve_device(device)  # the device the trainer will use: this process's own GPU under torchrun
    limit = eval_blocks or None
    teacher_eval = perplexity(teacher_model.to(eval_device), eval_tokens, seq_len, batch_size, limit)
    student_before = perplexity(student_model.to(eval_device), eval_tokens, seq_len, batch_size, limit)
    result = run_distillation(teacher_model, student_model, settings, args, train_tokens, eval_tokens, tok)
    student_eval = perplexity(result.student, eval_tokens, seq_len, batch_size, limit)

    summary = {
        "settings": settings.to_dict(),
        "steps": int(result.metrics.get("step", steps)),
        "tokens_seen": int(result.metrics.get("tokens_seen", 0)),
        "tokens_per_second": result.tokens_per_second,
        "teacher": {"source": teacher, "parameters": sum(p.numel() for p in teacher_model.parameters()),
                    "perplexity": teacher_eval["perplexity"]},
        "student": {"parameters": student_model.num_parameters(), "perplexity": student_eval["perplexity"],
                    "perplexity_before": student_before["perplexity"]},
        "eval_tokens": int(student_eval["tokens"]),
        "final_metrics": result.metrics,
        "checkpoint": result.checkpoint,
    }
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the main process reports
        return
    if result.checkpoint is None or not Path(result.checkpoint, "model.safetensors").is_file():
        raise APTError("training finished but no student checkpoint was written")
    (out_dir / "distill_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    click.echo(json.dumps(summary, indent=2) if as_json else _format_summary(summary))
