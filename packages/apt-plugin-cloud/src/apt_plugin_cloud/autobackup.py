"""Automatic backup of every checkpoint the core trainer saves, in a background thread.

``apt_checkpoint_saved`` only *stages* the checkpoint (hard links into a hidden sibling directory,
milliseconds, so training does not wait, and the trainer's retention may delete the original while
the upload runs) and queues it. One worker thread uploads queued checkpoints to every
``[plugins.cloud] auto_backup`` URL in order. ``apt_train_end`` waits for the queue to drain and
reports each upload; failures are reported loudly and, with ``fail_on_error`` (default), end the
command with an error after training completed. A process exiting without ``apt_train_end``
(a crash, Ctrl-C) still waits for pending uploads at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from apt_core.errors import APTError, redact

__all__ = ["AutoBackup", "JobResult", "get_worker", "on_checkpoint_saved", "on_train_end", "STAGING_DIR"]

log = logging.getLogger("apt_plugin_cloud.autobackup")
STAGING_DIR = ".apt-cloud-staging"


@dataclass
class JobResult:
    checkpoint: str
    url: str
    name: str = ""
    ok: bool = False
    uploaded_bytes: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    unchanged: bool = False
    error: str = ""


def snapshot_name(path: Path) -> str:
    """``<run dir>-<checkpoint dir>``, e.g. ``exp1-checkpoint-100``."""
    raw = f"{path.parent.name}-{path.name}" if path.parent.name else path.name
    clean = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw).strip("._-")
    return clean[:200] or "checkpoint"


def stage(path: Path) -> Path:
    """Hard-link the checkpoint's files into a private directory (copy where links are impossible)."""
    staging = path.parent / STAGING_DIR / f"{path.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    for src in sorted(path.rglob("*")):
        if src.is_dir() or src.is_symlink():
            continue
        dst = staging / src.relative_to(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return staging


class AutoBackup:
    """A queue of staged checkpoints and the daemon thread that uploads them."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._results: list[JobResult] = []
        self._lock = threading.Lock()
        self._stores: dict[str, object] = {}
        self._thread: threading.Thread | None = None

    def enqueue(self, path: Path, urls: list[str], config: dict) -> None:
        staging = stage(Path(path))
        self._queue.put((Path(path), staging, list(urls), config))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="apt-auto-backup", daemon=True)
                self._thread.start()

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._upload(*job)
            finally:
                self._queue.task_done()

    def _upload(self, path: Path, staging: Path, urls: list[str], config: dict) -> None:
        from .settings import open_store, transfer_options
        from .transfer import backup

        try:
            for url in urls:
                result = JobResult(str(path), redact(url.split("?")[0]))
                started = time.monotonic()
                try:
                    store = self._stores.get(url)
                    if store is None:
                        store = self._stores[url] = open_store(url, config)
                    done = backup(staging, store, name=snapshot_name(path),
                                  opts=transfer_options(config, progress=False), source_label=str(path),
                                  on_conflict="suffix")
                    result.name, result.ok, result.unchanged = done.name, True, done.unchanged
                    result.uploaded_bytes, result.total_bytes = done.uploaded_bytes, done.total_bytes
                    log.info("auto-backup %s -> %s as %s (%d bytes uploaded)", path, result.url, done.name,
                             done.uploaded_bytes)
                except Exception as exc:  # noqa: BLE001 - reported at train end, never lost
                    result.error = redact(f"{type(exc).__name__}: {exc}" if not isinstance(exc, APTError) else str(exc))
                    log.error("auto-backup of %s to %s failed: %s", path, result.url, result.error)
                result.seconds = round(time.monotonic() - started, 3)
                with self._lock:
                    self._results.append(result)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                staging.parent.rmdir()  # only succeeds once the last staged checkpoint is gone
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        """Block until every queued checkpoint is uploaded (or *timeout*); return and clear the results."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.05)
        with self._lock:
            results, self._results = self._results, []
        return results


_worker: AutoBackup | None = None
_worker_lock = threading.Lock()


def get_worker() -> AutoBackup:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = AutoBackup()
            atexit.register(_drain_at_exit)
        return _worker


def _drain_at_exit() -> None:
    if _worker is not None and _worker.pending:
        click.echo(f"apt-model: waiting for {_worker.pending} pending auto-backup(s) (Ctrl-C abandons them)",
                   err=True)
        try:
            report(_worker.wait(), fail=False)
        except KeyboardInterrupt:
            pass


def on_checkpoint_saved(trainer, path) -> None:
    """Queue *path* for upload to every auto_backup URL (returns immediately)."""
    from .settings import cloud_config

    config = cloud_config()
    if config["auto_backup"]:
        get_worker().enqueue(Path(path), config["auto_backup"], config)


def on_train_end(trainer, metrics) -> list[JobResult]:
    """Wait for pending uploads and report them; raise APTError on failures when fail_on_error."""
    if _worker is None:
        return []
    from .settings import cloud_config

    results = _worker.wait()
    report(results, fail=cloud_config()["fail_on_error"])
    return results


def report(results: list[JobResult], fail: bool) -> None:
    if not results:
        return
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            what = "unchanged" if r.unchanged else f"{r.uploaded_bytes / 1e6:.1f} MB uploaded"
            click.echo(f"auto-backup: {Path(r.checkpoint).name} -> {r.url} as {r.name} ({what}, {r.seconds:.1f}s)",
                       err=True)
        else:
            click.echo(f"auto-backup FAILED: {Path(r.checkpoint).name} -> {r.url}: {r.error}", err=True)
    if failed and fail:
        raise APTError(f"auto-backup failed for {len(failed)} of {len(results)} uploads (training itself completed; "
                       f"the checkpoints are on local disk): {failed[0].error}")
