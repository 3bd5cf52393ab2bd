"""A local cache of file hashes, so re-backing up an unchanged checkpoint does not re-read it.

Keyed by absolute path and validated by size, mtime, ctime, inode and device — the rule restic uses
to skip unchanged files. ctime is what makes it safe against ``touch -d``-style tricks: user space
cannot set it, and any write or rename of the file updates it. A cached entry is used only if every
object it names is already in the target store; otherwise the file is hashed again.
``apt-model backup --rehash`` ignores the cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from .store import ChunkRef

__all__ = ["HashCache", "default_cache_path"]

MAX_ENTRIES = 20_000


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "apt-model" / "cloud-hash-cache.json"


def _fingerprint(st: os.stat_result, chunk_size: int) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, chunk_size]


class HashCache:
    def __init__(self, path: Path | None = None):
        self.path = path or default_cache_path()
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._entries: dict = json.loads(self.path.read_text())
            if not isinstance(self._entries, dict):
                self._entries = {}
        except (OSError, ValueError):
            self._entries = {}

    def lookup(self, path: Path, st: os.stat_result, chunk_size: int) -> tuple[str, list[ChunkRef]] | None:
        entry = self._entries.get(str(Path(path).resolve()))
        if not entry or entry.get("fp") != _fingerprint(st, chunk_size):
            return None
        try:
            return entry["sha256"], [ChunkRef(sha, int(size)) for sha, size in entry["chunks"]]
        except (KeyError, TypeError, ValueError):
            return None

    def store(self, path: Path, st: os.stat_result, chunk_size: int, sha256: str, chunks: list[ChunkRef]) -> None:
        with self._lock:
            self._entries[str(Path(path).resolve())] = {
                "fp": _fingerprint(st, chunk_size), "sha256": sha256, "chunks": [[c.sha256, c.size] for c in chunks]}
            self._dirty = True

    def save(self) -> None:
        """Write atomically; a cache that cannot be written only costs speed, never correctness."""
        if not self._dirty:
            return
        entries = self._entries
        if len(entries) > MAX_ENTRIES:  # forget the oldest insertions
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".hash-cache-")
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh)
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass
