"""``modelscope://owner/repo[/prefix]`` store in a ModelScope model repository (private by default).

Uses the ModelScope SDK's ``HubApi(endpoint=...)`` (``MODELSCOPE_DOMAIN`` always gets ``https://``
prefixed, so a test or private endpoint must be passed as ``endpoint``) with the token from
``MODELSCOPE_API_TOKEN``; see :func:`_client` for which of its two packages. Objects are committed in batches with ``upload_folder`` (one commit per
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
from urllib.parse import quote_plus

from apt_core.errors import APTError

from ..retry import AuthError, NotFoundError, TransientError, parse_retry_after
from .base import Backend, ObjectInfo, install_log_redaction, require_sdk, scrub, split_repo_url

__all__ = ["ModelScopeBackend"]

PRIVATE, PUBLIC = 1, 5


class ModelScopeBackend(Backend):
    prefers_batches = True
    max_parallel = 4

    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        self.repo_id, self.prefix, self.url = split_repo_url(url, "modelscope", "a", "OWNER")
        self.token = os.environ.get("MODELSCOPE_API_TOKEN") or None
        endpoint = settings.get("endpoint") or None
        self.client = _client(endpoint, self.token)
        self.endpoint = self.client.endpoint.rstrip("/")
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
        result = super()._call(what, fn, *args, **kwargs)
        # Some ModelScope helpers report failure by returning False instead of raising.
        if result is False or (isinstance(result, dict) and result.get("Success") is False):
            raise APTError(f"{self.url}: {what}: the ModelScope SDK reported failure")
        return result

    def _ensure_repo(self) -> None:
        if not self._repo_ready:
            self._call("create repository", self.client.create_repo, self.repo_id)
            self._repo_ready = True

    # -- protocol ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        self._ensure_repo()
        if if_absent and self.exists(key):
            return False
        self._call(f"upload {key}", self.client.upload_file, self.repo_id, data, self._path(key),
                   f"apt backup: {key}")
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
            self._call(f"upload {len(items)} objects", self.client.upload_folder, self.repo_id, tmp, self.prefix,
                       f"apt backup: {len(items)} objects")

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
            files = self._call(f"list {prefix}", self.client.list_files, self.repo_id)
        except NotFoundError:
            return
        strip = len(self._path(""))
        for path, size in files:
            if path.startswith(full):
                yield ObjectInfo(path[strip:], size)

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys) -> None:
        paths = [self._path(k) for k in keys]
        if paths:
            self._call(f"delete {len(paths)} files", self.client.delete_files, self.repo_id, paths,
                       f"apt prune: delete {len(paths)} files")


def _client(endpoint: str | None, token: str | None):
    """The lightest ModelScope client available.

    modelscope >= 1.40 is a shim over ``modelscope_hub``, and ``import modelscope`` also imports torch
    (seconds); ``modelscope_hub`` alone does not. Older modelscope releases have only ``modelscope.hub.api``.
    """
    if endpoint and not endpoint.startswith("http"):
        endpoint = f"https://{endpoint}"  # what the SDK itself does with a bare domain
    install_log_redaction()
    try:
        from modelscope_hub.api import HubApi
    except ImportError:
        return _LegacyClient(require_sdk("modelscope.hub.api", "modelscope").HubApi(endpoint=endpoint, token=token))
    return _HubClient(HubApi(endpoint=endpoint, token=token))


class _HubClient:
    """``modelscope_hub.api.HubApi`` (what modelscope >= 1.40 runs underneath)."""

    def __init__(self, api):
        self.api = api
        config = getattr(api, "_config", None)
        self.endpoint = str(getattr(config, "endpoint", "") or "https://www.modelscope.cn")

    def create_repo(self, repo_id: str):
        from modelscope_hub.errors import AlreadyExistsError

        try:
            return self.api.create_repo(repo_id, "model", visibility=PRIVATE)
        except AlreadyExistsError:
            return None

    def upload_file(self, repo_id, data, path, message):
        return self.api.upload_file(repo_id, "model", data, path, commit_message=message, disable_tqdm=True)

    def upload_folder(self, repo_id, folder, path_in_repo, message):
        return self.api.upload_folder(repo_id, "model", folder, path_in_repo=path_in_repo, commit_message=message,
                                      disable_tqdm=True, use_cache=False)

    def list_files(self, repo_id) -> list[tuple[str, int]]:
        return [(f.path, int(f.size or 0)) for f in self.api.list_repo_files(repo_id, "model", recursive=True)
                if f.type != "tree"]

    def delete_files(self, repo_id, paths, message):
        return self.api.delete_files(repo_id, "model", file_paths=paths, commit_message=message)


class _LegacyClient:
    """``modelscope.hub.api.HubApi(endpoint=...)`` of modelscope releases before 1.40."""

    def __init__(self, api):
        self.api = api
        self.endpoint = str(getattr(api, "endpoint", "") or "https://www.modelscope.cn")

    def create_repo(self, repo_id: str):
        return self.api.create_repo(repo_id, visibility=PRIVATE, repo_type="model", exist_ok=True)

    def upload_file(self, repo_id, data, path, message):
        return self.api.upload_file(repo_id=repo_id, path_or_fileobj=data, path_in_repo=path, commit_message=message)

    def upload_folder(self, repo_id, folder, path_in_repo, message):
        return self.api.upload_folder(repo_id=repo_id, folder_path=folder, path_in_repo=path_in_repo,
                                      commit_message=message)

    def list_files(self, repo_id) -> list[tuple[str, int]]:
        files = self.api.get_model_files(repo_id, recursive=True) or []
        return [(f.get("Path") or f.get("path") or "", int(f.get("Size") or 0)) for f in files
                if (f.get("Type") or "blob") != "tree"]

    def delete_files(self, repo_id, paths, message):
        return self.api.delete_files(repo_id, file_paths=paths, commit_message=message)
