"""Training throughput on one GPU: APT versus a stock transformers Llama and a minimal GPT of equal size.

    python bench/bench_gpu_train.py                    # d 768, 12 layers, 12 heads, seq 1024, batch 16, bf16
    python bench/bench_gpu_train.py --arms apt,llama --no-eager
    python bench/bench_gpu_train.py --arms apt,llama --no-eager --mode reduce-overhead   # CUDA graphs
    python bench/bench_gpu_train.py --arms apt,apt-no-autopoietic --no-eager --profile 15
    python bench/bench_gpu_train.py --arms gpt,llama,apt --no-eager --repeat 5   # interleaved rounds, medians
    python bench/bench_gpu_train.py --smoke            # tiny shapes on CPU, to check the script runs

Every arm uses fused AdamW, bf16 autocast, the model's own loss, and is timed after warm-up (so
compile time is excluded). MFU = 6 * N * tokens/s / (bf16 matmul ceiling measured in the same run).
The ablation arms switch APT's own parts off to show what they cost; ``apt-rope`` is APT with the
presets' rotary positions; ``apt-same-params`` narrows APT's FFN so that it has Llama's parameter count.
Each model is called as its training loop calls it: the APT arms as the Trainer does, for the loss alone
(``return_logits=False``), except ``apt-with-logits``; ``llama`` is the stock config, ``llama-no-cache`` the
same with ``use_cache=False`` (no KV cache built in training).
``launch ms`` is the time Python takes to launch one step while the GPU is idle (median of 5): the closer
it comes to ``step ms``, the more a slower host (another machine, a busy core) turns into a slower step.
``--repeat N`` runs every arm N times in interleaved rounds and reports medians, with ratios taken within
each round: the card's speed drifts by a few per cent between runs, and arms timed next to each other
drift together. Results: bench/results/gpu_train.json (``--name`` to change).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import save, table


class MinimalGPT(nn.Module):
    """nanoGPT-style reference: pre-LayerNorm, fused qkv, SDPA causal, GELU MLP, tied embeddings."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, d_ff: int, seq: int) -> None:
        super().__init__()
        self.heads = heads
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln1": nn.LayerNorm(d), "qkv": nn.Linear(d, 3 * d, bias=False), "proj": nn.Linear(d, d, bias=False),
            "ln2": nn.LayerNorm(d), "fc": nn.Linear(d, d_ff, bias=False), "out": nn.Linear(d_ff, d, bias=False),
        }) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, input_ids, labels=None):
        b, t = input_ids.shape
        x = self.wte(input_ids) + self.wpe(torch.arange(t, device=input_ids.device))
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, t, 3, self.heads, -1).unbind(2)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
            x = x + blk["proj"](o.transpose(1, 2).reshape(b, t, -1))
            x = x + blk["out"](F.gelu(blk["fc"](blk["ln2"](x))))
        logits = F.linear(self.ln_f(x), self.wte.weight)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1))
        return type("Out", (), {"loss": loss})()


def build(arm: str, shape: dict) -> nn.Module:
    d, layers, heads, vocab, seq = shape["d"], shape["layers"], shape["heads"], shape["vocab"], shape["seq"]
    if arm == "gpt":
        return MinimalGPT(vocab, d, layers, heads, 4 * d, seq)
    if arm in ("llama", "llama-no-cache"):
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=shape["d_ff"], num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=seq,
                             tie_word_embeddings=True, attn_implementation="sdpa", use_cache=arm == "llama")
        return LlamaForCausalLM(config)
    from apt_core import APTConfig, APTModel

    config = APTConfig(vocab_size=vocab, d_model=d, n_layers=layers, n_heads=heads, d_ff=shape["d_ff"], max_seq_len=seq)
    switches = {"apt": {}, "apt-no-autopoietic": {"autopoietic": False}, "apt-no-left-spin": {"left_spin": False},
                "apt-plain": {"autopoietic": False, "left_spin": False},
                "apt-rope": {"position_encoding": "rope"}, "apt-with-logits": {},
                "apt-same-params": {"d_ff": same_params_d_ff(config)}}[arm]
    return APTModel(config.replace(**switches))


def same_params_d_ff(config) -> int:
    """The FFN width at which APT has as many parameters as the Llama arm: without its autopoietic term APT
    has exactly Llama's layout and count, so the term's parameters come out of the FFN (3 matrices of
    d_model x d_ff per layer), rounded to a multiple of 64."""
    extra = config.num_parameters() - config.replace(autopoietic=False).num_parameters()
    return config.d_ff - 64 * round(extra / (3 * config.d_model * config.n_layers * 64))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_ceiling(device: torch.device, n: int = 8192, reps: int = 30) -> float:
    """Measured dense bf16 matmul throughput in FLOP/s (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def kernel_profile(step, top: int, steps: int = 3) -> list[tuple[str, float]]:
    """The *top* GPU kernels by time per step (ms), from the torch profiler over *steps* steps.

    Their sum against step_ms shows how long the GPU sat idle (waiting on the host)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        totals[event.key] = totals.get(event.key, 0.0) + event.device_time_total / steps / 1e3
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [("(all kernels)", sum(totals.values()))] + ranked[:top]


