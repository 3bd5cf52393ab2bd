"""CPU training speed of the default (small) APT preset, and what the default `apt-model train` reaches.

    python bench/bench_cpu_train.py                 # both parts, 2 torch threads
    taskset -c 0,1 python bench/bench_cpu_train.py  # pin to 2 cores on a bigger machine
    python bench/bench_cpu_train.py --skip-train    # throughput only

1. Throughput: the small preset's model, batch and sequence length (as `apt-model train` uses them),
   forward + backward + AdamW step on real corpus tokens, timed after warm-up -> tokens/s.
2. The default run: `python -m apt_core train --json` exactly as a user types it (embedded corpus,
   small preset), then `python -m apt_core eval` of the result on the whole held-out split
   (the last 5% of the embedded corpus, never trained on). Records wall time, perplexity and a sample.

Other processes on the machine slow both parts down, so the load average before and after is
recorded next to the numbers. Writes bench/results/cpu_train.json (or cpu_train_<tag>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import save  # noqa: E402


def throughput(threads: int, steps: int, warmup: int) -> dict:
    import torch

    from apt_core.data import default_corpus_text
    from apt_core.model import APTConfig, APTModel
    from apt_core.model.config import load_preset_file
    from apt_core.tokenizer import APTTokenizer

    torch.set_num_threads(threads)
    preset = load_preset_file("small")
    config = APTConfig.from_dict(preset["model"])
    batch, seq = preset["training"]["batch_size"], preset["training"]["seq_len"]
    text = default_corpus_text("train")
    tokenizer = APTTokenizer.train([text], vocab_size=config.vocab_size)
    tokens = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = APTModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + steps):
        start = (i * batch * seq) % (len(tokens) - batch * seq)
        ids = tokens[start : start + batch * seq].view(batch, seq)
        t0 = time.perf_counter()
        model(ids, labels=ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"parameters": model.num_parameters(), "batch_size": batch, "seq_len": seq,
            "tokens_per_step": batch * seq, "timed_steps": steps, "median_step_s": round(step, 4),
            "tokens_per_second": round(batch * seq / step, 1),
            "tokens_per_second_mean": round(batch * seq * len(times) / sum(times), 1),
            "corpus_train_tokens": len(tokens)}


def default_run(threads: int, steps: int | None) -> dict:
    # CPU only: on a machine with a GPU, `--device auto` would train there.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "APT_LOAD_PLUGINS": "", "CUDA_VISIBLE_DEVICES": ""}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "apt_core", "train", "--out", str(run), "--json", "--device", "cpu"]
        if steps:
            cmd += ["--steps", str(steps)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode:
            raise SystemExit(f"apt-model train failed:\n{out.stderr[-3000:]}")
        summary = json.loads(out.stdout)
        ev = subprocess.run([sys.executable, "-m", "apt_core", "eval", str(run), "--json"], env=env,
                            capture_output=True, text=True)
        if ev.returncode:
            raise SystemExit(f"apt-model eval failed:\n{ev.stderr[-3000:]}")
        evaluation = json.loads(ev.stdout)
        gen = subprocess.run([sys.executable, "-m", "apt_core", "generate", str(run), "ROMEO:",
                              "--max-new-tokens", "120", "--seed", "0"], env=env, capture_output=True, text=True)
    return {"command": "apt-model train" + (f" --steps {steps}" if steps else ""),
            "wall_seconds": round(wall, 1), "train_seconds": round(summary["train_seconds"], 1),
            "steps": summary["steps"], "tokens_seen": summary["tokens_seen"],
            "train_tokens_per_second": round(summary["tokens_per_second"], 1),
            "final_train_loss": summary["train_loss"],
            "heldout_loss": evaluation["loss"], "heldout_perplexity": evaluation["perplexity"],
            "heldout_tokens": evaluation["tokens"], "eval_seq_len": evaluation["seq_len"],
            "trainer_eval_perplexity": summary["eval_perplexity"],
            "sample_prompt": "ROMEO:", "sample": gen.stdout.strip()}


def summarize_sweep(directory: Path) -> dict:
    """Collect a preset sweep: for each ``NAME.json`` (output of ``apt-model train --config CFG --json``)
    next to ``NAME.eval.json`` (``apt-model eval --json``) and the config ``CFG`` (``--sweep-configs``)."""
    rows = {}
    for summary_file in sorted(directory.glob("*.json")):
        name = summary_file.name[: -len(".json")]
        if name.endswith(".eval") or name == "cpu_train":
            continue
        summary = json.loads(summary_file.read_text())
        evaluation = json.loads((directory / f"{name}.eval.json").read_text())
        rows[name] = {"steps": summary["steps"], "train_seconds": round(summary["train_seconds"], 1),
                      "final_train_loss": round(summary["train_loss"], 4),
                      "heldout_perplexity_trainer": round(summary["eval_perplexity"], 2),
                      "heldout_perplexity_eval_command_cpu_fp32": round(evaluation["perplexity"], 2),
                      "sample": summary["sample"]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed throughput steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=None, help="override the preset's steps (not the default run)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--tag", default="", help="results file suffix")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. how cores were pinned)")
    parser.add_argument("--merge-sweep", type=Path, metavar="DIR",
                        help="only add a preset sweep's results (see summarize_sweep) to the existing results file")
    parser.add_argument("--sweep-configs", type=Path, metavar="DIR", help="the sweep's config files")
    parser.add_argument("--sweep-note", default="")
    parser.add_argument("--merge-throughput", type=Path, metavar="JSON",
                        help="only add another machine's results file (its throughput part) to the existing one")
    args = parser.parse_args()
    results_file = Path(__file__).parent / "results" / f"cpu_train{'_' + args.tag if args.tag else ''}.json"
    if args.merge_sweep or args.merge_throughput:
        data = json.loads(results_file.read_text())
        if args.merge_sweep:
            configs = {p.stem: json.loads(p.read_text()) for p in sorted(args.sweep_configs.glob("*.json"))} \
                if args.sweep_configs else {}
            runs = summarize_sweep(args.merge_sweep)
            for name, row in runs.items():
                row["config"] = configs.get(name)
            data["preset_sweep"] = {"note": args.sweep_note, "runs": runs}
        if args.merge_throughput:
            other = json.loads(args.merge_throughput.read_text())
            data.setdefault("other_machines", []).append(
                {"machine": other["machine"], "note": other.get("note", ""), "throughput": other["throughput"]})
        results_file.write_text(json.dumps(data, indent=2) + "\n")
        print(f"updated {results_file}")
        return

    load_before = [round(x, 2) for x in os.getloadavg()]
    speed = throughput(args.threads, args.steps, args.warmup)
    print(f"throughput: {speed['tokens_per_second']:.0f} tokens/s ({speed['parameters']:,} parameters, "
          f"batch {speed['batch_size']} x {speed['seq_len']}, {args.threads} threads)", flush=True)
    run = None if args.skip_train else default_run(args.threads, args.train_steps)
    load_after = [round(x, 2) for x in os.getloadavg()]

    rows = [("small preset parameters", f"{speed['parameters']:,}"),
            ("train step (fwd+bwd+AdamW), median", f"{speed['median_step_s']:.3f} s"),
            ("training tokens/s", f"{speed['tokens_per_second']:,.0f}")]
    if run:
        rows += [(f"`{run['command']}` wall time", f"{run['wall_seconds']:.0f} s"),
                 ("  tokens/s over the whole run", f"{run['train_tokens_per_second']:,.0f}"),
                 ("  held-out perplexity (default:eval)", f"{run['heldout_perplexity']:.2f}"),
                 ("  held-out tokens scored", f"{run['heldout_tokens']:,}")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    if run:
        print(f"\nsample:\n{run['sample']}")
    path = save(f"cpu_train{'_' + args.tag if args.tag else ''}",
                {"threads": args.threads, "note": args.note, "load_average_before": load_before,
                 "load_average_after": load_after, "throughput": speed, "default_run": run})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
