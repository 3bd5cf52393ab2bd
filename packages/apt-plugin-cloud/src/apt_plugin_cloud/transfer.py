"""Backup and restore: the two transfers between a checkpoint directory and a store.

Guarantees (each one a test):
* a snapshot is visible only once all its objects are stored (manifest last, create-if-absent);
* an object already in the store is never uploaded again (re-backup of an unchanged checkpoint = 0 bytes);
* restore writes into a temporary sibling directory, checks every chunk's and every file's sha256,
  and renames into place only when all match; a manifest path escaping OUT is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from apt_core.errors import APTError

from .hashcache import HashCache
from .pipeline import ByteProgress, ordered_map
from .retry import NotFoundError, RetryPolicy, call_with_retry
from .store import (
    DEFAULT_CHUNK_SIZE,
    FORMAT,
    OBJECT_PREFIX,
    SNAPSHOT_PREFIX,
    STORE_KEY,
    ChunkRef,
    FileEntry,
    Manifest,
    chunk_spans,
    hash_chunk,
    manifest_key,
    new_manifest,
    object_key,
    safe_target,
    scan_checkpoint,
    validate_snapshot_name,
)

__all__ = ["TransferOptions", "BackupResult", "RestoreResult", "backup", "restore", "list_snapshots",
           "load_manifest", "fetch_object", "store_chunk_size"]

# Hub backends commit objects in batches of about this many bytes (one git commit each).
BATCH_BYTES = 256 * 1024 * 1024
CORRUPT_READ_ATTEMPTS = 3


@dataclass
class TransferOptions:
    """Knobs shared by every operation."""

    concurrency: int = 4
    progress: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # used only when a store is created
    #: Reuse the hashes of files whose size/mtime/ctime/inode did not change (see hashcache.py).
    hash_cache: bool = True


@dataclass
class BackupResult:
    name: str
    url: str
    files: int
    total_bytes: int
    uploaded_bytes: int
    uploaded_objects: int
    reused_objects: int
    seconds: float
    unchanged: bool = False

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class RestoreResult:
    name: str
    out: str
    files: int
    bytes: int
    seconds: float

    def to_json(self) -> dict:
        return self.__dict__.copy()


def _with_retry(fn, what: str, opts: TransferOptions):
    return call_with_retry(fn, what, opts.retry)


def store_chunk_size(backend, opts: TransferOptions, create: bool) -> int:
    """The store's chunk size from ``store.json``; creates the file (create-if-absent) when asked."""
    try:
        raw = _with_retry(lambda: backend.get(STORE_KEY), f"read {STORE_KEY}", opts)
    except NotFoundError:
        if not create:
            return opts.chunk_size
        body = json.dumps({"format": FORMAT, "chunk_size": opts.chunk_size}).encode()
        _with_retry(lambda: backend.put(STORE_KEY, body, if_absent=True), f"write {STORE_KEY}", opts)
        raw = _with_retry(lambda: backend.get(STORE_KEY), f"read {STORE_KEY}", opts)
    try:
        info = json.loads(raw)
        if info.get("format") != FORMAT:
            raise ValueError(f"format {info.get('format')!r}")
        return int(info["chunk_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise APTError(f"{backend.url}/{STORE_KEY} is not an APT backup store ({exc})") from None


def list_snapshots(backend, opts: TransferOptions | None = None) -> list[Manifest]:
    """Every snapshot in the store, oldest first."""
    opts = opts or TransferOptions()
    keys = _with_retry(lambda: [i.key for i in backend.list(SNAPSHOT_PREFIX)], "list snapshots", opts)
    names = [k[len(SNAPSHOT_PREFIX):-len(".json")] for k in keys if k.endswith(".json")]
    with ThreadPoolExecutor(max(1, min(opts.concurrency, 8))) as pool:
        manifests = list(pool.map(lambda n: load_manifest(backend, n, opts), names))
    return sorted(manifests, key=lambda m: (m.created, m.name))


def load_manifest(backend, name: str, opts: TransferOptions | None = None) -> Manifest:
    opts = opts or TransferOptions()
    key = manifest_key(name)
    try:
        raw = _with_retry(lambda: backend.get(key), f"read {key}", opts)
    except NotFoundError:
        raise APTError(f"no snapshot named {name!r} in {backend.url}") from None
    manifest = Manifest.from_bytes(raw, where=f"{backend.url}/{key}")
    if manifest.name != name:
        raise APTError(f"{backend.url}/{key} is corrupt: it names snapshot {manifest.name!r}")
    return manifest


def fetch_object(backend, sha256: str, size: int, opts: TransferOptions) -> bytes:
    """Download one object and check its size and sha256 against its name.

    A mismatch is read again (it may be corruption in transit); if every read disagrees the stored
    object is corrupt, and that is an error, never a silent success.
    """
    key = object_key(sha256)
    for attempt in range(1, CORRUPT_READ_ATTEMPTS + 1):
        data = _with_retry(lambda: backend.get(key), f"download {key}", opts)
        if len(data) == size and hash_chunk(data) == sha256:
            return data
        time.sleep(0.05 * attempt)
    raise APTError(f"object {sha256[:12]}… in {backend.url} is corrupt: sha256/size mismatch on "
                   f"{CORRUPT_READ_ATTEMPTS} reads (run 'apt-model backups verify')")


def _default_name(directory: Path) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in directory.resolve().name).lstrip("._-")
    return name or "checkpoint"


def backup(directory: Path, backend, name: str | None = None, opts: TransferOptions | None = None,
           source_label: str | None = None, on_conflict: str | None = None) -> BackupResult:
    """Back up checkpoint *directory* into *backend* as snapshot *name* (default: the directory's name).

    Identical content under a taken name is reported as unchanged (nothing new is written). Other
    content under a taken name is an error (``on_conflict="error"``, the default for an explicit
    name) or gets a UTC timestamp suffix (``"suffix"``, the default without one).
    """
    opts = opts or TransferOptions()
    started = time.monotonic()
    directory = Path(directory)
    files = scan_checkpoint(directory)
    explicit = (on_conflict or ("error" if name is not None else "suffix")) == "error"
    name = validate_snapshot_name(name if name is not None else _default_name(directory))
    chunk_size = store_chunk_size(backend, opts, create=True)

    existing = set(_with_retry(lambda: [i.key for i in backend.list(OBJECT_PREFIX)], "list objects", opts))
    claimed: set[str] = set()
    lock = threading.Lock()
    stats = {"bytes": 0, "objects": 0, "reused": 0}
    total = sum(size for _, _, size in files)
    batch: list[tuple[str, bytes]] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if batch:
            items = batch
            _with_retry(lambda: backend.put_many(items), f"upload {len(items)} objects", opts)
            progress.update(sum(len(d) for _, d in items))
            batch, batch_bytes = [], 0

    def process(span: tuple[Path, int, int]) -> tuple[ChunkRef, bytes, bool]:
        path, offset, length = span
        with open(path, "rb") as fh:
            data = os.pread(fh.fileno(), length, offset) if length else b""
        if len(data) != length:
            raise APTError(f"{path} changed while it was being backed up")
        sha = hash_chunk(data)
        key = object_key(sha)
        with lock:
            # claimed: a chunk repeated inside this checkpoint (e.g. zero padding) is uploaded once.
            fresh = key not in existing and key not in claimed
            claimed.add(key)
            stats["objects" if fresh else "reused"] += 1
            stats["bytes"] += length if fresh else 0
        if fresh and not backend.prefers_batches:
            _with_retry(lambda: backend.put(key, data), f"upload {key}", opts)
        if not (fresh and backend.prefers_batches):
            progress.update(length)
        return ChunkRef(sha, length), data, fresh

    entries: list[FileEntry] = []
    cache = HashCache() if opts.hash_cache else None
    progress = ByteProgress(total, f"backup {name}", opts.progress)
    with progress, ThreadPoolExecutor(max(1, min(opts.concurrency, backend.max_parallel))) as pool:
        for rel, path, size in files:
            st = os.stat(path)
            cached = cache.lookup(path, st, chunk_size) if cache else None
            if cached and all(object_key(c.sha256) in existing for c in cached[1]):
                # Unchanged since it was hashed, and every chunk is already stored: nothing to read.
                entries.append(FileEntry(rel, size, cached[0], cached[1]))
                stats["reused"] += len(cached[1])
                progress.update(size)
                continue
            whole = hashlib.sha256()
            chunks: list[ChunkRef] = []
            spans = ((path, off, ln) for off, ln in chunk_spans(size, chunk_size))
            for ref, data, fresh in ordered_map(pool, process, spans, window=max(2, opts.concurrency * 2)):
                whole.update(data)
                chunks.append(ref)
                if fresh and backend.prefers_batches:
                    batch.append((object_key(ref.sha256), data))
                    batch_bytes += len(data)
                    if batch_bytes >= BATCH_BYTES:
                        flush()
            after = os.stat(path)
            if after.st_size != size:
                raise APTError(f"{path} changed while it was being backed up")
            entries.append(FileEntry(rel, size, whole.hexdigest(), chunks))
            if cache and (after.st_mtime_ns, after.st_ctime_ns) == (st.st_mtime_ns, st.st_ctime_ns):
                cache.store(path, st, chunk_size, whole.hexdigest(), chunks)
        flush()

    manifest = new_manifest(name, entries, chunk_size, directory.resolve())
    if source_label:
        manifest.source["label"] = source_label
    result = BackupResult(name, backend.url, len(entries), total, stats["bytes"], stats["objects"],
                          stats["reused"], 0.0)
    result.name = _publish(backend, manifest, explicit, opts, result)
    if cache:
        cache.save()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _publish(backend, manifest: Manifest, explicit: bool, opts: TransferOptions, result: BackupResult) -> str:
    """Write the manifest create-if-absent; handle a name that is already taken."""
    for _ in range(3):
        key = manifest_key(manifest.name)
        raw = manifest.to_bytes()
        created = _with_retry(lambda key=key, raw=raw: backend.put(key, raw, if_absent=True), f"write {key}", opts)
        if created:
            return manifest.name
        current = load_manifest(backend, manifest.name, opts)
        if current.content_equal(manifest):
            result.unchanged = True
            return manifest.name
        if explicit:
            raise APTError(f"snapshot {manifest.name!r} already exists in {backend.url} with different content; "
                           f"choose another --name")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        manifest.name = f"{manifest.name.split('@')[0][:150]}-{stamp}"
    raise APTError(f"could not find a free snapshot name in {backend.url}")


def restore(backend, name: str, out: Path, opts: TransferOptions | None = None) -> RestoreResult:
    """Restore snapshot *name* into directory *out* (which must not exist or be empty)."""
    opts = opts or TransferOptions()
    started = time.monotonic()
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise APTError(f"{out} already exists and is not an empty directory; restore into a new directory")
    manifest = load_manifest(backend, name, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.restore-", dir=out.parent))
    try:
        targets = [(entry, safe_target(staging, entry.path)) for entry in manifest.files]
        progress = ByteProgress(manifest.total_size, f"restore {name}", opts.progress)
        with progress, ThreadPoolExecutor(max(1, min(opts.concurrency, backend.max_parallel))) as pool:
            def download(ref: ChunkRef) -> bytes:
                data = fetch_object(backend, ref.sha256, ref.size, opts) if ref.size else b""
                if not ref.size and ref.sha256 != hash_chunk(b""):
                    raise APTError(f"manifest of {name!r} is corrupt: empty chunk with a non-empty hash")
                progress.update(ref.size)
                return data

            for entry, target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                whole = hashlib.sha256()
                with open(target, "wb") as fh:
                    for data in ordered_map(pool, download, entry.chunks, window=max(2, opts.concurrency * 2)):
                        whole.update(data)
                        fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                if whole.hexdigest() != entry.sha256 or target.stat().st_size != entry.size:
                    raise APTError(f"restored {entry.path} does not match its sha256 in snapshot {name!r}")
        _rename_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoreResult(name, str(out), len(manifest.files), manifest.total_size,
                         round(time.monotonic() - started, 3))


def _rename_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        out.rmdir()  # empty (checked above); rename() cannot replace a directory portably
    os.rename(staging, out)
