"""Does pruning shrink APT for real? Latency of structurally pruned models and perplexity after recovery.

    python bench/bench_prune.py                    # CPU, 2 threads (~15 min on 2 idle cores)
    python bench/bench_prune.py --threads 1        # a shared/oversubscribed box: 2 OpenMP threads on
                                                   # 2 busy cores stall at every barrier (6x slower here)
    python bench/bench_prune.py --device cuda      # a GPU: same model for quality and latency (minutes)
    python bench/bench_prune.py --smoke            # tiny shapes, to check the script runs

Setup (every number is a flag):
1. Latency model: an APT model wide enough that matmuls dominate on a CPU (d_model 512, 4 layers, 8 heads,
   d_ff 2048, byte-level tokenizer). On an H200 that is too small for pruning to show: time a wider one
   there with ``--skip-quality --d-model 2048 --layers 8 --heads 16 --d-ff 8192`` (or d 1024, d_ff 4096).
   Quality model: the same shape, or on CPU narrower by
   ``--quality-scale`` (0.25: d_model 128, d_ff 512), because 2 cores cannot train the wide one in
   30 minutes. It is trained ``--pretrain-steps`` on the embedded corpus through the core Trainer:
   that is "the dense model".
2. Arms, each pruned from the dense model and then fine-tuned ``--finetune-steps`` with identical
   data order, learning rate and schedule (core Trainer, masks kept for unstructured arms):
   ``dense`` (no pruning: the control), unstructured magnitude 50% / 70%, Wanda 50%, 2:4,
   structured FFN 50%, heads 50% + FFN 50% (magnitude and Taylor).
   ``--recover kd`` fine-tunes the pruned arms by distillation from the dense model as it was before
   pruning (``--kd-alpha``, ``--kd-temperature``); ``ce`` by plain next-token training. The dense
   control is always plain next-token fine-tuning (the issue's control: "the dense model fine-tuned
   for the same steps") at ``--finetune-lr``; pruned arms may recover at their own ``--recovery-lr``
   (a model just damaged by pruning tolerates, and needs, larger steps than a converging one).
3. Held-out perplexity (embedded corpus eval split) of every arm relative to the dense control.
4. Inference latency on the latency model (compiled on a GPU): forward pass of a fixed batch, ``--reps`` runs, dense
   and pruned models measured interleaved (so machine load drifts hit both); speedup = dense / pruned
   from the minimum (``--latency-stat``; the median is recorded too). Unstructured masks are
   measured too: zeros in dense tensors give no speedup.

Results: bench/results/prune_<tag>.json and .png (tag = cpu or the GPU's name unless --tag).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, save, table  # noqa: E402

ARMS = {
    "dense": None,
    "unstructured magnitude 50%": {"method": "magnitude", "sparsity": 0.5},
    "unstructured magnitude 70%": {"method": "magnitude", "sparsity": 0.7},
    "unstructured wanda 50%": {"method": "wanda", "sparsity": 0.5},
    "unstructured magnitude 2:4": {"method": "magnitude", "sparsity": 0.5, "nm": (2, 4)},
    "structured ffn 50%": {"method": "magnitude", "sparsity": 0.5, "structured": ("ffn",)},
    "structured heads+ffn 50%": {"method": "magnitude", "sparsity": 0.5, "structured": ("heads", "ffn")},
    "structured heads+ffn 50% taylor": {"method": "taylor", "sparsity": 0.5, "structured": ("heads", "ffn")},
    "structured heads+ffn 50% taylor global": {"method": "taylor", "sparsity": 0.5, "structured": ("heads", "ffn"),
                                               "scope": "global"},
    # The autopoietic rank too: its down-projection (d_model -> r) is the one matmul heads+ffn leaves whole.
    "structured heads+ffn+rank 50%": {"method": "magnitude", "sparsity": 0.5, "structured": ("heads", "ffn", "rank")},
}
#: The dense model fine-tuned (plain CE) at the pruned arms' --recovery-lr: a reference, not the control.
REFERENCE_ARM = "dense at the recovery lr (reference)"
#: Arms whose latency is measured (structured ones shrink; one masked arm shows masks do not).
LATENCY_ARMS = ("unstructured magnitude 50%", "structured ffn 50%", "structured heads+ffn 50%",
                "structured heads+ffn 50% taylor global", "structured heads+ffn+rank 50%")
#: Targets of the issue: minimum speedup, and maximum perplexity ratio to the dense control.
TARGETS = {
    "structured ffn 50%": {"speedup": 1.3, "ppl_ratio": 1.05},
    "structured heads+ffn 50%": {"speedup": 1.7, "ppl_ratio": 1.05},
    "structured heads+ffn 50% taylor global": {"speedup": 1.7, "ppl_ratio": 1.05},
    "unstructured magnitude 50%": {"ppl_ratio": 1.02},
    "unstructured magnitude 70%": {"ppl_ratio": 1.05},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-ff", type=int, default=2048)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--position-encoding", default="rope", choices=["rope", "sinusoidal"],
                   help="rope by default: with the sinusoidal default a byte-level d_model-128 APT stayed at "
                        "unigram perplexity (~30) for 300 steps here, which would make every arm look equal")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 8 on CPU, 32 on GPU)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="default 150 on CPU, 1500 on GPU")
    p.add_argument("--finetune-steps", type=int, default=None, help="default 40 on CPU, 300 on GPU")
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--finetune-lr", type=float, default=5e-4, help="learning rate of the dense control's fine-tune")
    p.add_argument("--recovery-lr", type=float, default=None,
                   help="learning rate of the pruned arms' fine-tune (default: --finetune-lr). When it differs, "
                        "the dense model is also fine-tuned at this rate, as a reference row")
    p.add_argument("--recover", choices=["kd", "ce"], default="ce",
                   help="recovery of the pruned arms: kd = distillation from the unpruned model, ce = plain "
                        "next-token fine-tuning (the dense control is always ce)")
    p.add_argument("--kd-alpha", type=float, default=None, help="weight of the KD term (default: the plugin's)")
    p.add_argument("--kd-temperature", type=float, default=None, help="KD softmax temperature (default: the plugin's)")
    p.add_argument("--eval-batches", type=int, default=None, help="default 10 on CPU, all on GPU")
    p.add_argument("--arms", default=None, help="comma-separated arm names (default: all on GPU, a subset on CPU)")
    p.add_argument("--latency-batch", type=int, default=None, help="default 4 on CPU, 32 on GPU")
    p.add_argument("--latency-seq", type=int, default=None,
                   help="default 128 on CPU, 1024 on GPU (enough tokens that matmuls, not launches, dominate)")
    p.add_argument("--latency-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time torch.compile'd models (default on GPU, where eager time is mostly the many small "
                        "element-wise kernels that pruning does not remove)")
    p.add_argument("--reps", type=int, default=None, help="latency repetitions per model (default 15 CPU, 50 GPU)")
    p.add_argument("--latency-stat", choices=["median", "min"], default="min",
                   help="statistic the speedup is computed from (both are recorded)")
    p.add_argument("--skip-quality", action="store_true", help="latency only (untrained weights)")
    p.add_argument("--quality-scale", type=float, default=None,
                   help="train the quality arms on a model this much narrower (d_model, d_ff); default 0.25 on CPU "
                        "(2 cores cannot train the latency model in 30 min), 1 on GPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    defaults = {"batch_size": (8, 32), "pretrain_steps": (600, 1500), "finetune_steps": (150, 300),
                "eval_batches": (10, 0), "latency_batch": (4, 32), "latency_seq": (128, 1024), "reps": (20, 50), "quality_scale": (0.25, 1.0)}
    for key, (cpu_value, gpu_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, gpu_value if gpu else cpu_value)
    if args.latency_compile is None:
        args.latency_compile = gpu
    if args.arms is None:
        args.arms = ",".join(ARMS) if gpu else ",".join(
            ["dense", "unstructured magnitude 50%", "unstructured magnitude 70%", "structured ffn 50%",
             "structured heads+ffn 50%"])
    if args.recovery_lr is None:
        args.recovery_lr = args.finetune_lr
    if args.smoke:
        args.d_model, args.layers, args.heads, args.d_ff, args.seq_len = 64, 2, 4, 128, 32
        args.batch_size, args.pretrain_steps, args.finetune_steps, args.eval_batches = 4, 4, 2, 2
        args.latency_batch, args.latency_seq, args.reps = 2, 32, 3
    return args


def latency(models: dict[str, torch.nn.Module], batch_size: int, seq_len: int, reps: int,
            device: str, compile: bool = False) -> dict[str, dict]:
    """Median and minimum forward latency (seconds) per model, measured interleaved after a warm-up
    (bf16 autocast on a GPU; ``compile``: each model under torch.compile, as one would serve it).

    The minimum is the least-disturbed run: on a shared machine other jobs only ever add time."""
    from apt_plugin_prune.pruning import measure_latency

    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    if compile:
        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)  # one graph per model
        models = {name: torch.compile(model) for name, model in models.items()}
    with autocast:
        times = measure_latency(models, batch_size, seq_len, reps, warmup=3)
    return {name: {"median": statistics.median(values), "min": min(values)} for name, values in times.items()}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from apt_core.model import APTConfig, APTModel
    from apt_core.tokenizer import APTTokenizer
    from apt_plugin_prune.finetune import finetune, load_token_data, perplexity
    from apt_plugin_prune.pruning import PruneSettings, prune_model
    from apt_plugin_prune.recovery import Recovery

    defaults = Recovery()
    recovery = Recovery(args.recover, defaults.alpha if args.kd_alpha is None else args.kd_alpha,
                        defaults.temperature if args.kd_temperature is None else args.kd_temperature)
    args.kd_alpha, args.kd_temperature = recovery.alpha, recovery.temperature
    device = args.device
    started = time.perf_counter()
    tokenizer = APTTokenizer.byte_level()
    config = APTConfig(vocab_size=tokenizer.vocab_size, d_model=args.d_model, n_layers=args.layers,
                       n_heads=args.heads, d_ff=args.d_ff, max_seq_len=max(args.seq_len, args.latency_seq),
                       position_encoding=args.position_encoding)
    scale = args.quality_scale
    quality_config = config if scale == 1 else config.replace(
        d_model=int(args.d_model * scale), d_ff=int(args.d_ff * scale), max_seq_len=args.seq_len)
    torch.manual_seed(args.seed)
    dense = APTModel(quality_config)
    data = load_token_data(tokenizer, "default")
    hook = _silent_hook()

    def train(model, steps, lr, masks=None, loss_fn=None):
        return finetune(model, data, steps, tokenizer=tokenizer, masks=masks, lr=lr, batch_size=args.batch_size,
                        seq_len=args.seq_len, seed=args.seed, device=device, progress=False,
                        eval_batches=max(args.eval_batches, 1), hook=hook, loss_fn=loss_fn)

    def ppl(model):
        return perplexity(model.to(device), data.eval, args.seq_len, 16, args.eval_batches)

    result = {"args": vars(args), "recovery": recovery.to_dict(), "latency_model": config.to_dict(), "quality_model": quality_config.to_dict(),
              "parameters": dense.num_parameters(), "arms": {}}
    if not args.skip_quality:
        t0 = time.perf_counter()
        train(dense, args.pretrain_steps, args.pretrain_lr)
        result["pretrain_seconds"] = time.perf_counter() - t0
        result["pretrained_perplexity"] = ppl(dense)
        print(f"pretrained {args.pretrain_steps} steps in {result['pretrain_seconds']:.0f}s: "
              f"perplexity {result['pretrained_perplexity']:.3f}", flush=True)
    dense = dense.cpu()
    arm_names = [] if args.skip_quality else [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arm_names if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s): {unknown}; known: {list(ARMS)}")
    # The teacher of kd recovery: the dense model before pruning, a copy of its own (the loss moves
    # it to the device), so the arms below keep copying an untouched dense model.
    teacher = copy.deepcopy(dense) if recovery.uses_teacher and arm_names else None

    def pruned(model, spec):
        settings = PruneSettings(seed=args.seed, batch_size=8, seq_len=args.seq_len, calibration_batches=4, **spec)
        return prune_model(model, settings, tokenizer)

    if "dense" in arm_names and args.recovery_lr != args.finetune_lr:
        arm_names.insert(arm_names.index("dense") + 1, REFERENCE_ARM)
    for name in arm_names:
        spec = ARMS.get(name)
        model = copy.deepcopy(dense)
        row = {"parameters": model.num_parameters()}
        masks = None
        if spec is not None:
            model, masks, details = pruned(model, spec)
            row.update(parameters=model.num_parameters(), details=details)
        row["perplexity_pruned"] = ppl(model)
        # The dense control always trains on plain next-token CE; only pruned arms recover by KD.
        row["recovery"] = "ce" if spec is None else recovery.mode
        t0 = time.perf_counter()
        lr = args.finetune_lr if name == "dense" else args.recovery_lr
        metrics = train(model, args.finetune_steps, lr, masks, recovery.loss_fn(teacher) if spec is not None else None)
        row["finetune_lr"] = lr
        row["finetune_metrics"] = {k: v for k, v in metrics.items() if k in ("loss", "kd_loss", "ce_loss")}
        row["finetune_seconds"] = time.perf_counter() - t0
        row["perplexity"] = ppl(model)
        if masks is not None:
            weights = dict(model.named_parameters())
            zeros = sum(int((weights[n] == 0).sum()) for n in masks.masks)
            row["sparsity_after_finetune"] = zeros / sum(m.numel() for m in masks.masks.values())
        print(f"{name}: perplexity {row['perplexity_pruned']:.3f} -> {row['perplexity']:.3f} "
              f"after {args.finetune_steps} steps", flush=True)
        result["arms"][name] = row
    # Latency: dense vs pruned, interleaved, on the benchmark device. Weights do not change the cost
    # of a dense matmul, so when the quality model is narrower an untrained latency model is used.
    torch.manual_seed(args.seed)
    latency_dense = dense if quality_config is config and arm_names else APTModel(config)
    models = {"dense": latency_dense.cpu().eval()}
    for name in LATENCY_ARMS:
        models[name] = pruned(copy.deepcopy(latency_dense), ARMS[name])[0].eval()
    seconds = latency({k: m.to(device) for k, m in models.items()}, args.latency_batch, args.latency_seq, args.reps,
                      device, compile=args.latency_compile)
    for name, value in seconds.items():
        row = result["arms"].setdefault(name, {})
        row["latency_ms"] = value[args.latency_stat] * 1e3
        row["latency_median_ms"] = value["median"] * 1e3
        row["latency_min_ms"] = value["min"] * 1e3
        row["speedup"] = seconds["dense"][args.latency_stat] / value[args.latency_stat]
        row["speedup_median"] = seconds["dense"]["median"] / value["median"]
        row["latency_parameters"] = models[name].num_parameters()
    control = result["arms"].get("dense", {}).get("perplexity")
    for name, row in result["arms"].items():
        if control and row.get("perplexity"):
            row["ppl_ratio"] = row["perplexity"] / control
        target = TARGETS.get(name)
        if target:
            checks = []
            if "speedup" in target and "speedup" in row:
                checks.append(row["speedup"] >= target["speedup"])
            if "ppl_ratio" in target and "ppl_ratio" in row:
                checks.append(row["ppl_ratio"] <= target["ppl_ratio"])
            row["target"] = target
            row["meets_target"] = all(checks) if checks else None
    result["total_seconds"] = time.perf_counter() - started
    tag = args.tag or ("smoke" if args.smoke else _device_tag(device))
    print_table(result)
    path = save(f"prune_{tag}", result)
    plot(result, RESULTS / f"prune_{tag}.png", tag)
    print(f"wrote {path}")


def _device_tag(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0).replace(" ", "_").lower()
    return "cpu"


def _silent_hook():
    """Hook relay of a plugin manager with no plugins: a benchmark must not back itself up to the cloud."""
    from apt_core.plugins import make_plugin_manager

    return make_plugin_manager(load=[]).hook


def _fmt(value, spec):
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_table(result: dict) -> None:
    rows = []
    for name, row in result["arms"].items():
        rows.append({"arm": name, "params": f"{row.get('parameters', 0):,}",
                     "ppl pruned": _fmt(row.get("perplexity_pruned"), ".3f"),
                     "ppl tuned": _fmt(row.get("perplexity"), ".3f"),
                     "vs dense": _fmt(row.get("ppl_ratio"), ".3f"),
                     "latency params": f"{row['latency_parameters']:,}" if "latency_parameters" in row else "-",
                     "latency ms": _fmt(row.get("latency_ms"), ".2f"), "speedup": _fmt(row.get("speedup"), ".2f"),
                     "target": {True: "met", False: "MISSED", None: "-"}.get(row.get("meets_target"), "-")})
    print(table(rows, ["arm", "params", "ppl pruned", "ppl tuned", "vs dense", "latency params", "latency ms", "speedup", "target"]))
    rec = result.get("recovery", {})
    if rec:
        detail = f" (alpha {rec['alpha']:g}, temperature {rec['temperature']:g})" if rec["mode"] == "kd" else ""
        print(f"recovery of the pruned arms: {rec['mode']}{detail}; the dense control: ce")
    print(f"machine: {machine()}")


def plot(result: dict, path: Path, tag: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    arms = result["arms"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    lat = [(n, r["speedup"]) for n, r in arms.items() if "speedup" in r]
    left.barh([n for n, _ in lat], [s for _, s in lat], color="tab:blue")
    left.axvline(1.0, color="black", lw=0.8)
    left.set(xlabel="inference speedup vs dense (x)", title=f"latency ({tag})")
    ppl = [(n, r["ppl_ratio"]) for n, r in arms.items() if "ppl_ratio" in r]
    if ppl:
        right.barh([n for n, _ in ppl], [v for _, v in ppl], color="tab:orange")
        right.axvline(1.0, color="black", lw=0.8)
        right.set(xlabel="perplexity / dense control (same fine-tune steps)",
                  title=f"after {result['args']['finetune_steps']} fine-tune steps", xlim=(min(0.95, min(v for _, v in ppl) - 0.01), None))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
