"""The store format: content-addressed objects plus one manifest per snapshot.

Layout under a store URL::

    store.json                      format marker and chunk size (written once, create-if-absent)
    objects/<sha256[:2]>/<sha256>   one object per chunk; a file smaller than a chunk is one object
    snapshots/<name>.json           manifest: files, sizes, sha256, chunk list, created, source

Why this shape: an object's key is the sha256 of its bytes, so an unchanged chunk is never uploaded
twice and any stored object can be re-hashed against its own name. The manifest is written last and
create-if-absent, so a snapshot is visible only once every object it names is stored.
Fixed-size chunks (not content-defined) are enough for checkpoints: a changed tensor in a safetensors
file keeps every other tensor at the same offset, so only the chunks covering it change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from apt_core.errors import APTError

__all__ = [
    "FORMAT",
    "DEFAULT_CHUNK_SIZE",
    "STORE_KEY",
    "ChunkRef",
    "FileEntry",
    "Manifest",
    "object_key",
    "manifest_key",
    "validate_snapshot_name",
    "safe_target",
    "scan_checkpoint",
    "hash_chunk",
]

FORMAT = "apt-backup/1"
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
STORE_KEY = "store.json"
SNAPSHOT_PREFIX = "snapshots/"
OBJECT_PREFIX = "objects/"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def object_key(sha256: str) -> str:
    """Key of the object whose bytes hash to *sha256*."""
    if not _SHA_RE.match(sha256):
        raise APTError(f"invalid object id {sha256!r} in manifest")
    return f"{OBJECT_PREFIX}{sha256[:2]}/{sha256}"


def manifest_key(name: str) -> str:
    """Key of snapshot *name*'s manifest."""
    return f"{SNAPSHOT_PREFIX}{validate_snapshot_name(name)}.json"


def validate_snapshot_name(name: str) -> str:
    """Return *name* if it is a valid snapshot name (letters, digits, ``._-``), else raise APTError."""
    if not _NAME_RE.match(name or "") or ".." in name:
        raise APTError(f"invalid snapshot name {name!r}: use letters, digits, '.', '_' and '-' (no '..')")
    return name


def hash_chunk(data: bytes | memoryview) -> str:
    """sha256 hex digest of *data* (hashlib releases the GIL, so threads hash in parallel)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a file: where it lives locally and, once hashed, its object id."""

    sha256: str
    size: int


@dataclass
class FileEntry:
    """One file of a snapshot."""

    path: str
    size: int
    sha256: str
    chunks: list[ChunkRef] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256,
                "chunks": [{"sha256": c.sha256, "size": c.size} for c in self.chunks]}


@dataclass
class Manifest:
    """A snapshot: every file with its size, sha256 and chunk list, plus where and when it was taken."""

    name: str
    files: list[FileEntry]
    chunk_size: int
    created: str = ""
    source: dict = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def objects(self) -> dict[str, int]:
        """Object id -> size for every chunk the snapshot needs."""
        return {c.sha256: c.size for f in self.files for c in f.chunks}

    def content_equal(self, other: Manifest) -> bool:
        """True when both snapshots hold the same files with the same bytes."""
        key = lambda m: sorted((f.path, f.size, f.sha256) for f in m.files)  # noqa: E731
        return key(self) == key(other)

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "name": self.name,
            "created": self.created,
            "source": self.source,
            "chunk_size": self.chunk_size,
            "total_size": self.total_size,
            "files": [f.to_json() for f in self.files],
        }
        # The manifest carries its own checksum so a flipped byte in it is caught like one in an object.
        body["checksum"] = _canonical_sha256(body)
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "manifest") -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise APTError(f"{where}: unknown format {body.get('format')!r} (expected {FORMAT})")
            checksum = body.pop("checksum", None)
            if checksum != _canonical_sha256(body):
                raise APTError(f"{where} is corrupt: its checksum does not match its content")
            files = [
                FileEntry(path=f["path"], size=int(f["size"]), sha256=f["sha256"],
                          chunks=[ChunkRef(c["sha256"], int(c["size"])) for c in f["chunks"]])
                for f in body["files"]
            ]
            manifest = cls(name=body["name"], files=files, chunk_size=int(body["chunk_size"]),
                           created=body.get("created", ""), source=body.get("source", {}))
        except APTError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise APTError(f"{where} is corrupt: {type(exc).__name__}: {exc}") from None
        for entry in manifest.files:
            _check_relative_path(entry.path, where)
            for chunk in entry.chunks:
                object_key(chunk.sha256)
            if sum(c.size for c in entry.chunks) != entry.size:
                raise APTError(f"{where} is corrupt: chunk sizes of {entry.path!r} do not add up")
        return manifest


def new_manifest(name: str, files: list[FileEntry], chunk_size: int, source_dir: Path) -> Manifest:
    """A manifest stamped with the current UTC time and the source directory."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Manifest(name=name, files=files, chunk_size=chunk_size, created=created,
                    source={"path": str(source_dir), "host": socket.gethostname()})


def _canonical_sha256(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_relative_path(path: str, where: str) -> None:
    pure = PurePosixPath(path)
    if (not path or "\\" in path or "\x00" in path or pure.is_absolute()
            or any(part in ("", ".", "..") for part in path.split("/")) or re.match(r"^[A-Za-z]:", path)):
        raise APTError(f"{where} names an unsafe path {path!r} (absolute or escaping the target); refusing it")


def safe_target(root: Path, relative: str) -> Path:
    """``root / relative``, refusing any path that would land outside *root* (``..``, absolute, symlinks)."""
    _check_relative_path(relative, "manifest")
    target = root / Path(*PurePosixPath(relative).parts)
    resolved_root = root.resolve()
    if not target.resolve().is_relative_to(resolved_root):
        raise APTError(f"manifest path {relative!r} escapes the target directory; refusing it")
    return target


def scan_checkpoint(directory: Path) -> list[tuple[str, Path, int]]:
    """Regular files under *directory* as ``(relative posix path, path, size)``, sorted by path.

    Symlinks are refused rather than followed: a checkpoint is self-contained, and following a link
    could back up (and later restore) a file from outside it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise APTError(f"checkpoint directory not found: {directory}")
    found: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(directory).as_posix()
            if path.is_symlink():
                raise APTError(f"{path} is a symbolic link; a checkpoint to back up must hold regular files")
            found.append((rel, path, path.stat().st_size))
    if not found:
        raise APTError(f"{directory} is empty; nothing to back up")
    return found


def chunk_spans(size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each chunk of a file of *size* bytes; an empty file has one empty chunk."""
    if size == 0:
        yield 0, 0
        return
    for offset in range(0, size, chunk_size):
        yield offset, min(chunk_size, size - offset)