def run_arm(arm: str, compiled: bool, shape: dict, steps: int, warmup: int, device: torch.device,
            mode: str | None = None, profile: int = 0) -> dict:
    torch.manual_seed(0)
    model = build(arm, shape).to(device)
    params = sum(p.numel() for p in model.parameters())
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=fused)
    step_model = torch.compile(model, mode=mode) if compiled else model
    cuda_graphs = compiled and mode == "reduce-overhead"
    batch = torch.randint(0, shape["vocab"], (shape["batch"], shape["seq"]), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    # Each model is called as its own training loop calls it: APT as the Trainer does, for the loss alone.
    loss_only = {"return_logits": False} if arm.startswith("apt") and arm != "apt-with-logits" else {}

    def step():
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss = step_model(input_ids=batch, labels=batch, **loss_only).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    launches = []
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        step()
        launches.append(time.perf_counter() - start)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    final_loss = loss.item()  # the only host sync in the timed loop
    synchronize(device)
    elapsed = time.perf_counter() - start
    tokens = shape["batch"] * shape["seq"] * steps
    kernels = kernel_profile(step, profile) if profile and device.type == "cuda" else None
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return {"arm": arm, "compiled": compiled, "params_M": params / 1e6, "tokens_per_s": tokens / elapsed,
            "step_ms": 1e3 * elapsed / steps, "launch_ms": 1e3 * statistics.median(launches), "peak_mem_GiB": peak,
            "loss": final_loss, "mode": mode or "default", "top_kernels_ms": kernels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="gpt,llama,llama-no-cache,apt,apt-no-autopoietic,apt-no-left-spin,apt-plain,apt-same-params")
    parser.add_argument("--no-eager", action="store_true", help="compiled runs only")
    parser.add_argument("--eager-arms", default="gpt,llama,apt", help="arms also run without torch.compile")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--mode", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile mode for every compiled arm (reduce-overhead = CUDA graphs)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print each compiled arm's N most expensive GPU kernels (ms per step)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="interleaved rounds; medians are reported")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, CPU allowed")
    parser.add_argument("--name", default="gpu_train")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("no GPU: use --smoke to check the script on CPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    shape = dict(d=768, layers=12, heads=12, d_ff=2048, vocab=32000, seq=1024, batch=16)
    if args.smoke:
        shape = dict(d=64, layers=2, heads=4, d_ff=160, vocab=512, seq=64, batch=2)
        args.steps, args.warmup = 2, 1
    ceiling = matmul_ceiling(device) if device.type == "cuda" else float("nan")
    mode = None if args.mode in (None, "default") else args.mode
    runs = []
    for round_ in range(args.repeat):
        for arm in args.arms.split(","):
            modes = [True] if args.no_eager or arm not in args.eager_arms.split(",") else [False, True]
            for compiled in modes:
                result = run_arm(arm, compiled, shape, args.steps, args.warmup, device, mode,
                                 args.profile if compiled else 0)
                result["mfu"] = 6 * result["params_M"] * 1e6 * result["tokens_per_s"] / ceiling
                result["round"] = round_
                runs.append(result)
                print(f"round {round_} {arm:20s} compiled={compiled!s:5s} {result['tokens_per_s']:>12,.0f} tok/s", flush=True)
                for name, ms in result["top_kernels_ms"] or ():
                    print(f"    {ms:8.3f} ms  {name[:100]}")

    def rate(arm, round_):
        return next((r["tokens_per_s"] for r in runs if r["arm"] == arm and r["compiled"] and r["round"] == round_),
                    math.nan)

    def ratio(a, b):
        return statistics.median(rate(a, k) / rate(b, k) for k in range(args.repeat))

    ratios = {"apt_vs_llama_compiled": ratio("apt", "llama"), "apt_vs_gpt_compiled": ratio("apt", "gpt"),
              "apt_same_params_vs_llama_compiled": ratio("apt-same-params", "llama")}
    if args.repeat > 1:
        ratios["apt_vs_llama_compiled_per_round"] = [rate("apt", k) / rate("llama", k) for k in range(args.repeat)]
    path = save(args.name, {"shape": shape, "steps": args.steps, "repeat": args.repeat,
                            "matmul_ceiling_tflops": ceiling / 1e12, "runs": runs, "ratios": ratios})
    rows = []
    for first in (r for r in runs if r["round"] == 0):
        same = [r for r in runs if r["arm"] == first["arm"] and r["compiled"] == first["compiled"]]
        med = {key: statistics.median(r[key] for r in same)
               for key in ("tokens_per_s", "step_ms", "launch_ms", "peak_mem_GiB", "mfu")}
        spread = f" ({min(r['tokens_per_s'] for r in same):,.0f}-{max(r['tokens_per_s'] for r in same):,.0f})"
        rows.append({"arm": first["arm"], "params M": f"{first['params_M']:.1f}",
                     "mode": (first["mode"].replace("default", "compile") if first["compiled"] else "eager"),
                     "tokens/s": f"{med['tokens_per_s']:,.0f}" + (spread if args.repeat > 1 else ""),
                     "step ms": f"{med['step_ms']:.1f}", "launch ms": f"{med['launch_ms']:.1f}",
                     "peak GiB": f"{med['peak_mem_GiB']:.1f}", "MFU": f"{med['mfu']:.2f}"})
    print(f"\nbf16 matmul ceiling {ceiling / 1e12:.0f} TFLOP/s; shape {shape}; saved {path}")
    print(f"APT/Llama (compiled) {ratios['apt_vs_llama_compiled']:.3f}x, APT/GPT (compiled) "
          f"{ratios['apt_vs_gpt_compiled']:.3f}x, APT with Llama's parameter count / Llama "
          f"{ratios['apt_same_params_vs_llama_compiled']:.3f}x" + (f" (medians of {args.repeat} rounds)" if args.repeat > 1 else ""))
    print(table(rows, ["arm", "mode", "params M", "tokens/s", "step ms", "launch ms", "peak GiB", "MFU"]))


if __name__ == "__main__":
    main()
