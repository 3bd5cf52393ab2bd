"""The storage backend protocol every scheme implements, and helpers they share.

A backend is a flat key/value store with five operations. Everything else (chunking, hashing,
verification, retries, parallelism) lives in the transfer engine, so a third-party scheme only has
to implement these and register ``factory(url) -> backend`` through ``apt_register_storage``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from apt_core.errors import APTError, redact

__all__ = ["ObjectInfo", "StorageBackend", "Backend", "require_sdk", "split_url", "install_log_redaction",
           "secret_values"]


@dataclass(frozen=True)
class ObjectInfo:
    """A stored key, its size and (when the store tells) its last-modified time."""

    key: str
    size: int
    modified: datetime | None = None


@runtime_checkable
class StorageBackend(Protocol):
    """What the transfer engine needs from a store.

    * ``put(key, data, if_absent=False) -> bool``: store *data*; with ``if_absent`` the write is
      atomic create-if-absent and returns False (writing nothing) when *key* already exists.
    * ``get(key) -> bytes``; ``exists(key) -> bool``; ``list(prefix) -> Iterator[ObjectInfo]``;
      ``delete(key)``. A missing key raises :class:`~apt_plugin_cloud.retry.NotFoundError`.
    * Failures worth retrying raise :class:`~apt_plugin_cloud.retry.TransientError`; wrong
      credentials raise :class:`~apt_plugin_cloud.retry.AuthError`.
    """

    url: str

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...


class Backend:
    """Convenience base: batch operations default to loops; hub backends override them with one commit."""

    url: str = ""
    #: True when many small writes are expensive (each one a git commit) and ``put_many`` should be used.
    prefers_batches: bool = False
    #: How many requests the engine may run at once against this store.
    max_parallel: int = 8

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        for key, data in items:
            self.put(key, data)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def _translate(self, exc: Exception, what: str) -> Exception:
        """Map an SDK exception to NotFoundError / AuthError / TransientError (or return it unchanged)."""
        return exc

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one SDK call, re-raising its failure as what :meth:`_translate` makes of it."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated and re-raised
            translated = self._translate(exc, what)
            if translated is exc:
                raise
            raise translated from None

    def abort_incomplete_uploads(self, older_than_s: float) -> int:
        """Abort multipart uploads left behind by killed processes; returns how many. Default: none."""
        return 0

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def require_sdk(module: str, extra: str):
    """Import an SDK module or raise an APTError naming the extra that installs it.

    Every SDK-backed backend goes through here, so it is also where secret masking in log records
    is switched on (SDK DEBUG logs print request headers).
    """
    install_log_redaction()
    try:
        return importlib.import_module(module)
    except ImportError:
        raise APTError(f"this storage scheme needs {module.split('.')[0]}: pip install 'apt-plugin-cloud[{extra}]'") \
            from None


def split_url(url: str, scheme: str) -> tuple[str, str, dict[str, str]]:
    """``scheme://bucket/prefix?opt=v`` -> ``(bucket, prefix without slashes, options)``."""
    parts = urlsplit(url)
    if parts.scheme != scheme or not parts.netloc:
        raise APTError(f"not a {scheme}:// URL: {redact(url)!r} (expected {scheme}://BUCKET/PREFIX)")
    if parts.username or parts.password:
        raise APTError(f"{scheme}:// URLs must not carry credentials; use environment variables instead")
    return parts.netloc, parts.path.strip("/"), dict(parse_qsl(parts.query))


# -- secrets never reach a log line --------------------------------------------------------------

_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "OSS_ACCESS_KEY_ID",
               "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
               "MODELSCOPE_API_TOKEN")
_installed = False


def secret_values() -> list[str]:
    """Credential values currently in the environment (long enough to be worth masking)."""
    return [v for v in (os.environ.get(name, "") for name in _SECRET_ENV) if len(v) >= 6]


# Forms redact() does not know: SigV4 parts inside bytes reprs (b'AWS4-HMAC-SHA256 Credential=…') and
# OSS v1 "OSS <id>:<signature>" headers.
_EXTRA_PATTERNS = [
    (re.compile(r"(Credential=)[^/,\s'\"]+"), r"\1***"),
    (re.compile(r"(Signature=)[0-9a-fA-F]+"), r"\1***"),
    (re.compile(r"(OSS4?-?[A-Z0-9-]* )[^:\s'\"]+:[^\s'\",]+"), r"\1***"),
]


def scrub(text: str) -> str:
    """:func:`redact` plus literal masking of the credential values in the environment."""
    for value in secret_values():
        text = text.replace(value, "***")
    for pattern, replacement in _EXTRA_PATTERNS:
        text = pattern.sub(replacement, text)
    return redact(text)


def install_log_redaction() -> None:
    """Mask secrets in every log record from now on.

    Why a record factory and not a logging.Filter: SDKs log on dozens of child loggers
    (``botocore.auth``, ``urllib3.connectionpool``, ``oss2.api`` …) and a filter only sees records of the
    logger it is attached to. The factory runs only for records that pass the level check, so it
    costs nothing unless DEBUG logging is on.
    """
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the SDK's problem; leave it alone
            return record
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        return record

    logging.setLogRecordFactory(factory)


def split_repo_url(url: str, scheme: str, article: str, owner: str) -> tuple[str, str, str]:
    """``scheme://OWNER/REPO[/PREFIX]`` -> (repo id, prefix, canonical URL); APTError if it is not one."""
    parts = urlsplit(url)
    segments = [s for s in (parts.netloc + parts.path).split("/") if s]
    if parts.scheme != scheme or len(segments) < 2:
        raise APTError(f"not {article} {scheme}:// URL: {url!r} (expected {scheme}://{owner}/REPO[/PREFIX])")
    repo_id, prefix = "/".join(segments[:2]), "/".join(segments[2:])
    return repo_id, prefix, f"{scheme}://{repo_id}" + (f"/{prefix}" if prefix else "")
