"""ModelScope backend: the real modelscope SDK against the protocol-level server in tests/cloud_servers."""

from __future__ import annotations

import logging

import pytest
from cloud_testlib import MS_TOKEN, tree_bytes

from apt_plugin_cloud.backends.modelscope import ModelScopeBackend
from apt_plugin_cloud.retry import AuthError
from apt_plugin_cloud.settings import settings_for
from apt_plugin_cloud.transfer import backup, restore


def _store(url: str) -> ModelScopeBackend:
    return ModelScopeBackend(url.split("?")[0], settings_for(url, {"modelscope": {"endpoint": ""}}))


@pytest.mark.parametrize("surface", ["modelscope_hub", "legacy"])
def test_modelscope_round_trip(surface, modelscope_url, modelscope_server, checkpoint, opts, tmp_path):
    store = _store(modelscope_url)
    if surface == "legacy":  # the modelscope.hub.api.HubApi surface older modelscope releases offer
        from modelscope.hub.api import HubApi

        from apt_plugin_cloud.backends.modelscope import _LegacyClient

        store.client = _LegacyClient(HubApi(endpoint=modelscope_server.endpoint, token=MS_TOKEN))
    before = modelscope_server.app.commit_count
    first = backup(checkpoint, store, name="s1", opts=opts)
    assert first.uploaded_bytes == first.total_bytes
    assert modelscope_server.app.commit_count - before <= 3, modelscope_server.app.unknown
    again = backup(checkpoint, store, name="s2", opts=opts)
    assert again.uploaded_bytes == 0
    restore(store, "s2", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)


def test_modelscope_create_if_absent(modelscope_url):
    store = _store(modelscope_url)
    assert store.put("snapshots/a.json", b"one", if_absent=True)
    assert not store.put("snapshots/a.json", b"two", if_absent=True)
    assert store.get("snapshots/a.json") == b"one"


def test_modelscope_wrong_token_fails_fast(modelscope_url, checkpoint, opts, monkeypatch, caplog, capfd):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-wrong-token-000000000042")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError, match="MODELSCOPE_API_TOKEN") as info:
        backup(checkpoint, _store(modelscope_url), opts=opts)
    out, err = capfd.readouterr()
    text = caplog.text + str(info.value) + out + err
    assert "ms-wrong-token-000000000042" not in text and MS_TOKEN not in text
