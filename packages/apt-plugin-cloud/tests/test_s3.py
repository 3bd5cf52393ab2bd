"""S3 backend against a real SeaweedFS: round trip, dedup, conditional writes, auth, faults."""

from __future__ import annotations

import logging

import pytest
from cloud_testlib import MB, tree_bytes, write_checkpoint

from apt_core.errors import APTError
from apt_plugin_cloud.backends.s3 import S3Backend
from apt_plugin_cloud.maintain import verify
from apt_plugin_cloud.retry import AuthError
from apt_plugin_cloud.transfer import backup, list_snapshots, restore


def test_round_trip_and_dedup(s3_url, checkpoint, opts, tmp_path):
    store = S3Backend(s3_url)
    first = backup(checkpoint, store, name="snap1", opts=opts)
    assert first.uploaded_bytes == first.total_bytes > 0
    again = backup(checkpoint, store, name="snap2", opts=opts)
    assert again.uploaded_bytes == 0 and again.uploaded_objects == 0
    restore(store, "snap2", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)
    assert verify(store, opts=opts).ok


def test_manifest_is_create_if_absent(s3_url, opts):
    store = S3Backend(s3_url)
    assert store.put("snapshots/x.json", b"first", if_absent=True) is True
    assert store.put("snapshots/x.json", b"second", if_absent=True) is False
    assert store.get("snapshots/x.json") == b"first"


@pytest.mark.parametrize("mode", ["sha256", "md5", "when_supported", "when_required"])
def test_checksum_modes(s3_env, mode, checkpoint, opts, tmp_path):
    s3_env.create_bucket("apt-tests")
    store = S3Backend(f"s3://apt-tests/cks-{mode}", {"endpoint_url": s3_env.endpoint, "checksum": mode})
    backup(checkpoint, store, name="s", opts=opts)
    restore(store, "s", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)


def test_sha256_checksum_rejects_wrong_bytes(s3_url):
    store = S3Backend(s3_url)
    with pytest.raises(Exception) as info:
        store.put("objects/aa/" + "a" * 64, b"not the bytes that hash to the name")
    assert "BadDigest" in str(info.value) or "giving up" in str(info.value) or "checksum" in str(info.value).lower()


def test_wrong_credentials_fail_fast_without_secrets(s3_url, checkpoint, opts, monkeypatch, caplog, capfd):
    wrong_id, wrong_secret = "AKIAWRONGKEY00000042", "wrong/secret+value0123456789"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", wrong_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    store = S3Backend(s3_url)
    import time

    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        backup(checkpoint, store, name="denied", opts=opts)
    assert time.monotonic() - started < 5, "credential errors must not be retried"
    message = str(info.value)
    assert "access denied" in message and "InvalidAccessKeyId" in message
    out, err = capfd.readouterr()
    everything = caplog.text + message + out + err
    assert "botocore" in caplog.text  # DEBUG logging really was on
    assert wrong_secret not in everything and wrong_id not in everything


def test_missing_bucket_is_clear(s3_env, checkpoint, opts):
    store = S3Backend(f"s3://no-such-bucket-apt/x?endpoint_url={s3_env.endpoint}")
    with pytest.raises(APTError, match="does not exist"):
        backup(checkpoint, store, opts=opts)


def test_multipart_upload_and_abort(s3_env, tmp_path, opts):
    s3_env.create_bucket("apt-tests")
    store = S3Backend("s3://apt-tests/mp", {"endpoint_url": s3_env.endpoint, "multipart_threshold_mb": 1})
    ckpt = write_checkpoint(tmp_path / "big", model_mb=40)
    opts.chunk_size = 40 * MB
    backup(ckpt, store, name="big", opts=opts)
    restore(store, "big", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(ckpt)
    # A multipart upload left behind by a killed process is aborted by prune's clean-up.
    client = s3_env.client()
    client.create_multipart_upload(Bucket="apt-tests", Key="mp/objects/zz/orphan")
    assert store.abort_incomplete_uploads(0) >= 1
    assert not client.list_multipart_uploads(Bucket="apt-tests", Prefix="mp/").get("Uploads")
    assert [s.name for s in list_snapshots(store, opts)] == ["big"]


def test_failed_multipart_upload_is_aborted(s3_env, fault_proxy, tmp_path, opts):
    """A multipart upload that cannot finish leaves no incomplete upload behind (no orphaned parts)."""
    from apt_core.errors import APTError

    s3_env.create_bucket("apt-tests")
    prefix = f"mp-fail-{tmp_path.name}"
    store = S3Backend(f"s3://apt-tests/{prefix}", {"endpoint_url": fault_proxy.endpoint, "multipart_threshold_mb": 1})
    fault_proxy.add("503", method="PUT", path_contains="partNumber=2", times=10_000)
    data = bytes(20 * MB)
    import hashlib

    with pytest.raises(APTError, match="giving up"):
        from apt_plugin_cloud.retry import call_with_retry

        call_with_retry(lambda: store.put("objects/ab/" + hashlib.sha256(data).hexdigest(), data), "upload",
                        opts.retry)
    assert not s3_env.client().list_multipart_uploads(Bucket="apt-tests", Prefix=prefix).get("Uploads")
