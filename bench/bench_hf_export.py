"""apt-plugin-hf: export / import / load times, and forward speed of the remote-code model vs APT.

For each preset (random weights, fp32): export to a transformers folder (single file and sharded),
import it back, load it with AutoModelForCausalLM(trust_remote_code=True), and time a forward pass
of APT and of the loaded model on the same batch (they must agree to < 1e-5). Optionally
(``--hub``) pushes and pulls the export through the real huggingface_hub client against the
in-suite Hub-protocol server and reports MB/s.

    python bench/bench_hf_export.py [--presets small,base] [--hub] [--repeats 3]

Prints a table and writes bench/results/hf_export.json (with the machine description).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from common import save, table  # noqa: E402


def _timed(fn, repeats: int = 1):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def bench_preset(name: str, work: Path, repeats: int, hub) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from apt_core.checkpoint import load_checkpoint, save_checkpoint
    from apt_core.model import APTConfig, APTModel
    from apt_core.tokenizer import APTTokenizer
    from apt_plugin_hf.export import export_checkpoint
    from apt_plugin_hf.hub import pull_repo, push_folder
    from apt_plugin_hf.importer import import_model

    torch.manual_seed(0)
    config = APTConfig.preset(name)
    ckpt = save_checkpoint(work / f"{name}-ckpt", APTModel(config), APTTokenizer.byte_level())
    row: dict = {"preset": name, "params_M": round(APTModel(config).num_parameters() / 1e6, 2)}

    def export(shard):
        out = work / f"{name}-hf-{shard}"
        shutil.rmtree(out, ignore_errors=True)
        return export_checkpoint(ckpt, out, shard_size=shard)

    folder, row["export_s"] = _timed(lambda: export("2GB"), repeats)
    row["size_MB"] = round(_size_mb(folder), 1)
    shard = f"{max(1, int(row['size_MB'] / 4))}MB"
    sharded, row["export_sharded_s"] = _timed(lambda: export(shard), repeats)
    row["shards"] = len(list(sharded.glob("model-*.safetensors")))

    def do_import():
        out = work / f"{name}-back"
        shutil.rmtree(out, ignore_errors=True)
        return import_model(str(folder), out)

    _, row["import_s"] = _timed(do_import, repeats)
    AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True)  # warm the dynamic module
    hf, row["hf_load_s"] = _timed(lambda: AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True),
                                  repeats)
    apt = load_checkpoint(ckpt).model.eval()
    hf.eval()
    seq = min(128, config.max_seq_len)
    ids = torch.randint(4, config.vocab_size, (8, seq))
    with torch.no_grad():
        apt(ids), hf(ids)  # warm-up
        a, row["apt_fwd_ms"] = _timed(lambda: apt(ids).logits, repeats)
        b, row["hf_fwd_ms"] = _timed(lambda: hf(ids).logits, repeats)
    row["apt_fwd_ms"], row["hf_fwd_ms"] = round(row["apt_fwd_ms"] * 1e3, 1), round(row["hf_fwd_ms"] * 1e3, 1)
    row["max_abs_diff"] = float((a - b).abs().max())
    if hub is not None:
        _, push_s = _timed(lambda: push_folder(folder, f"tester/{name}"))
        pulled = work / f"{name}-pulled"
        _, pull_s = _timed(lambda: pull_repo(f"tester/{name}", pulled, overwrite=True))
        row["push_MB_s"] = round(row["size_MB"] / push_s, 1)
        row["pull_MB_s"] = round(row["size_MB"] / pull_s, 1)
    for key in ("export_s", "export_sharded_s", "import_s", "hf_load_s"):
        row[key] = round(row[key], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hub", action="store_true", help="also push/pull through the Hub-protocol test server")
    args = parser.parse_args()

    import contextlib

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp, contextlib.ExitStack() as stack:
        hub = None
        if args.hub:
            from hub_server import hub_server

            hub = stack.enter_context(hub_server(Path(tmp) / "hub"))
            os.environ["HF_ENDPOINT"], os.environ["HF_TOKEN"] = hub.url, hub.token
        for name in args.presets.split(","):
            rows.append(bench_preset(name.strip(), Path(tmp), args.repeats, hub))
            print(table(rows[-1:], list(rows[-1])), flush=True)
    columns = list(rows[0])
    print()
    print(table(rows, columns))
    path = save("hf_export", {"rows": rows, "repeats": args.repeats, "load_average": os.getloadavg(),
                              "note": "median of repeats; fp32 random weights; forward = batch 8 x min(128, max_seq_len)"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
