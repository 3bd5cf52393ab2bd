"""``hf://user/repo[/prefix]`` store in a Hugging Face Hub repository (private by default).

Each write is a git commit, so the engine hands objects over in batches (:meth:`HFBackend.put_many`,
one commit per batch; large objects travel through LFS/Xet as the SDK decides). Create-if-absent for
manifests: read the head commit, check the file is absent at that commit, then commit with
``parent_commit`` = that head — the Hub refuses (412) if anything was committed in between, and we
check again. Token from ``HF_TOKEN`` or the SDK's login; endpoint from ``[plugins.cloud.hf] endpoint``
or ``HF_ENDPOINT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from apt_core.errors import APTError

from ..retry import AuthError, NotFoundError, TransientError, parse_retry_after
from .base import Backend, ObjectInfo, require_sdk, scrub, split_repo_url

__all__ = ["HFBackend"]


class HFBackend(Backend):
    prefers_batches = True
    max_parallel = 4

    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        self.repo_id, self.prefix, self.url = split_repo_url(url, "hf", "an", "USER")
        self.repo_type = settings.get("repo_type") or "model"
        self.private = bool(settings.get("private", True))
        hub = require_sdk("huggingface_hub", "hf")
        self._hub = hub
        self.api = hub.HfApi(endpoint=settings.get("endpoint") or None)
        self._repo_ready = False

    def _path(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _translate(self, exc: Exception, what: str) -> Exception:
        from huggingface_hub import errors as he

        where = f"{self.url}: {what}"
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", 0) or 0
        message = scrub(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        if status in (401, 403) and not isinstance(exc, he.RepositoryNotFoundError) or \
                isinstance(exc, he.GatedRepoError):
            return AuthError(f"{where}: access denied ({status}); check HF_TOKEN")
        if isinstance(exc, he.RepositoryNotFoundError):
            return NotFoundError(f"{where}: repository {self.repo_id} not found (or HF_TOKEN may not access it)")
        if isinstance(exc, (he.EntryNotFoundError, he.RevisionNotFoundError)) or status == 404:
            return NotFoundError(f"{where}: not found")
        if status == 429 or status >= 500:
            headers = getattr(response, "headers", {}) or {}
            return TransientError(f"{where}: HTTP {status}: {message}", parse_retry_after(headers.get("Retry-After")))
        if isinstance(exc, he.HfHubHTTPError):
            return APTError(f"{where}: {message}")
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")) or \
                isinstance(exc, (ConnectionError, TimeoutError)):
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")
        return exc

    def _ensure_repo(self) -> None:
        if not self._repo_ready:
            self._call("create repository", self.api.create_repo, self.repo_id, repo_type=self.repo_type,
                       private=self.private, exist_ok=True)
            self._repo_ready = True

    def _commit(self, operations: list, message: str, parent: str | None = None) -> None:
        self._ensure_repo()
        self._call(message, self.api.create_commit, self.repo_id, operations=operations, commit_message=message,
                   repo_type=self.repo_type, parent_commit=parent)

    def _head(self) -> str | None:
        info = self._call("read repository", self.api.repo_info, self.repo_id, repo_type=self.repo_type)
        return info.sha

    # -- protocol ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        op = self._hub.CommitOperationAdd(path_in_repo=self._path(key), path_or_fileobj=data)
        if not if_absent:
            self._commit([op], f"apt backup: {key}")
            return True
        from huggingface_hub import errors as he

        self._ensure_repo()
        for _ in range(5):
            head = self._head()
            if self._exists_at(key, head):
                return False
            try:
                self.api.create_commit(self.repo_id, operations=[op], commit_message=f"apt backup: {key}",
                                       repo_type=self.repo_type, parent_commit=head)
                return True
            except he.HfHubHTTPError as exc:
                if getattr(exc.response, "status_code", 0) != 412:  # 412: someone committed since `head`
                    raise self._translate(exc, f"upload {key}") from None
        raise TransientError(f"{self.url}: {key}: the repository kept changing while writing")

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        ops = [self._hub.CommitOperationAdd(path_in_repo=self._path(k), path_or_fileobj=d) for k, d in items]
        if ops:
            self._commit(ops, f"apt backup: {len(ops)} objects")

    def _exists_at(self, key: str, revision: str | None) -> bool:
        try:
            return bool(self._call(f"check {key}", self.api.file_exists, self.repo_id, self._path(key),
                                   repo_type=self.repo_type, revision=revision))
        except NotFoundError:
            return False

    def get(self, key: str) -> bytes:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hf_hub_url(self.repo_id, self._path(key), repo_type=self.repo_type, endpoint=self.api.endpoint)

        def fetch() -> bytes:
            response = get_session().get(url, headers=build_hf_headers(), follow_redirects=True, timeout=60)
            hf_raise_for_status(response)
            return response.content

        return self._call(f"download {key}", fetch)

    def exists(self, key: str) -> bool:
        return self._exists_at(key, None)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        from huggingface_hub.hf_api import RepoFile

        folder = self._path(prefix).rstrip("/")
        try:
            entries = self._call(f"list {prefix}", lambda: list(self.api.list_repo_tree(
                self.repo_id, path_in_repo=folder or None, recursive=True, repo_type=self.repo_type)))
        except NotFoundError:
            return  # no repository or folder yet: an empty store
        strip = len(self._path(""))
        for entry in entries:
            if isinstance(entry, RepoFile) and entry.path.startswith(self._path(prefix)):
                yield ObjectInfo(entry.path[strip:], int(entry.size))

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys) -> None:
        ops = [self._hub.CommitOperationDelete(path_in_repo=self._path(k)) for k in keys]
        if ops:
            self._commit(ops, f"apt prune: delete {len(ops)} files")
