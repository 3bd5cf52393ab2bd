"""Does distillation help? CE-only vs response KD vs response+feature vs response+relation, at equal steps.

    python bench/bench_distill.py                       # CPU-sized: ~40 CPU-minutes (see the package README)
    python bench/bench_distill.py --device cuda         # the same sizes on a GPU (minutes)
    python bench/bench_distill.py --scale 2 --device cuda   # wider/longer models on a GPU
    python bench/bench_distill.py --smoke               # tiny shapes, to check the script runs

Setup (every number is a flag):
1. A byte-level BPE tokenizer (vocab 1024) trained on the embedded corpus's training split.
2. A teacher trained to convergence on that split (its held-out perplexity is recorded every
   ``--teacher-eval-every`` steps, so convergence can be checked in the JSON).
3. For each seed: one student initialisation (the same for every arm of that seed), one batch order
   (the Trainer's data order depends only on the seed), and the arms
   ``ce`` (alpha = 0: plain next-token training), ``response`` (KD + CE), ``response+feature``,
   ``response+relation`` -- all with identical steps, tokens, learning rate and schedule, all through
   the core Trainer.
4. Held-out perplexity of every student on the corpus's evaluation split (all of it), and
   gap recovered = (PPL_CE - PPL_arm) / (PPL_CE - PPL_teacher), per seed and from the means.

Results: bench/results/distill_<tag>.json and .png (tag = cpu or the GPU's name unless --tag).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, save, table  # noqa: E402

ARMS = {
    "ce": {"method": "response", "alpha": 0.0},
    "response": {"method": "response"},
    "response+feature": {"method": "feature"},
    "response+relation": {"method": "relation"},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    p.add_argument("--scale", type=int, default=1, help="multiply widths by this (GPU runs)")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--teacher-layers", type=int, default=4)
    p.add_argument("--teacher-steps", type=int, default=2500)
    p.add_argument("--teacher-lr", type=float, default=3e-3)
    p.add_argument("--teacher-eval-every", type=int, default=250)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--student-ff-ratio", type=float, default=0.5, help="student d_ff = teacher d_ff * this")
    p.add_argument("--student-steps", type=int, default=600)
    p.add_argument("--student-lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--feature-weight", type=float, default=1.0)
    p.add_argument("--relation-weight", type=float, default=0.1)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--mixed-precision", default="no", help="'no' keeps GPU runs in fp32 like the CPU runs")
    p.add_argument("--work", default="/tmp/apt-bench-distill", help="tokenizer and teacher checkpoint")
    p.add_argument("--tag", default=None)
    p.add_argument("--results-dir", default=None, help="where the JSON/PNG go (default bench/results)")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--plot-from", metavar="JSON", help="only redraw the PNG of a results file (e.g. made on a GPU host)")
    args = p.parse_args(argv)
    if args.smoke:
        args.vocab, args.teacher_steps, args.student_steps, args.teacher_eval_every = 300, 30, 10, 10
        args.seeds, args.work = "0,1", args.work + "-smoke"
    return args


def build_tokenizer(args, work: Path):
    from apt_core.data import default_corpus_text
    from apt_core.tokenizer import APTTokenizer

    path = work / f"tokenizer-{args.vocab}"
    if (path / "tokenizer.json").is_file():
        return APTTokenizer.from_pretrained(path)
    tok = APTTokenizer.train([default_corpus_text("train")], vocab_size=args.vocab)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


def model_configs(args, vocab: int):
    from apt_core import APTConfig

    d = 128 * args.scale
    heads = 4 * args.scale
    ff = int(round(d * 2.6875 / 8)) * 8  # the presets' d_ff / d_model ratio
    common = dict(vocab_size=vocab, d_model=d, n_heads=heads, max_seq_len=max(128, args.seq_len))
    teacher = APTConfig(n_layers=args.teacher_layers, d_ff=ff, **common)
    student = APTConfig(n_layers=args.student_layers, d_ff=max(8, int(ff * args.student_ff_ratio) // 8 * 8), **common)
    return teacher, student


def train_teacher(args, cfg, tok, train, evals, hook, work: Path):
    from apt_core import APTModel
    from apt_core.checkpoint import load_checkpoint
    from apt_core.training import Trainer, TrainingArguments

    out = work / f"teacher-{cfg.d_model}x{cfg.n_layers}-v{args.vocab}-s{args.teacher_steps}"
    if (out / "latest").is_file():
        ckpt = load_checkpoint(out)
        history = ckpt.trainer_state.get("eval_history", [])
        print(f"teacher: reusing {ckpt.path}")
        return ckpt.model, history, None
    torch.manual_seed(1000)
    model = APTModel(cfg)
    targs = TrainingArguments(out_dir=str(out), max_steps=args.teacher_steps, batch_size=args.batch_size,
                              seq_len=args.seq_len, lr=args.teacher_lr, warmup_steps=min(100, args.teacher_steps // 10),
                              eval_every=args.teacher_eval_every, seed=1000, device=args.device,
                              mixed_precision=args.mixed_precision, progress=False, keep_last=1)
    started = time.perf_counter()
    trainer = Trainer(model, targs, train, eval_data=evals, tokenizer=tok, hook=hook)
    trainer.train()
    seconds = time.perf_counter() - started
    print(f"teacher: {args.teacher_steps} steps in {seconds:.0f}s")
    return model.eval(), list(trainer.state.eval_history), seconds


def run_arm(args, arm, seed, teacher, student_cfg, tok, train, hook):
    from apt_core import APTModel
    from apt_core.training import TrainingArguments
    from apt_plugin_distill.objective import DistillSettings
    from apt_plugin_distill.runner import run_distillation

    torch.manual_seed(seed)
    student = APTModel(student_cfg)  # same seed -> same initial student for every arm
    settings = DistillSettings(**{"temperature": args.temperature, "alpha": args.alpha,
                                  "feature_weight": args.feature_weight, "relation_weight": args.relation_weight,
                                  **ARMS[arm]})
    targs = TrainingArguments(out_dir=None, max_steps=args.student_steps, batch_size=args.batch_size,
                              seq_len=args.seq_len, lr=args.student_lr, warmup_steps=min(50, args.student_steps // 10),
                              seed=seed, device=args.device, mixed_precision=args.mixed_precision,
                              progress=False, save_final=False)
    started = time.perf_counter()
    result = run_distillation(teacher if settings.needs_teacher else None, student, settings, targs, train,
                              tokenizer=tok, hook=hook)
    return result, time.perf_counter() - started


def summarise(ppl: dict[str, list[float]], teacher_ppl: float) -> dict[str, dict]:
    out = {}
    ce = ppl["ce"]
    for arm, values in ppl.items():
        row = {"ppl": values, "mean": statistics.fmean(values),
               "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        if arm != "ce" and len(values) == len(ce):
            per_seed = [(c - v) / (c - teacher_ppl) for c, v in zip(ce, values, strict=True)]
            row["gap_recovered_per_seed"] = per_seed
            row["gap_recovered"] = (statistics.fmean(ce) - row["mean"]) / (statistics.fmean(ce) - teacher_ppl)
            row["gap_recovered_std"] = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
            diffs = [c - v for c, v in zip(ce, values, strict=True)]
            ce_std = statistics.stdev(ce) if len(ce) > 1 else 0.0
            # Unpaired: the improvement must exceed 2 std of a difference of two independent means of runs.
            row["improvement"] = statistics.fmean(diffs)
            row["improvement_2std_unpaired"] = 2 * math.sqrt(ce_std**2 + row["std"] ** 2)
            row["beyond_2std"] = row["improvement"] > row["improvement_2std_unpaired"]
            row["improvement_paired_std"] = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        out[arm] = row
    return out


def plot(summary: dict, teacher_ppl: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    means = [summary[a]["mean"] for a in arms]
    stds = [summary[a]["std"] for a in arms]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(arms, means, yerr=stds, capsize=6, color=["#999999"] + ["#3b7dd8"] * (len(arms) - 1))
    for i, arm in enumerate(arms):
        for value in summary[arm]["ppl"]:
            ax.plot(i, value, "k.", ms=4)
        label = f"{means[i]:.2f}" + (f"\n{summary[arm]['gap_recovered']:.0%} of gap" if arm != "ce" else "")
        ax.text(i, means[i] + stds[i], label, ha="center", va="bottom", fontsize=8)
    ax.axhline(teacher_ppl, color="#d83b3b", ls="--", label=f"teacher {teacher_ppl:.2f}")
    low = min(teacher_ppl, min(means)) * 0.97
    ax.set_ylim(low, max(m + s for m, s in zip(means, stds, strict=True)) * 1.04)
    ax.set_ylabel("held-out perplexity (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_results(path: Path) -> Path:
    """Draw ``<results>.png`` beside a results JSON."""
    import json

    data = json.loads(path.read_text())
    setup, student = data["setup"], data["student"]
    seeds = setup["seeds"]
    tag = path.stem.removeprefix("distill_")
    png = path.with_suffix(".png")
    plot(data["summary"], data["teacher"]["perplexity"], png,
         f"student {student['parameters'] / 1e3:.0f}k params ({student['ratio']:.0%} of teacher), "
         f"{setup['student_steps']} steps, seeds [{seeds}] [{tag}]")
    return png


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.plot_from:
        print(f"wrote {plot_results(Path(args.plot_from))}")
        return
    torch.set_num_threads(args.threads)
    from apt_core.data import default_corpus_text, tokenize_documents
    from apt_core.plugins import make_plugin_manager
    from apt_plugin_distill.evaluation import perplexity

    hook = make_plugin_manager(entry_points=False, plugins=()).hook  # no auto-backup of bench runs
    work = Path(args.work)
    started = time.perf_counter()
    tok = build_tokenizer(args, work)
    train = tokenize_documents([default_corpus_text("train")], tok)
    evals = tokenize_documents([default_corpus_text("eval")], tok)
    if args.smoke:
        train = train[: 40 * args.seq_len * args.batch_size]
    t_cfg, s_cfg = model_configs(args, tok.vocab_size)
    teacher, history, teacher_seconds = train_teacher(args, t_cfg, tok, train, evals, hook, work)
    teacher.to(args.device)
    teacher_ppl = perplexity(teacher, evals, args.seq_len)["perplexity"]
    from apt_core import APTModel

    t_params, s_params = teacher.num_parameters(), APTModel(s_cfg).num_parameters()
    print(f"teacher {t_params:,} params, held-out ppl {teacher_ppl:.3f}; student {s_params:,} params "
          f"({s_params / t_params:.0%}); train {len(train):,} tokens, eval {len(evals):,} tokens")

    arms = args.arms.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, ppl = [], {arm: [] for arm in arms}
    for seed in seeds:
        for arm in arms:
            result, seconds = run_arm(args, arm, seed, teacher, s_cfg, tok, train, hook)
            value = perplexity(result.student, evals, args.seq_len)["perplexity"]
            ppl[arm].append(value)
            runs.append({"arm": arm, "seed": seed, "ppl": value, "seconds": seconds,
                         "tokens_seen": result.metrics.get("tokens_seen"),
                         "tokens_per_second": result.tokens_per_second,
                         "final_train_metrics": {k: v for k, v in result.metrics.items() if isinstance(v, float)}})
            print(f"seed {seed} {arm:18} ppl {value:8.3f}  ({seconds:.0f}s, {result.tokens_per_second or 0:,.0f} tok/s)",
                  flush=True)

    summary = summarise(ppl, teacher_ppl)
    rows = [{"arm": arm, "ppl mean ± std": f"{s['mean']:.3f} ± {s['std']:.3f}",
             "gap recovered": "" if arm == "ce" else f"{s['gap_recovered']:.1%} ± {s['gap_recovered_std']:.1%}",
             "> 2 std": "" if arm == "ce" else ("yes" if s["beyond_2std"] else "no")} for arm, s in summary.items()]
    print(f"\nteacher ppl {teacher_ppl:.3f} ({t_params:,} params), student {s_params:,} params "
          f"({s_params / t_params:.0%}), {args.student_steps} student steps x {args.batch_size}x{args.seq_len} tokens, "
          f"seeds {seeds}")
    print(table(rows, ["arm", "ppl mean ± std", "gap recovered", "> 2 std"]))

    info = machine()
    tag = args.tag or ("smoke" if args.smoke else (info.get("gpu", "gpu").split()[1].lower()
                                                  if args.device.startswith("cuda") and len(info.get("gpu", "").split()) > 1
                                                  else "cpu"))
    results = {"setup": {k: v for k, v in vars(args).items() if k != "work"},
               "teacher": {"parameters": t_params, "config": t_cfg.to_dict(), "perplexity": teacher_ppl,
                           "eval_history": history, "train_seconds": teacher_seconds},
               "student": {"parameters": s_params, "config": s_cfg.to_dict(), "ratio": s_params / t_params},
               "tokens": {"train": len(train), "eval": len(evals),
                          "per_student_run": args.student_steps * args.batch_size * args.seq_len},
               "summary": summary, "runs": runs, "total_seconds": time.perf_counter() - started}
    path = save(f"distill_{tag}", results)
    if args.results_dir:
        import shutil

        path = Path(shutil.copy(path, Path(args.results_dir) / path.name))
    print(f"wrote {path} in {time.perf_counter() - started:.0f}s")
    try:
        print(f"wrote {plot_results(path)}")
    except ImportError:  # e.g. a GPU host without matplotlib: redraw later with --plot-from
        print("matplotlib is not installed: no PNG (run again with --plot-from)")


if __name__ == "__main__":
    main()
