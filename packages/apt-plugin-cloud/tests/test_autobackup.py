"""Automatic backup on apt_checkpoint_saved: background uploads, reported at apt_train_end."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
from cloud_testlib import tree_bytes, write_checkpoint

from apt_core.errors import APTError
from apt_plugin_cloud import autobackup
from apt_plugin_cloud.settings import open_store, validate_settings
from apt_plugin_cloud.transfer import list_snapshots, restore


@pytest.fixture(autouse=True)
def fresh_worker(monkeypatch):
    monkeypatch.setattr(autobackup, "_worker", None)


def test_checkpoint_hook_returns_at_once_and_train_end_waits(cloud_plugin_manager, s3_env, fault_proxy,
                                                             tmp_path, monkeypatch):
    s3_env.create_bucket("apt-tests")
    slow = f"s3://apt-tests/auto-{time.time_ns()}?endpoint_url={fault_proxy.endpoint}"
    local = f"file://{tmp_path}/store"
    monkeypatch.setenv("APT_CLOUD__AUTO_BACKUP", f'["{local}", "{slow}"]')
    fault_proxy.add("delay", method="PUT", times=10_000, seconds=0.3)  # every S3 write takes 0.3 s
    pm = cloud_plugin_manager
    trainer = SimpleNamespace()
    run = tmp_path / "run1"
    for step in (2, 4):
        ckpt = write_checkpoint(run / f"checkpoint-{step}", seed=step, model_mb=2)
        started = time.monotonic()
        pm.hook.apt_checkpoint_saved(trainer=trainer, path=ckpt)
        assert time.monotonic() - started < 0.3, "training must not wait for uploads"
    # Retention may delete a checkpoint while its upload is still queued: the staged copy survives.
    original = tree_bytes(run / "checkpoint-2")
    import shutil

    shutil.rmtree(run / "checkpoint-2")
    assert autobackup.get_worker().pending >= 1
    pm.hook.apt_train_end(trainer=trainer, metrics={})
    assert autobackup.get_worker().pending == 0
    for url in (local, slow):
        store = open_store(url, validate_settings({}))
        assert [m.name for m in list_snapshots(store)] == ["run1-checkpoint-2", "run1-checkpoint-4"]
    restore(open_store(slow, validate_settings({})), "run1-checkpoint-2", tmp_path / "out", None)
    assert tree_bytes(tmp_path / "out") == original
    assert not (run / autobackup.STAGING_DIR).exists()


def test_failed_auto_backup_is_reported_clearly(cloud_plugin_manager, s3_env, tmp_path, monkeypatch, capsys,
                                                caplog):
    s3_env.create_bucket("apt-tests")
    monkeypatch.setenv("APT_CLOUD__AUTO_BACKUP", f'["s3://apt-tests/denied?endpoint_url={s3_env.endpoint}"]')
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-123456")
    caplog.set_level(logging.DEBUG)
    pm = cloud_plugin_manager
    pm.hook.apt_checkpoint_saved(trainer=None, path=write_checkpoint(tmp_path / "run" / "checkpoint-1"))
    with pytest.raises(APTError, match="auto-backup failed for 1 of 1 uploads.*access denied"):
        pm.hook.apt_train_end(trainer=None, metrics={})
    err = capsys.readouterr().err
    assert "auto-backup FAILED: checkpoint-1 -> s3://apt-tests/denied" in err
    assert "not-the-right-secret-123456" not in err + caplog.text


def test_real_trainer_backs_up_every_checkpoint(cloud_plugin_manager, s3_url, tmp_path, monkeypatch, capsys):
    """The core Trainer fires the hooks; every checkpoint lands in both stores and restores byte-identical."""
    torch = pytest.importorskip("torch")
    from apt_core.model import APTConfig, APTModel
    from apt_core.tokenizer import APTTokenizer
    from apt_core.training import Trainer, TrainingArguments

    local = f"file://{tmp_path}/store"
    monkeypatch.setenv("APT_CLOUD__AUTO_BACKUP", f'["{local}", "{s3_url}"]')
    tokenizer = APTTokenizer.byte_level()
    torch.manual_seed(0)
    model = APTModel(APTConfig.preset("tiny"))
    data = torch.randint(0, 256, (4096,))
    args = TrainingArguments(out_dir=str(tmp_path / "run"), max_steps=4, save_every=2, keep_last=1, batch_size=2,
                             seq_len=16, warmup_steps=1, log_every=100, progress=False, device="cpu")
    Trainer(model, args, data, tokenizer=tokenizer).train()
    err = capsys.readouterr().err
    assert err.count("auto-backup: checkpoint-") >= 4, err
    latest = (tmp_path / "run" / "latest").read_text().strip()
    for url in (local, s3_url):
        store = open_store(url, validate_settings({}))
        names = [m.name for m in list_snapshots(store)]
        assert names == ["run-checkpoint-0000002", "run-checkpoint-0000004"] and f"run-{latest}" in names
        out = tmp_path / f"restored-{names.index(f'run-{latest}')}-{url[:2]}"
        restore(store, f"run-{latest}", out, None)
        assert tree_bytes(out) == tree_bytes(tmp_path / "run" / latest)
