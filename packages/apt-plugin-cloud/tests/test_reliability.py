"""Reliability: fault injection, corruption, interrupted uploads, path escapes (SeaweedFS and local disk)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from cloud_testlib import tree_bytes

from apt_core.errors import APTError
from apt_plugin_cloud.backends.local import LocalBackend
from apt_plugin_cloud.backends.s3 import S3Backend
from apt_plugin_cloud.maintain import verify
from apt_plugin_cloud.store import Manifest, manifest_key, object_key
from apt_plugin_cloud.transfer import backup, list_snapshots, restore

FAULTS = [
    ("503", "PUT"), ("429", "PUT"), ("cut_request", "PUT"), ("corrupt_request", "PUT"),
    ("503", "GET"), ("429", "GET"), ("cut_response", "GET"), ("corrupt_response", "GET"),
]


@pytest.mark.parametrize("kind,method", FAULTS)
def test_transfers_survive_faults(kind, method, s3_env, fault_proxy, checkpoint, opts, tmp_path):
    s3_env.create_bucket("apt-tests")
    store = S3Backend(f"s3://apt-tests/fault-{kind}-{method}", {"endpoint_url": fault_proxy.endpoint})
    fault_proxy.add(kind, method=method, path_contains="/objects/", times=2, seconds=0.2)
    started = time.monotonic()
    backup(checkpoint, store, name="s", opts=opts)
    restore(store, "s", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)
    assert len(fault_proxy.injected) == 2, fault_proxy.injected
    if kind == "429":
        assert time.monotonic() - started >= 0.4  # Retry-After was honoured twice


def test_persistent_5xx_gives_up_with_clear_error(s3_env, fault_proxy, checkpoint, opts):
    s3_env.create_bucket("apt-tests")
    store = S3Backend("s3://apt-tests/fault-persistent", {"endpoint_url": fault_proxy.endpoint})
    fault_proxy.add("503", method="PUT", times=10_000)
    with pytest.raises(APTError, match="giving up after 6 attempts.*SlowDown"):
        backup(checkpoint, store, name="s", opts=opts)
    assert list_snapshots(S3Backend("s3://apt-tests/fault-persistent", {"endpoint_url": s3_env.endpoint})) == []


def _flip_stored_object(store, sha: str) -> None:
    data = bytearray(store.get(object_key(sha)))
    data[len(data) // 2] ^= 0xFF
    store.put(object_key(sha), bytes(data)) if not isinstance(store, S3Backend) else \
        store.client.put_object(Bucket=store.bucket, Key=store._key(object_key(sha)), Body=bytes(data))


@pytest.mark.parametrize("where", ["file", "s3"])
def test_flipped_byte_fails_verify_and_restore(where, s3_env, tmp_path, checkpoint, opts):
    if where == "s3":
        s3_env.create_bucket("apt-tests")
        store = S3Backend(f"s3://apt-tests/flip-{time.time_ns()}", {"endpoint_url": s3_env.endpoint})
    else:
        store = LocalBackend(f"file://{tmp_path}/store")
    backup(checkpoint, store, name="s", opts=opts)
    manifest = Manifest.from_bytes(store.get(manifest_key("s")))
    victim = next(f for f in manifest.files if f.path == "model.safetensors").chunks[1].sha256
    _flip_stored_object(store, victim)
    report = verify(store, opts=opts)
    assert not report.ok and report.corrupt == [victim]
    out = tmp_path / "restored"
    with pytest.raises(APTError, match="corrupt"):
        restore(store, "s", out, opts)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restored")], "staging dir left behind"


def test_corrupt_manifest_is_detected(tmp_path, checkpoint, opts):
    store = LocalBackend(f"file://{tmp_path}/store")
    backup(checkpoint, store, name="s", opts=opts)
    path = tmp_path / "store" / manifest_key("s")
    path.write_bytes(path.read_bytes().replace(b'"size": 10', b'"size": 11', 1))
    with pytest.raises(APTError, match="corrupt"):
        restore(store, "s", tmp_path / "out", opts)
    assert not verify(store, opts=opts).ok


@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/passwd", "a/../../b", "sub/./x", "C:/x"])
def test_restore_refuses_paths_escaping_out(evil, tmp_path, opts):
    store = LocalBackend(f"file://{tmp_path}/store")
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    (ckpt / "f.txt").write_text("x")
    backup(ckpt, store, name="s", opts=opts)
    body = json.loads(store.get(manifest_key("s")))
    body.pop("checksum")
    body["files"][0]["path"] = evil
    from apt_plugin_cloud.store import _canonical_sha256

    body["checksum"] = _canonical_sha256(body)  # a well-formed but malicious manifest
    store.put(manifest_key("s"), json.dumps(body).encode())
    with pytest.raises(APTError, match="unsafe path|escapes"):
        restore(store, "s", tmp_path / "out", opts)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_killed_upload_then_rerun(s3_env, fault_proxy, tmp_path, opts):
    """Kill a backup mid-way: no snapshot is visible; the re-run uploads only what is missing."""
    from cloud_testlib import write_checkpoint

    s3_env.create_bucket("apt-tests")
    ckpt = write_checkpoint(tmp_path / "ckpt", model_mb=8)
    prefix = f"killed-{time.time_ns()}"
    fault_proxy.add("delay", method="PUT", path_contains="/objects/", times=10_000, seconds=0.25)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from apt_plugin_cloud.backends.s3 import S3Backend
        from apt_plugin_cloud.transfer import backup, TransferOptions
        store = S3Backend("s3://apt-tests/{prefix}", {{"endpoint_url": "{fault_proxy.endpoint}"}})
        backup(Path("{ckpt}"), store, name="s", opts=TransferOptions(concurrency=2, progress=False,
               chunk_size=1024 * 1024))
        print("FINISHED")
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    direct = S3Backend(f"s3://apt-tests/{prefix}", {"endpoint_url": s3_env.endpoint})
    deadline = time.monotonic() + 60
    while len(list(direct.list("objects/"))) < 3:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stored = len(list(direct.list("objects/")))
    assert list_snapshots(direct) == [] and not direct.exists(manifest_key("s"))
    fault_proxy.clear()
    result = backup(ckpt, direct, name="s", opts=opts)
    assert 0 < result.uploaded_objects and result.reused_objects >= stored
    restore(direct, "s", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(ckpt)
