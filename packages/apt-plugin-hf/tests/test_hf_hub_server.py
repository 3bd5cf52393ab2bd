"""The shared Hub-protocol test server answers the real ``HfApi`` calls other packages rely on."""

from __future__ import annotations

import pytest


def test_hfapi_surface(hub, tmp_path):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=hub.url, token=hub.token)
    assert api.whoami()["name"] == "tester"
    api.create_repo("apt-org/data", repo_type="dataset", private=True)
    big = b"\x00\x01" * 50_000  # binary: LFS
    info = api.create_commit(
        "apt-org/data", repo_type="dataset", commit_message="add",
        operations=[CommitOperationAdd("a/b.bin", big), CommitOperationAdd("notes.txt", b"hello\n")])
    assert info.oid == api.repo_info("apt-org/data", repo_type="dataset").sha
    assert api.list_repo_files("apt-org/data", repo_type="dataset") == [".gitattributes", "a/b.bin", "notes.txt"]
    entries = {e.path: e for e in api.list_repo_tree("apt-org/data", repo_type="dataset", recursive=True)}
    assert entries["a/b.bin"].lfs.sha256 and entries["notes.txt"].lfs is None
    assert api.file_exists("apt-org/data", "notes.txt", repo_type="dataset")
    assert not api.file_exists("apt-org/data", "nope.txt", repo_type="dataset")
    path = hf_hub_download("apt-org/data", "a/b.bin", repo_type="dataset", endpoint=hub.url, token=hub.token,
                           cache_dir=tmp_path / "cache")
    assert open(path, "rb").read() == big

    api.create_commit("apt-org/data", repo_type="dataset", commit_message="rm",
                      operations=[CommitOperationDelete("notes.txt")], parent_commit=info.oid)
    assert "notes.txt" not in api.list_repo_files("apt-org/data", repo_type="dataset")
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as stale:  # parentCommit no longer the head
        api.create_commit("apt-org/data", repo_type="dataset", commit_message="late",
                          operations=[CommitOperationAdd("x.txt", b"x")], parent_commit=info.oid)
    assert stale.value.response.status_code == 412
    with pytest.raises(RevisionNotFoundError):
        api.repo_info("apt-org/data", repo_type="dataset", revision="v9")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("apt-org/data", "gone.txt", repo_type="dataset", endpoint=hub.url, token=hub.token,
                        cache_dir=tmp_path / "cache")
    anonymous = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):  # private: invisible without the token
        anonymous.repo_info("apt-org/data", repo_type="dataset")
    api.delete_repo("apt-org/data", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info("apt-org/data", repo_type="dataset")
