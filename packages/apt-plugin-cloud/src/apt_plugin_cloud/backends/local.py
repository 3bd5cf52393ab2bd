"""``file://`` store: a directory on local disk (the embedded default, ``~/.cache/apt-model/backups``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

from apt_core.errors import APTError

from ..retry import NotFoundError
from .base import Backend, ObjectInfo

__all__ = ["LocalBackend", "DEFAULT_LOCAL_STORE", "local_path_from_url"]

DEFAULT_LOCAL_STORE = "file://~/.cache/apt-model/backups"


def local_path_from_url(url: str) -> Path:
    """``file:///abs``, ``file://~/x``, ``file://relative`` or a bare path -> a Path."""
    if "://" not in url:
        return Path(url).expanduser()
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise APTError(f"not a file:// URL: {url!r}")
    # file://~/x and file://relative/x put the first segment in netloc; file:///abs leaves it empty.
    raw = unquote(parts.netloc + parts.path)
    if not raw:
        raise APTError(f"file:// URL without a path: {url!r}")
    return Path(raw).expanduser()


class LocalBackend(Backend):
    """Keys are files under ``root``; writes go to a temporary file then ``os.replace`` / ``os.link``."""

    max_parallel = 4

    def __init__(self, url: str, settings: dict | None = None):
        self.root = local_path_from_url(url).absolute()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise APTError(f"invalid store key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if if_absent:
                # link() fails if the name exists: atomic create-if-absent, like IfNoneMatch="*".
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, path)
                tmp = ""
            return True
        finally:
            if tmp:
                os.unlink(tmp)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.url}: {key} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix if prefix.endswith("/") else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
