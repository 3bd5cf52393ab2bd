"""HF Hub backend: the real huggingface_hub.HfApi against the protocol-level Hub server in tests/cloud_servers."""

from __future__ import annotations

import logging

import pytest
from cloud_testlib import HF_TOKEN_VALUE, tree_bytes

from apt_plugin_cloud.backends.hf import HFBackend
from apt_plugin_cloud.retry import AuthError
from apt_plugin_cloud.settings import settings_for
from apt_plugin_cloud.transfer import backup, restore


def _store(url: str) -> HFBackend:
    return HFBackend(url.split("?")[0], settings_for(url, {"hf": {"endpoint": url.split("endpoint=")[1],
                                                                  "repo_type": "model", "private": True}}))


def test_hf_round_trip_commits_in_batches(hf_url, hub_server, checkpoint, opts, tmp_path):
    store = _store(hf_url)
    before = hub_server.app.commit_count
    first = backup(checkpoint, store, name="s1", opts=opts)
    assert first.uploaded_bytes == first.total_bytes
    commits = hub_server.app.commit_count - before
    assert commits <= 3, f"one commit per object would be {first.uploaded_objects}; got {commits}"
    assert len(hub_server.app.lfs) >= 3  # the binary chunks travelled through git-LFS, as on the real Hub
    again = backup(checkpoint, store, name="s2", opts=opts)
    assert again.uploaded_bytes == 0
    restore(store, "s2", tmp_path / "out", opts)
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)


def test_hf_create_if_absent(hf_url):
    store = _store(hf_url)
    assert store.put("snapshots/a.json", b"one", if_absent=True)
    assert not store.put("snapshots/a.json", b"two", if_absent=True)
    assert store.get("snapshots/a.json") == b"one"


def test_hf_wrong_token_fails_fast_without_token(hf_url, checkpoint, opts, monkeypatch, caplog, capfd):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongWrongWrong0123456789")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError, match="HF_TOKEN") as info:
        backup(checkpoint, _store(hf_url), opts=opts)
    out, err = capfd.readouterr()
    text = caplog.text + str(info.value) + out + err
    assert "hf_wrongWrongWrong0123456789" not in text and HF_TOKEN_VALUE not in text
