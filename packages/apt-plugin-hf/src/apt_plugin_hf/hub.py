"""Hub transfers through ``huggingface_hub``: push a folder, pull a repo, with clear errors and retries.

* Token: ``HF_TOKEN`` or the SDK's stored login (``hf auth login``), resolved by ``huggingface_hub`` at
  call time; endpoint: ``HF_ENDPOINT`` read at call time (the SDK reads it only once, at import).
* 401/403/404 fail at once with one clear line (no token or URL signature in it); 429 and 5xx and
  dropped connections are retried with capped exponential backoff, honouring ``Retry-After``.
  Retrying a whole push is safe: ``create_repo(exist_ok=True)`` and a commit are idempotent, and the
  SDK skips files the Hub already has.
* A pull downloads into a hidden sibling directory, drops the SDK's ``.cache`` bookkeeping and renames
  the result into place, so a failed pull leaves nothing under the target name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from apt_core.errors import APTError, redact

__all__ = ["hub_api", "push_folder", "pull_repo", "download_snapshot", "hub_errors", "with_retries",
           "looks_like_repo_id", "RETRYABLE_STATUS"]

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_LOGIN_HINT = "set HF_TOKEN or run `hf auth login`"


def _settings() -> dict:
    from apt_core.config import get_config

    from .plugin import DEFAULTS

    # Defaults first: the module also works when the hf plugin is not loaded in the current manager.
    return {**DEFAULTS, **get_config().plugin("hf")}


def endpoint() -> str | None:
    """``HF_ENDPOINT`` now (None = the SDK's default, huggingface.co)."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_api():
    """An ``HfApi`` for the current ``HF_ENDPOINT``; the token comes from ``HF_TOKEN`` or the stored login."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


def looks_like_repo_id(text: str) -> bool:
    """``name`` or ``namespace/name`` made of Hub-legal characters (and not an existing local path)."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?", text)) and not Path(text).exists()


# ---------------------------------------------------------------------------------------- errors
def _httpx():
    """The HTTP client module huggingface_hub uses (``httpx2`` from 2.x, ``httpx`` in 1.x)."""
    try:
        import httpx2

        return httpx2
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx

        return httpx


def _http_error_in(exc: BaseException):
    """The first ``HfHubHTTPError`` in an exception's cause/context chain (the SDK wraps some)."""
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HfHubHTTPError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _status(exc: BaseException) -> int | None:
    http = _http_error_in(exc)
    response = getattr(http, "response", None)
    return getattr(response, "status_code", None)


def _server_message(http) -> str:
    response = getattr(http, "response", None)
    message = response.headers.get("X-Error-Message") if response is not None else None
    return redact(message or str(http).splitlines()[0])


def _token_present() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str, revision: str | None = None) -> Iterator[None]:
    """Turn ``huggingface_hub`` failures into one-line :class:`APTError` messages."""
    httpx = _httpx()
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except APTError:
        raise
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        raise APTError(f"cannot reach the Hub at {endpoint() or 'https://huggingface.co'} to {action} {repo_id}: "
                       f"{redact(str(exc)) or type(exc).__name__}") from None
    except Exception as exc:
        http = _http_error_in(exc)
        if http is None:
            if isinstance(exc, LocalEntryNotFoundError):
                raise APTError(f"cannot {action} {repo_id}: {redact(str(exc).splitlines()[0])}") from None
            raise
        status = _status(exc)
        if isinstance(http, RevisionNotFoundError):
            raise APTError(f"revision {revision!r} not found in Hub repo {repo_id}") from None
        if isinstance(http, RemoteEntryNotFoundError):
            raise APTError(f"file not found in Hub repo {repo_id}: {_server_message(http)}") from None
        if isinstance(http, GatedRepoError):
            raise APTError(f"Hub repo {repo_id} is gated: accept its terms on the Hub, then {_LOGIN_HINT}") from None
        if status == 401 and not isinstance(http, RepositoryNotFoundError):
            if _token_present():
                raise APTError(f"authentication failed to {action} {repo_id}: the Hub rejected the token "
                               f"({_server_message(http)}); check HF_TOKEN or run `hf auth login`") from None
            raise APTError(f"authentication required to {action} {repo_id}: {_LOGIN_HINT}") from None
        if isinstance(http, RepositoryNotFoundError):
            hint = "" if _token_present() else f"; if it is private, {_LOGIN_HINT}"
            raise APTError(f"Hub repo {repo_id} not found (or not visible with this token){hint}") from None
        if status == 403:
            raise APTError(f"permission denied to {action} {repo_id}: {_server_message(http)} "
                           "(does the token have write access to this namespace?)") from None
        if status == 404:
            raise APTError(f"not found while trying to {action} {repo_id}: {_server_message(http)}") from None
        raise APTError(f"the Hub answered {status} to {action} {repo_id}: {_server_message(http)}") from None


