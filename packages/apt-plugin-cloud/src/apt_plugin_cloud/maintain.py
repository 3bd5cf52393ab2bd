"""Store maintenance: verify (re-hash stored objects), sync (copy snapshots between stores), prune."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from apt_core.errors import APTError

from .pipeline import ByteProgress, ordered_map
from .retry import NotFoundError
from .store import OBJECT_PREFIX, Manifest, hash_chunk, manifest_key, object_key
from .transfer import (
    BATCH_BYTES,
    TransferOptions,
    _with_retry,
    fetch_object,
    list_snapshots,
    load_manifest,
    store_chunk_size,
)

__all__ = ["VerifyReport", "SyncResult", "PruneResult", "verify", "sync", "prune"]


@dataclass
class VerifyReport:
    snapshots: list[str]
    objects_checked: int = 0
    bytes_checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    bad_manifests: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.bad_manifests)

    def to_json(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def verify(backend, name: str | None = None, opts: TransferOptions | None = None) -> VerifyReport:
    """Re-download and re-hash every object the snapshot(s) need; report missing and corrupt ones."""
    opts = opts or TransferOptions()
    report = VerifyReport(snapshots=[])
    manifests: list[Manifest] = []
    if name is not None:
        manifests.append(load_manifest(backend, name, opts))
    else:
        keys = _with_retry(lambda: [i.key for i in backend.list("snapshots/")], "list snapshots", opts)
        for key in keys:
            snap = key[len("snapshots/"):-len(".json")]
            try:
                manifests.append(load_manifest(backend, snap, opts))
            except APTError as exc:
                report.bad_manifests.append(f"{snap}: {exc}")
    report.snapshots = [m.name for m in manifests]
    needed: dict[str, int] = {}
    for m in manifests:
        needed.update(m.objects())
    lock = threading.Lock()
    progress = ByteProgress(sum(needed.values()), "verify", opts.progress)

    def check(item: tuple[str, int]) -> None:
        sha, size = item
        key = object_key(sha)
        try:
            # A mismatch is read again before it is called corrupt: it may have happened in transit.
            for _ in range(3):
                data = _with_retry(lambda: backend.get(key), f"download {key}", opts)
                good = len(data) == size and hash_chunk(data) == sha
                if good:
                    break
        except NotFoundError:
            with lock:
                report.missing.append(sha)
            return
        with lock:
            report.objects_checked += 1
            report.bytes_checked += len(data)
            if not good:
                report.corrupt.append(sha)
        progress.update(size)

    with progress, ThreadPoolExecutor(max(1, min(opts.concurrency, backend.max_parallel))) as pool:
        list(pool.map(check, sorted(needed.items())))
    return report


@dataclass
class SyncResult:
    copied_snapshots: list[str]
    skipped_snapshots: list[str]
    copied_objects: int
    copied_bytes: int
    seconds: float

    def to_json(self) -> dict:
        return self.__dict__.copy()


def sync(src, dst, opts: TransferOptions | None = None, names: list[str] | None = None) -> SyncResult:
    """Copy snapshots missing in *dst* from *src*; objects are verified on the way and sent once.

    Idempotent and resumable: a re-run skips objects and snapshots *dst* already has, and a snapshot
    becomes visible in *dst* only after all its objects are there.
    """
    opts = opts or TransferOptions()
    started = time.monotonic()
    src_chunk = store_chunk_size(src, opts, create=False)
    # The destination adopts the source's chunk size when it is new, so deduplication keeps working.
    store_chunk_size(dst, TransferOptions(concurrency=opts.concurrency, progress=False, retry=opts.retry,
                                          chunk_size=src_chunk), create=True)
    manifests = list_snapshots(src, opts) if names is None else [load_manifest(src, n, opts) for n in names]
    dst_objects = set(_with_retry(lambda: [i.key for i in dst.list(OBJECT_PREFIX)], "list objects", opts))
    result = SyncResult([], [], 0, 0, 0.0)
    for manifest in manifests:
        try:
            current = load_manifest(dst, manifest.name, opts)
        except APTError:
            current = None
        if current is not None:
            if not current.content_equal(manifest):
                raise APTError(f"snapshot {manifest.name!r} exists in {dst.url} with different content; not copied")
            result.skipped_snapshots.append(manifest.name)
            continue
        todo = {sha: size for sha, size in manifest.objects().items() if object_key(sha) not in dst_objects}
        _copy_objects(src, dst, sorted(todo.items()), f"sync {manifest.name}", opts, result)
        dst_objects.update(object_key(sha) for sha in todo)
        if _publish_copy(dst, manifest, opts):
            result.copied_snapshots.append(manifest.name)
        else:
            result.skipped_snapshots.append(manifest.name)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _copy_objects(src, dst, todo: list[tuple[str, int]], label: str, opts: TransferOptions,
                  result: SyncResult) -> None:
    """Copy objects src -> dst in parallel, each re-hashed on the way; hub stores get batched commits."""
    lock = threading.Lock()
    batch: list[tuple[str, bytes]] = []
    progress = ByteProgress(sum(size for _, size in todo), label, opts.progress)

    def fetch(item: tuple[str, int]) -> tuple[str, bytes]:
        sha, size = item
        data = fetch_object(src, sha, size, opts)
        if not dst.prefers_batches:
            key = object_key(sha)
            _with_retry(lambda: dst.put(key, data), f"upload {key}", opts)
            progress.update(size)
            with lock:
                result.copied_objects += 1
                result.copied_bytes += size
        return sha, data

    def flush() -> None:
        items = list(batch)
        batch.clear()
        if items:
            _with_retry(lambda: dst.put_many(items), f"upload {len(items)} objects", opts)
            with lock:
                result.copied_objects += len(items)
                result.copied_bytes += sum(len(d) for _, d in items)
            progress.update(sum(len(d) for _, d in items))

    workers = max(1, min(opts.concurrency, src.max_parallel, dst.max_parallel))
    with progress, ThreadPoolExecutor(workers) as pool:
        for sha, data in ordered_map(pool, fetch, todo, window=max(2, opts.concurrency * 2)):
            if dst.prefers_batches:
                batch.append((object_key(sha), data))
                if sum(len(d) for _, d in batch) >= BATCH_BYTES:
                    flush()
        flush()


def _publish_copy(dst, manifest: Manifest, opts: TransferOptions) -> bool:
    """Write the manifest create-if-absent; False if an identical one was already there."""
    key, raw = manifest_key(manifest.name), manifest.to_bytes()
    if _with_retry(lambda: dst.put(key, raw, if_absent=True), f"write {key}", opts):
        return True
    if not load_manifest(dst, manifest.name, opts).content_equal(manifest):
        raise APTError(f"snapshot {manifest.name!r} appeared in {dst.url} with different content")
    return False


@dataclass
class PruneResult:
    kept: list[str]
    deleted_snapshots: list[str]
    deleted_objects: int
    freed_bytes: int
    aborted_uploads: int
    dry_run: bool

    def to_json(self) -> dict:
        return self.__dict__.copy()


def prune(backend, keep: int, opts: TransferOptions | None = None, grace_s: float = 3600.0,
          dry_run: bool = False) -> PruneResult:
    """Keep the *keep* newest snapshots; delete the others, then every object no remaining snapshot needs.

    Manifests go first, objects after, and the set of needed objects is computed from a fresh listing
    taken after the manifests are gone, so a snapshot published meanwhile is respected. Unreferenced
    objects younger than *grace_s* are left alone: they may belong to a backup still uploading.
    """
    if keep < 1:
        raise APTError("--keep must be at least 1")
    opts = opts or TransferOptions()
    manifests = list_snapshots(backend, opts)
    doomed = manifests[:-keep] if len(manifests) > keep else []
    kept = [m.name for m in manifests[len(doomed):]]
    if not dry_run:
        for key in [manifest_key(m.name) for m in doomed]:
            _with_retry(lambda key=key: backend.delete(key), f"delete {key}", opts)
    remaining = list_snapshots(backend, opts)
    if dry_run:
        remaining = [m for m in remaining if m.name not in {d.name for d in doomed}]
    needed = {object_key(sha) for m in remaining for sha in m.objects()}
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
    objects = _with_retry(lambda: list(backend.list(OBJECT_PREFIX)), "list objects", opts)
    garbage = [o for o in objects if o.key not in needed and (o.modified is None or o.modified <= cutoff)]
    if not dry_run and garbage:
        keys = [o.key for o in garbage]
        _with_retry(lambda: backend.delete_many(keys), f"delete {len(keys)} objects", opts)
    aborted = 0 if dry_run else backend.abort_incomplete_uploads(grace_s)
    return PruneResult(kept, [m.name for m in doomed], len(garbage), sum(o.size for o in garbage), aborted, dry_run)
