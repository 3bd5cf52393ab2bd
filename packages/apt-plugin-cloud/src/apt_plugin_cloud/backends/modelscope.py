"""``modelscope://owner/repo[/prefix]`` store in a ModelScope model repository (private by default).

Uses ``modelscope.hub.api.HubApi(endpoint=...)`` (``MODELSCOPE_DOMAIN`` always gets ``https://``
prefixed, so a test or private endpoint must be passed as ``endpoint``) with the token from
``MODELSCOPE_API_TOKEN``. Objects are committed in batches with ``upload_folder`` (one commit per
batch). Every SDK result is checked: some ModelScope helpers (``push_to_hub``) swallow errors and
return False, and a backup that reports success must have verified it.

Create-if-absent is check-then-commit here: ModelScope's commit API has no precondition (its
``create`` action overwrites), so two processes racing on the *same* snapshot name could both
succeed. Snapshot names from auto-backup include the run and step, so this does not arise in practice.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

from apt_core.errors import APTError

from ..retry import AuthError, NotFoundError, TransientError, parse_retry_after
from .base import Backend, ObjectInfo, require_sdk, scrub

__all__ = ["ModelScopeBackend"]

PRIVATE, PUBLIC = 1, 5


class ModelScopeBackend(Backend):
    prefers_batches = True
    max_parallel = 4

    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        parts = urlsplit(url)
        segments = [s for s in (parts.netloc + parts.path).split("/") if s]
        if parts.scheme != "modelscope" or len(segments) < 2:
            raise APTError(f"not a modelscope:// URL: {url!r} (expected modelscope://OWNER/REPO[/PREFIX])")
        self.repo_id = "/".join(segments[:2])
        self.prefix = "/".join(segments[2:])
        self.url = f"modelscope://{self.repo_id}" + (f"/{self.prefix}" if self.prefix else "")
        api_module = require_sdk("modelscope.hub.api", "modelscope")
        self.token = os.environ.get("MODELSCOPE_API_TOKEN") or None
        endpoint = settings.get("endpoint") or None
        self.api = api_module.HubApi(endpoint=endpoint, token=self.token)
        self.endpoint = str(getattr(self.api, "endpoint", "") or endpoint or "https://www.modelscope.cn").rstrip("/")
        self._repo_ready = False

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _translate(self, exc: Exception, what: str) -> Exception:
        where = f"{self.url}: {what}"
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None) or getattr(response, "status_code", 0) or 0
        name = type(exc).__name__
        message = scrub(str(exc).splitlines()[0] if str(exc) else name)
        if status in (401, 403) or name in ("AuthenticationError", "PermissionDeniedError"):
            return AuthError(f"{where}: access denied ({status or name}); check MODELSCOPE_API_TOKEN")
        if status == 404 or name == "NotExistError":
            return NotFoundError(f"{where}: not found")
        if status == 429 or status >= 500 or name in ("RateLimitError", "ServerError", "NetworkError",
                                                       "RequestTimeoutError"):
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is None and response is not None:
                retry_after = parse_retry_after(getattr(response, "headers", {}).get("Retry-After"))
            return TransientError(f"{where}: {status or name}: {message}", retry_after)
        if type(exc).__module__.startswith(("requests", "urllib3")) or isinstance(exc, (ConnectionError, TimeoutError)):
            return TransientError(f"{where}: {name}: {message}")
        if type(exc).__module__.startswith(("modelscope", "modelscope_hub")):
            return APTError(f"{where}: {name}: {message}")
        return exc

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated and re-raised
            translated = self._translate(exc, what)
            if translated is exc:
                raise
            raise translated from None
        # Some ModelScope helpers report failure by returning False instead of raising.
        if result is False or (isinstance(result, dict) and result.get("Success") is False):
            raise APTError(f"{self.url}: {what}: the ModelScope SDK reported failure")
        return result

    def _ensure_repo(self) -> None:
        if not self._repo_ready:
            self._call("create repository", self.api.create_repo, self.repo_id, visibility=PRIVATE,
                       repo_type="model", exist_ok=True)
            self._repo_ready = True

    # -- protocol ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        self._ensure_repo()
        if if_absent and self.exists(key):
            return False
        self._call(f"upload {key}", self.api.upload_file, repo_id=self.repo_id, path_or_fileobj=data,
                   path_in_repo=self._path(key), commit_message=f"apt backup: {key}")
        return True

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        items = list(items)
        if not items:
            return
        self._ensure_repo()
        with tempfile.TemporaryDirectory(prefix="apt-modelscope-") as tmp:
            for key, data in items:
                path = Path(tmp) / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            self._call(f"upload {len(items)} objects", self.api.upload_folder, repo_id=self.repo_id, folder_path=tmp,
                       path_in_repo=self.prefix, commit_message=f"apt backup: {len(items)} objects")

    def get(self, key: str) -> bytes:
        import requests

        url = (f"{self.endpoint}/api/v1/models/{self.repo_id}/repo?Revision=master"
               f"&FilePath={quote_plus(self._path(key))}")
        headers = {"Authorization": f"Bearer {self.token}", "Cookie": f"m_session_id={self.token}"} \
            if self.token else {}

        def fetch() -> bytes:
            response = requests.get(url, headers=headers, timeout=(10, 120))
            if response.status_code >= 400:
                error = requests.HTTPError(f"HTTP {response.status_code} for {key}")
                error.response = response
                raise error
            if response.headers.get("Content-Type", "").startswith("application/json") and response.content[:1] == b"{":
                # An error envelope served with 200 (older deployments do this).
                body = response.json()
                if body.get("Success") is False or body.get("Code") not in (None, 200):
                    raise APTError(f"{self.url}: download {key}: {scrub(str(body.get('Message')))}")
            return response.content

        return self._call(f"download {key}", fetch)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return any(info.key == key for info in self.list(key.rsplit("/", 1)[0] + "/" if "/" in key else "")) \
            if path else False

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._path(prefix)
        try:
            files = self._call(f"list {prefix}", self.api.get_model_files, self.repo_id, recursive=True)
        except NotFoundError:
            return
        strip = len(self._path(""))
        for item in files or []:
            path = item.get("Path") or item.get("path") or ""
            if (item.get("Type") or "blob") != "tree" and path.startswith(full):
                yield ObjectInfo(path[strip:], int(item.get("Size") or 0))

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys) -> None:
        paths = [self._path(k) for k in keys]
        if paths:
            self._call(f"delete {len(paths)} files", self.api.delete_files, self.repo_id, file_paths=paths,
                       commit_message=f"apt prune: delete {len(paths)} files")
