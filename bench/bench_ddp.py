"""Multi-GPU scaling of the core trainer: ``torchrun -m apt_core train`` on 1 and N GPUs, same global batch.

    python bench/bench_ddp.py --gpus 2
    python bench/bench_ddp.py --gpus 2 --distributed fsdp
    python bench/bench_ddp.py --gpus 2 --distributed fsdp --no-compile
    python bench/bench_ddp.py --gpus 2 --profile 40:43     # + per-process traces of steps 41-43

Runs the real CLI under torchrun (DDP over NCCL) for a ~100 M-parameter APT (d 768, 12 layers,
seq 1024, 16 sequences per GPU per micro-batch; one GPU accumulates N micro-batches so both runs
see the same 32-sequence global batch in the same order). Reports tokens/s of the last logging
window (after torch.compile warm-up), scaling efficiency, and the eval-loss curves side by side.
``--distributed fsdp`` runs the same method with the model sharded (FSDP2) instead of replicated.
Results: bench/results/ddp.json (fsdp.json with ``--distributed fsdp``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import save, table

MODEL = {"vocab_size": 8192, "d_model": 768, "n_layers": 12, "n_heads": 12, "d_ff": 2048, "max_seq_len": 1024}
# Throughput is the last logging window: 30 steps (a 10-step window moved by 15 % between runs).
TRAINING = {"batch_size": 16, "seq_len": 1024, "lr": 6e-4, "warmup_steps": 10, "eval_every": 30, "save_every": 0,
            "log_every": 30}
# --smoke: the same path on CPU (gloo) with a tiny model, to check the script anywhere.
SMOKE_MODEL = {"vocab_size": 260, "d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "max_seq_len": 64}
SMOKE_TRAINING = {**TRAINING, "batch_size": 4, "seq_len": 32, "eval_every": 10, "log_every": 5, "eval_batches": 4}


def run(gpus: int, world: int, steps: int, work: Path, smoke: bool, distributed: str = "ddp",
        compile: bool = True, profile: str | None = None, profile_to: Path | None = None) -> dict:
    """Train with *gpus* processes; the global batch is always batch_size * *world* sequences.

    ``profile`` (START:END) profiles those steps on every process and copies the traces to *profile_to*."""
    config = work / "config.json"
    model, training = (SMOKE_MODEL, SMOKE_TRAINING) if smoke else (MODEL, TRAINING)
    config.write_text(json.dumps({**model, "training": {
        **training, "max_steps": steps, "grad_accum_steps": world // gpus}}))
    out = work / f"run-{gpus}gpu"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "apt_core", "train", "--config", str(config), "--out", str(out), "--json",
               "--distributed", distributed]
    command += ["--compile"] if compile and not smoke else []
    command += ["--profile", profile] if profile else []
    env = {**os.environ, "APT_LOAD_PLUGINS": ""}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{gpus}-GPU run failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    state = json.loads((Path(result["checkpoint"]) / "trainer_state.json").read_text())
    if profile:
        shutil.rmtree(profile_to, ignore_errors=True)
        shutil.copytree(out / "profile", profile_to)
        print(f"{gpus} GPU(s), rank 0, steps {profile}:\n" + "\n".join(
            (profile_to / "rank0.txt").read_text().splitlines()[:18]))
    return {"gpus": gpus, "tokens_per_s": state["metrics"]["tokens_per_second"], "train_loss": result["train_loss"],
            "eval_loss": result["eval_loss"], "world_size": state["world_size"],
            "global_batch": state["global_batch_size"], "eval_history": state["eval_history"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU processes (gloo)")
    parser.add_argument("--distributed", choices=["ddp", "fsdp"], default="ddp",
                        help="how the N-GPU run spreads the model (1 GPU always trains plainly)")
    parser.add_argument("--no-compile", action="store_true", help="train without torch.compile (both runs)")
    parser.add_argument("--profile", metavar="START:END",
                        help="also profile these steps (e.g. 40:43, before the timed window) on every process; "
                             "traces go to bench/profiles/<name>-<N>gpu/ (not kept in git)")
    args = parser.parse_args()
    name = args.distributed + ("_eager" if args.no_compile else "") + ("_smoke" if args.smoke else "")
    profiles = Path(__file__).parent / "profiles"
    with tempfile.TemporaryDirectory() as tmp:
        single, multi = (run(gpus, args.gpus, args.steps, Path(tmp), args.smoke, args.distributed,
                             not args.no_compile, args.profile, profiles / f"{name}-{gpus}gpu")
                         for gpus in (1, args.gpus))
    scaling = multi["tokens_per_s"] / single["tokens_per_s"]
    eval_gap = max(abs(m["eval_loss"] - s["eval_loss"]) / s["eval_loss"]
                   for s, m in zip(single["eval_history"], multi["eval_history"]))
    path = save(name, {"model": MODEL, "steps": args.steps, "distributed": args.distributed,
                       "compiled": not args.no_compile and not args.smoke, "single": single,
                       "multi": multi, "scaling": scaling, "eval_loss_relative_difference": eval_gap})
    rows = [{"GPUs": r["gpus"], "global batch": r["global_batch"], "tokens/s": f"{r['tokens_per_s']:,.0f}",
             "train loss": f"{r['train_loss']:.4f}", "eval loss": f"{r['eval_loss']:.4f}"} for r in (single, multi)]
    print(f"saved {path}")
    print(f"scaling {scaling:.2f}x on {args.gpus} GPUs; eval-loss curves differ by at most {100 * eval_gap:.2f}% (bf16, same global batch)")
    for s, m in zip(single["eval_history"], multi["eval_history"]):
        print(f"  step {s['step']:>4}: eval loss 1 GPU {s['eval_loss']:.4f}  {args.gpus} GPUs {m['eval_loss']:.4f}")
    print(table(rows, ["GPUs", "global batch", "tokens/s", "train loss", "eval loss"]))


if __name__ == "__main__":
    main()
