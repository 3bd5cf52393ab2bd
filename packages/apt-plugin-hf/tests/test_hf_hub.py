"""Hub push/pull through the real ``huggingface_hub`` client against the Hub-protocol test server.

No Hub server can be installed offline; ``tests/support/hub_server.py`` speaks the protocol the SDK
uses (create repo, preupload, LFS batch + blob PUT with sha256 check, NDJSON commit, resolve, tree).
"""

from __future__ import annotations

import json

import pytest


def test_push_then_pull_reproduces_the_folder_byte_for_byte(apt_cli, hub, exported, tmp_path, folder_bytes):
    pushed = apt_cli("hf", "push", exported, "tester/apt-tiny", "--json")
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["commit"].startswith(hub.url)
    repo = hub.repo("tester/apt-tiny")
    assert repo is not None and not repo.private
    head = repo.commits[repo.branches["main"]]
    assert head.files["model.safetensors"].lfs  # went through LFS batch + blob PUT
    assert not head.files["config.json"].lfs  # regular files travel inline in the NDJSON commit

    pulled = apt_cli("hf", "pull", "tester/apt-tiny", tmp_path / "pulled", "--json")
    assert pulled.exit_code == 0, pulled.output
    assert folder_bytes(tmp_path / "pulled") == folder_bytes(exported)
    assert not list(tmp_path.glob(".pulled*"))


def test_pull_a_revision(apt_cli, hub, tmp_path, folder_bytes):
    first = tmp_path / "v1"
    first.mkdir()
    (first / "config.json").write_text('{"v": 1}\n')
    assert apt_cli("hf", "push", first, "tester/revs").exit_code == 0
    sha_v1 = hub.repo("tester/revs").branches["main"]
    (first / "config.json").write_text('{"v": 2}\n')
    assert apt_cli("hf", "push", first, "tester/revs").exit_code == 0
    result = apt_cli("hf", "pull", "tester/revs", tmp_path / "old", "--revision", sha_v1)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "old" / "config.json").read_text() == '{"v": 1}\n'
    missing = apt_cli("hf", "pull", "tester/revs", tmp_path / "none", "--revision", "no-such-branch")
    assert missing.exit_code == 2 and "revision 'no-such-branch' not found" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_wrong_token_is_a_clear_auth_error_and_leaves_nothing(apt_cli, hub, exported, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrongwrong1234")
    push = apt_cli("hf", "push", exported, "tester/denied")
    assert push.exit_code == 2
    assert "authentication failed" in push.stderr and "HF_TOKEN" in push.stderr
    assert "wrongwrong" not in push.output and hub.token not in push.output
    assert hub.repo("tester/denied") is None
    assert len(push.stderr.strip().splitlines()) == 1

    monkeypatch.setenv("HF_TOKEN", hub.token)
    assert apt_cli("hf", "push", exported, "tester/private-model", "--private").exit_code == 0
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrongwrong1234")
    pull = apt_cli("hf", "pull", "tester/private-model", tmp_path / "out")
    assert pull.exit_code == 2 and "authentication failed" in pull.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_missing_token_private_repo_and_forbidden_namespace(apt_cli, hub, exported, tmp_path, monkeypatch):
    assert apt_cli("hf", "push", exported, "tester/secret", "--private").exit_code == 0
    assert hub.repo("tester/secret").private
    monkeypatch.delenv("HF_TOKEN")
    anonymous = apt_cli("hf", "pull", "tester/secret", tmp_path / "out")
    assert anonymous.exit_code == 2 and "not found" in anonymous.stderr and "HF_TOKEN" in anonymous.stderr
    no_login = apt_cli("hf", "push", exported, "tester/other")
    assert no_login.exit_code == 2 and "authentication required" in no_login.stderr

    monkeypatch.setenv("HF_TOKEN", hub.token)
    forbidden = apt_cli("hf", "push", exported, "someone-else/model")
    assert forbidden.exit_code == 2 and "permission denied" in forbidden.stderr
    unknown = apt_cli("hf", "pull", "tester/does-not-exist", tmp_path / "out")
    assert unknown.exit_code == 2 and "tester/does-not-exist not found" in unknown.stderr
    assert not (tmp_path / "out").exists()


def test_create_conflict_carries_url(hub):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    url = api.create_repo("tester/twice")
    again = api.create_repo("tester/twice", exist_ok=True)
    assert str(again) == str(url)
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo("tester/twice")
    assert info.value.response.status_code == 409 and info.value.response.json()["url"] == str(url)


def test_transient_errors_are_retried(apt_cli, hub, exported, tmp_path, folder_bytes):
    hub.inject_fault(503, method="POST", path_contains="/api/repos/create", times=2)
    hub.inject_fault(429, method="POST", path_contains="/commit/", retry_after=0)
    result = apt_cli("hf", "push", exported, "tester/flaky")
    assert result.exit_code == 0, result.output
    assert "retrying" in result.stderr
    hub.inject_fault(502, method="GET", path_contains="/revision/", times=1)
    pulled = apt_cli("hf", "pull", "tester/flaky", tmp_path / "out")
    assert pulled.exit_code == 0, pulled.output
    assert folder_bytes(tmp_path / "out") == folder_bytes(exported)


def test_persistent_server_errors_give_up_with_a_clear_line(apt_cli, hub, exported):
    hub.inject_fault(500, method="POST", path_contains="/api/repos/create", times=100)
    result = apt_cli("--set", "hf.retries=1", "hf", "push", exported, "tester/down")
    assert result.exit_code == 2 and "answered 500" in result.stderr


def test_lfs_blob_with_wrong_sha256_is_rejected(hub):
    import httpx2
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=hub.token).create_repo("tester/lfs")
    oid = "0" * 64
    batch = httpx2.post(f"{hub.url}/tester/lfs.git/info/lfs/objects/batch",
                        headers={"Authorization": f"Bearer {hub.token}"},
                        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": 5}]})
    href = batch.json()["objects"][0]["actions"]["upload"]["href"]
    put = httpx2.put(href, content=b"hello")
    assert put.status_code == 400 and "sha256 mismatch" in put.headers["X-Error-Message"]
    assert not hub.has_blob(oid)


def test_export_push_and_import_from_the_hub(apt_cli, hub, apt_checkpoint, tmp_path):
    import torch

    from apt_core.checkpoint import load_checkpoint

    result = apt_cli("hf", "export", apt_checkpoint, tmp_path / "export", "--push", "tester/exported")
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in hub.repo("tester/exported").commits[hub.repo("tester/exported").branches["main"]].files
    imported = apt_cli("hf", "import", "tester/exported", tmp_path / "ckpt")
    assert imported.exit_code == 0, imported.output
    a, b = load_checkpoint(apt_checkpoint).model.state_dict(), load_checkpoint(tmp_path / "ckpt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