def with_retries(fn: Callable[[], T], *, what: str, attempts: int | None = None, base_delay: float | None = None,
                 max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call *fn*, retrying 429/5xx/connection failures with capped exponential backoff (``Retry-After`` wins)."""
    httpx = _httpx()
    settings = None
    if attempts is None or base_delay is None:
        settings = _settings()
    attempts = attempts if attempts is not None else int(settings["retries"]) + 1
    base_delay = base_delay if base_delay is not None else float(settings["retry_base_delay"])
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            status = _status(exc)
            transient = status in RETRYABLE_STATUS or isinstance(exc, (httpx.ConnectError, httpx.ReadError,
                                                                         httpx.RemoteProtocolError, httpx.TimeoutException))
            if not transient or attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            http = _http_error_in(exc)
            retry_after = http.response.headers.get("Retry-After") if http is not None else None
            if retry_after is not None:
                with contextlib.suppress(ValueError):
                    delay = min(max_delay, float(retry_after))
            log.warning("%s: %s, retrying in %.1fs (attempt %d/%d)", what,
                        f"HTTP {status}" if status else type(exc).__name__, delay, attempt, attempts)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------- transfers
def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None) -> str:
    """Create *repo_id* if needed and upload every file of *folder* in one commit; returns the commit URL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise APTError(f"not a directory: {folder}")
    api = hub_api()
    message = commit_message or f"Upload {folder.name} with apt-model"

    def push() -> str:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision, commit_message=message)
        return info.commit_url

    with hub_errors("push to", repo_id, revision):
        return with_retries(push, what=f"push {folder} to {repo_id}")


def download_snapshot(repo_id: str, dest: Path, *, revision: str | None = None) -> str:
    """Download every file of *repo_id* at *revision* into *dest*; returns the resolved commit sha."""
    from huggingface_hub import snapshot_download

    api = hub_api()
    with hub_errors("pull", repo_id, revision):
        # Resolve the revision first: errors (401/404) then come straight from the API, not through
        # snapshot_download's fall-back to the local cache, and the snapshot is pinned to one commit.
        info = with_retries(lambda: api.repo_info(repo_id, revision=revision), what=f"look up {repo_id}")
        sha = info.sha
        with_retries(lambda: snapshot_download(repo_id, revision=sha, local_dir=str(dest), endpoint=endpoint()),
                     what=f"download {repo_id}")
    shutil.rmtree(dest / ".cache", ignore_errors=True)  # the SDK's download bookkeeping, not repo content
    return sha


def pull_repo(repo_id: str, out: str | Path, *, revision: str | None = None, overwrite: bool = False) -> Path:
    """Download *repo_id* (at *revision*) into the folder *out*, all or nothing."""
    from .staging import staged_directory

    with staged_directory(out, overwrite=overwrite) as tmp:
        download_snapshot(repo_id, tmp, revision=revision)
    return Path(out)
