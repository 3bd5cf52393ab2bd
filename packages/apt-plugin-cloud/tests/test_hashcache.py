"""The local hash cache: an unchanged re-backup reads nothing; any change (even one hiding its mtime) is seen."""

from __future__ import annotations

import os
import shutil

from cloud_testlib import tree_bytes

from apt_plugin_cloud import transfer
from apt_plugin_cloud.backends.local import LocalBackend
from apt_plugin_cloud.transfer import backup, restore


def _count_hashing(monkeypatch) -> list[int]:
    calls = [0]
    real = transfer.hash_chunk

    def counting(data):
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(transfer, "hash_chunk", counting)
    return calls


def test_unchanged_rebackup_reads_nothing(checkpoint, opts, tmp_path, monkeypatch):
    store = LocalBackend(f"file://{tmp_path}/store")
    backup(checkpoint, store, name="a", opts=opts)
    calls = _count_hashing(monkeypatch)
    again = backup(checkpoint, store, name="b", opts=opts)
    assert calls[0] == 0 and again.uploaded_bytes == 0
    opts.hash_cache = False
    backup(checkpoint, store, name="c", opts=opts)
    assert calls[0] > 0


def test_change_hidden_behind_old_mtime_is_detected(checkpoint, opts, tmp_path):
    store = LocalBackend(f"file://{tmp_path}/store")
    backup(checkpoint, store, name="a", opts=opts)
    model = checkpoint / "model.safetensors"
    st = model.stat()
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime tells
    changed = backup(checkpoint, store, name="b", opts=opts)
    assert changed.uploaded_objects == 1
    restore(store, "b", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)


def test_cache_is_not_trusted_when_store_lacks_objects(checkpoint, opts, tmp_path):
    backup(checkpoint, LocalBackend(f"file://{tmp_path}/one"), name="a", opts=opts)
    other = LocalBackend(f"file://{tmp_path}/two")
    result = backup(checkpoint, other, name="a", opts=opts)
    assert result.uploaded_bytes == result.total_bytes
    shutil.rmtree(tmp_path / "two" / "objects")
    (tmp_path / "two" / "objects").mkdir()
    result = backup(checkpoint, other, name="again", opts=opts)
    assert result.uploaded_bytes == result.total_bytes
