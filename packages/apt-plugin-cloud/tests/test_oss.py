"""OSS backend: the real oss2 SDK against the protocol-level OSS server in tests/cloud_servers."""

from __future__ import annotations

import logging
import time

import pytest
from cloud_servers.fault_proxy import FaultProxy
from cloud_testlib import OSS_SECRET, tree_bytes

from apt_plugin_cloud.backends.oss import OSSBackend
from apt_plugin_cloud.retry import AuthError
from apt_plugin_cloud.transfer import backup, restore


def test_forbid_overwrite_and_crc(oss_url):
    store = OSSBackend(oss_url)
    assert store.put("snapshots/a.json", b"one", if_absent=True)
    assert not store.put("snapshots/a.json", b"two", if_absent=True)
    assert store.get("snapshots/a.json") == b"one"
    assert [i.key for i in store.list("snapshots/")] == ["snapshots/a.json"]
    store.delete("snapshots/a.json")
    assert not store.exists("snapshots/a.json")


@pytest.mark.parametrize("kind,method", [("corrupt_response", "GET"), ("corrupt_request", "PUT"),
                                         ("503", "PUT"), ("cut_response", "GET")])
def test_oss_faults_are_detected_and_retried(kind, method, oss_server, oss_url, checkpoint, opts, tmp_path):
    proxy = FaultProxy(oss_server.port)
    try:
        url = oss_url.split("?")[0] + f"?endpoint={proxy.endpoint}"
        store = OSSBackend(url)
        prefix = url.split("/")[3].split("?")[0]
        proxy.add(kind, method=method, path_contains=f"/apt-oss/{prefix}%2Fobjects", times=2)
        backup(checkpoint, store, name="s", opts=opts)
        restore(store, "s", tmp_path / "out", opts)
        assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)
        assert len(proxy.injected) == 2
    finally:
        proxy.stop()


def test_oss_wrong_secret_fails_fast_without_secret(oss_url, checkpoint, opts, monkeypatch, caplog, capfd):
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "definitely-wrong-oss-secret-42")
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(AuthError, match="access denied.*SignatureDoesNotMatch") as info:
        backup(checkpoint, OSSBackend(oss_url), opts=opts)
    assert time.monotonic() - started < 5
    out, err = capfd.readouterr()
    text = caplog.text + str(info.value) + out + err
    assert "definitely-wrong-oss-secret-42" not in text and OSS_SECRET not in text
    assert "LTAI5tAPTTESTKEY0001" not in text


def test_oss_missing_credentials(oss_url, monkeypatch):
    monkeypatch.delenv("OSS_ACCESS_KEY_ID")
    with pytest.raises(AuthError, match="OSS_ACCESS_KEY_ID"):
        OSSBackend(oss_url)
