"""Every backend: backup -> restore is byte-identical; an unchanged re-backup uploads 0 bytes;
a checkpoint differing in one tensor uploads only that file's changed chunks."""

from __future__ import annotations

import pytest
from cloud_testlib import tree_bytes

from apt_plugin_cloud.maintain import verify
from apt_plugin_cloud.settings import open_store, validate_settings
from apt_plugin_cloud.transfer import backup, restore

BACKENDS = ["file", "s3", "oss", "hf", "modelscope"]


@pytest.fixture
def store_url(request, tmp_path):
    kind = request.param
    if kind == "file":
        return f"file://{tmp_path}/store"
    return request.getfixturevalue({"s3": "s3_url", "oss": "oss_url", "hf": "hf_url",
                                    "modelscope": "modelscope_url"}[kind])


@pytest.mark.parametrize("store_url", BACKENDS, indirect=True)
def test_round_trip_dedup_and_incremental(store_url, checkpoint, opts, tmp_path):
    store = open_store(store_url, validate_settings({}))
    first = backup(checkpoint, store, name="v1", opts=opts)
    assert first.uploaded_bytes == first.total_bytes

    again = backup(checkpoint, store, name="v1", opts=opts)
    assert again.unchanged and again.uploaded_bytes == 0 and again.uploaded_objects == 0

    # Change one "tensor": 100 bytes inside the 3rd MiB of model.safetensors.
    model = checkpoint / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[2 * 1024 * 1024 + 10: 2 * 1024 * 1024 + 110] = bytes(100)
    model.write_bytes(bytes(data))
    changed = backup(checkpoint, store, name="v2", opts=opts)
    assert changed.uploaded_objects == 1 and changed.uploaded_bytes == opts.chunk_size

    for name in ("v1", "v2"):
        out = tmp_path / f"out-{name}"
        restore(store, name, out, opts)
        if name == "v2":
            assert tree_bytes(out) == tree_bytes(checkpoint)
    assert tree_bytes(tmp_path / "out-v1") != tree_bytes(tmp_path / "out-v2")
    assert verify(store, opts=opts).ok
