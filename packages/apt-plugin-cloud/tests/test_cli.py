"""The commands through apt-model (apt_core.testing's apt_cli), plus sync, prune, config and lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cloud_testlib import tree_bytes, write_checkpoint

from apt_core.errors import APTError
from apt_plugin_cloud.settings import open_store, validate_settings
from apt_plugin_cloud.store import Manifest, manifest_key, object_key


def test_backup_list_restore_verify(apt_cli, checkpoint, tmp_path):
    url = f"file://{tmp_path}/store"
    first = apt_cli("backup", checkpoint, url, "--name", "demo", "--json", "-q")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["uploaded_bytes"] > 0
    again = apt_cli("backup", checkpoint, url, "--name", "demo", "--json", "-q")
    assert json.loads(again.stdout)["uploaded_bytes"] == 0 and json.loads(again.stdout)["unchanged"]
    listed = apt_cli("backups", "list", url, "--json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["demo"]
    restored = apt_cli("restore", url, "demo", tmp_path / "out", "-q")
    assert restored.exit_code == 0, restored.output
    assert tree_bytes(tmp_path / "out") == tree_bytes(checkpoint)
    verified = apt_cli("backups", "verify", url, "-q")
    assert verified.exit_code == 0 and "OK" in verified.stdout


def test_flipped_byte_fails_loudly_through_cli(apt_cli, checkpoint, tmp_path):
    url = f"file://{tmp_path}/store"
    assert apt_cli("backup", checkpoint, url, "--name", "demo", "-q").exit_code == 0
    manifest = Manifest.from_bytes((tmp_path / "store" / manifest_key("demo")).read_bytes())
    victim = tmp_path / "store" / object_key(manifest.files[0].chunks[0].sha256)
    data = bytearray(victim.read_bytes())
    data[0] ^= 0x40
    victim.write_bytes(bytes(data))
    verified = apt_cli("backups", "verify", url, "demo", "-q")
    assert verified.exit_code == 2 and "1 corrupt" in verified.stderr and "corrupt: objects/" in verified.stderr
    restored = apt_cli("restore", url, "demo", tmp_path / "out", "-q")
    assert restored.exit_code == 2 and "corrupt" in restored.stderr
    assert "Traceback" not in restored.output
    assert not (tmp_path / "out").exists()


def test_user_errors_are_one_line(apt_cli, tmp_path):
    result = apt_cli("backup", tmp_path / "missing", f"file://{tmp_path}/s", "-q")
    assert result.exit_code == 2 and result.stderr.strip().startswith("error:") and "not found" in result.stderr
    result = apt_cli("restore", f"file://{tmp_path}/s", "nope", tmp_path / "o", "-q")
    assert result.exit_code == 2 and "no snapshot named 'nope'" in result.stderr
    result = apt_cli("backups", "list", "ftp://x/y")
    assert result.exit_code == 2 and "unknown storage scheme 'ftp'" in result.stderr


def test_run_directory_backs_up_latest(apt_cli, tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run / "checkpoint-2", seed=1)
    write_checkpoint(run / "checkpoint-4", seed=2)
    (run / "latest").write_text("checkpoint-4\n")
    result = apt_cli("backup", run, f"file://{tmp_path}/store", "-q", "--json")
    assert json.loads(result.stdout)["name"] == "checkpoint-4"


def test_sync_is_verified_idempotent_and_resumable(apt_cli, s3_url, tmp_path):
    src = f"file://{tmp_path}/src"
    for i in range(2):
        apt_cli("backup", write_checkpoint(tmp_path / f"ck{i}", seed=i), src, "--name", f"s{i}", "-q")
    first = apt_cli("sync", src, s3_url, "--json", "-q")
    assert first.exit_code == 0, first.output
    assert sorted(json.loads(first.stdout)["copied_snapshots"]) == ["s0", "s1"]
    second = json.loads(apt_cli("sync", src, s3_url, "--json", "-q").stdout)
    assert second["copied_objects"] == 0 and sorted(second["skipped_snapshots"]) == ["s0", "s1"]
    # Simulate an interrupted sync: a snapshot's manifest and some of its objects are missing.
    dst = open_store(s3_url, validate_settings({}))
    dst.delete(manifest_key("s1"))
    s1 = Manifest.from_bytes(open_store(src, validate_settings({})).get(manifest_key("s1")))
    for sha in list(s1.objects())[:2]:
        dst.delete(object_key(sha))
    third = json.loads(apt_cli("sync", src, s3_url, "--json", "-q").stdout)
    assert third["copied_snapshots"] == ["s1"] and third["copied_objects"] == 2
    assert apt_cli("backups", "verify", s3_url, "-q").exit_code == 0
    apt_cli("restore", s3_url, "s1", tmp_path / "out", "-q")
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "ck1")


def test_sync_refuses_corrupt_source(apt_cli, tmp_path, checkpoint):
    src, dst = f"file://{tmp_path}/src", f"file://{tmp_path}/dst"
    apt_cli("backup", checkpoint, src, "--name", "s", "-q")
    manifest = Manifest.from_bytes((tmp_path / "src" / manifest_key("s")).read_bytes())
    victim = tmp_path / "src" / object_key(manifest.files[-1].chunks[0].sha256)
    victim.write_bytes(b"X" + victim.read_bytes()[1:])
    result = apt_cli("sync", src, dst, "-q")
    assert result.exit_code == 2 and "corrupt" in result.stderr
    assert not (tmp_path / "dst" / manifest_key("s")).exists()


def test_prune_keeps_what_kept_snapshots_need(apt_cli, tmp_path):
    url = f"file://{tmp_path}/store"
    ck = write_checkpoint(tmp_path / "ck", seed=0)
    for i in range(3):
        (ck / "trainer_state.json").write_text(json.dumps({"step": i}))
        (ck / f"extra-{i}.bin").write_bytes(bytes([i]) * 1000)
        assert apt_cli("backup", ck, url, "--name", f"s{i}", "-q").exit_code == 0
    before = {p.name for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()}
    dry = json.loads(apt_cli("backups", "prune", url, "--keep", "1", "--grace", "0", "--dry-run", "--json").stdout)
    assert dry["deleted_snapshots"] == ["s0", "s1"] and dry["deleted_objects"] == 2
    assert {p.name for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file()} == before
    result = json.loads(apt_cli("backups", "prune", url, "--keep", "1", "--grace", "0", "--json").stdout)
    assert result["kept"] == ["s2"] and result["deleted_objects"] == 2  # the two old trainer_state.json
    assert apt_cli("backups", "verify", url, "-q").exit_code == 0
    apt_cli("restore", url, "s2", tmp_path / "out", "-q")
    assert tree_bytes(tmp_path / "out") == tree_bytes(ck)
    # With the default grace period fresh unreferenced objects are spared.
    apt_cli("backup", ck, url, "--name", "s3", "-q")
    (tmp_path / "store" / manifest_key("s3")).unlink()
    spared = json.loads(apt_cli("backups", "prune", url, "--keep", "1", "--json").stdout)
    assert spared["deleted_objects"] == 0


def test_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(APTError, match=r"pip install 'apt-plugin-cloud\[s3\]'"):
        open_store("s3://bucket/prefix", validate_settings({}))


def test_plugin_module_imports_no_sdk_and_no_torch():
    code = ("import sys, apt_plugin_cloud.plugin, apt_plugin_cloud.commands, apt_plugin_cloud.settings\n"
            "heavy = [m for m in ('torch', 'boto3', 'botocore', 'oss2', 'huggingface_hub', 'modelscope') "
            "if m in sys.modules]\nprint(heavy)\nassert not heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("section,message", [
    ({"auto_backup": "not-a-url"}, "not a store URL"),
    ({"concurrency": 0}, "between 1 and 64"),
    ({"s3": {"checksum": "crc99"}}, "checksum must be one of"),
    ({"s3": {"secret_access_key": "x"}}, "credentials come from the environment"),
    ({"endpoints": {"ftp://x": {}}}, "expected a table"),
    ({"endpoints": {"s3://x": {"concurrency": 0}}}, "concurrency must be an integer"),
    ({"bogus": 1}, "unknown key"),
])
def test_config_validation(section, message):
    with pytest.raises(APTError, match=message):
        validate_settings(section)


def test_per_endpoint_settings_and_env(apt_cli, monkeypatch):
    from apt_plugin_cloud.settings import cloud_config, settings_for

    monkeypatch.setenv("APT_CLOUD__AUTO_BACKUP", '["file:///tmp/a", "s3://b/x"]')
    config = cloud_config()
    assert config["auto_backup"] == ["file:///tmp/a", "s3://b/x"]
    config["endpoints"] = {"s3://legacy": {"checksum": "when_required", "concurrency": 2}}
    assert settings_for("s3://legacy/x", config)["checksum"] == "when_required"
    assert settings_for("s3://legacy/x", config)["concurrency"] == 2
    assert settings_for("s3://other/x", config)["concurrency"] == 4
    assert settings_for("s3://other/x", config)["checksum"] == "sha256"
    assert settings_for("s3://other/x?checksum=md5", config)["checksum"] == "md5"


def test_demo_real_checkpoint(apt_cli, tiny_checkpoint, tmp_path):
    """The README demo on a real APT checkpoint: back up, restore, verify, and the restored copy loads."""
    url = f"file://{tmp_path}/backups"
    assert apt_cli("backup", tiny_checkpoint, url, "--name", "demo", "-q").exit_code == 0
    assert apt_cli("restore", url, "demo", tmp_path / "restored", "-q").exit_code == 0
    assert apt_cli("backups", "verify", url, "demo", "-q").exit_code == 0
    assert tree_bytes(tmp_path / "restored") == tree_bytes(tiny_checkpoint)
    info = apt_cli("info", tmp_path / "restored")
    assert info.exit_code == 0, info.output
