"""A small Hugging Face Hub protocol server for tests (127.0.0.1 only).

No Hub server can be installed offline, so the test suite drives the *real* ``huggingface_hub``
client (``HfApi``, ``snapshot_download``, ``hf_hub_download``) against this server through
``HF_ENDPOINT``. It implements the HTTP protocol those clients speak, as of huggingface_hub 2.x
with ``HF_HUB_DISABLE_XET=1``:

* ``POST /api/repos/create`` (409 with ``"url"`` when the repo exists), ``DELETE /api/repos/delete``
* ``POST /api/validate-yaml`` (model cards), ``GET /api/whoami-v2``
* ``POST /api/{type}s/{id}/preupload/{rev}`` (regular vs LFS, remote oid of unchanged files)
* ``POST /{prefix}{id}.git/info/lfs/objects/batch`` + ``PUT`` of the blob (sha256 and size checked)
  + ``POST`` verify
* ``POST /api/{type}s/{id}/commit/{rev}`` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder;
  ``parentCommit`` checked; referenced LFS blobs must have been uploaded)
* ``GET /api/{type}s/{id}[/revision/{rev}]`` (repo info with siblings), ``.../tree/{rev}[/{path}]``,
  ``POST .../paths-info/{rev}``, ``GET|HEAD /{prefix}{id}/resolve/{rev}/{path}`` (ETag, X-Repo-Commit,
  X-Linked-Etag/Size, Range)

Auth: ``Authorization: Bearer <token>``. A wrong token is a 401 on every endpoint
(``X-Error-Code: Unauthorized``); no token may read public repos only; writes need the token and a
namespace the user owns (else 403). Missing repos/revisions/files answer 404 with the
``X-Error-Code`` the client maps to its typed errors (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``). :meth:`HubServer.inject_fault` makes the next matching requests fail (429/5xx,
optionally with ``Retry-After``) to test retries.

Usage::

    with hub_server() as hub:          # hub.url, hub.token, hub.user
        HfApi(endpoint=hub.url, token=hub.token).create_repo("tester/m")
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["HubServer", "hub_server", "git_blob_oid"]

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    """The git blob id (sha1 of ``blob <size>\\0`` + content) the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class FileEntry:
    size: int
    sha256: str
    blob_oid: str
    lfs: bool


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, FileEntry]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, body: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.body = status, message, code, body


class HubServer:
    """State and HTTP server of one test Hub. Repos live in memory; blobs on disk under *root*."""

    def __init__(self, root: Path, token: str, user: str = "tester", orgs: tuple[str, ...] = ("apt-org",),
                 lfs_threshold: int = 64 * 1024) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.token, self.user, self.orgs = token, user, tuple(orgs)
        #: Files at least this large, binary files and *.safetensors are LFS (the real Hub: 10 MB, binary, .gitattributes).
        self.lfs_threshold = lfs_threshold
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._faults: list[dict] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # ------------------------------------------------------------------ test controls
    def inject_fault(self, status: int = 503, *, times: int = 1, method: str | None = None,
                     path_contains: str = "", retry_after: float | None = None) -> None:
        """Answer the next *times* requests matching *method*/*path_contains* with *status*."""
        with self._lock:
            self._faults.append({"status": status, "times": times, "method": method,
                                 "path": path_contains, "retry_after": retry_after})

    def take_fault(self, method: str, path: str) -> dict | None:
        with self._lock:
            for fault in self._faults:
                if (fault["method"] in (None, method)) and fault["path"] in path and fault["times"] > 0:
                    fault["times"] -= 1
                    return fault
        return None

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        """The stored repo (for assertions), or None."""
        return self.repos.get((repo_type, repo_id))

    def file_bytes(self, entry: FileEntry) -> bytes:
        return (self.objects / entry.sha256).read_bytes()

    # ------------------------------------------------------------------ model
    def store_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.objects / digest
        if not target.exists():
            tmp = self.objects / f".{digest}.{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            tmp.replace(target)
        return digest

    def sign(self, oid: str) -> str:
        """Signature of an LFS upload URL (stands in for a presigned storage URL)."""
        return hmac.new(self.token.encode(), oid.encode(), hashlib.sha256).hexdigest()[:32]

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.objects / sha256
        return path.is_file() and (size is None or path.stat().st_size == size)

    def resolve(self, repo: Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision, revision)
        if oid not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def new_commit(self, repo: Repo, parent: str | None, title: str, files: dict[str, FileEntry]) -> Commit:
        oid = hashlib.sha1(f"{repo.repo_id}{parent}{title}{uuid.uuid4()}".encode()).hexdigest()
        commit = Commit(oid, parent, title, files, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
        repo.commits[oid] = commit
        return commit


# ---------------------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, err: HubError) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, err.body or {"error": err.message}, headers)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        self.hub.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        fault = self.hub.take_fault(method, path)
        if fault is not None:
            headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
            self._json(fault["status"], {"error": "injected fault"}, headers)
            return
        try:
            self._authenticate()
            self._route(method, path, query, body)
        except HubError as err:
            self._error(err)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            self._error(HubError(400, f"bad request: {exc}", "BadRequest"))

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization")
        self.authorized = False
        if header is None:
            return
        if header != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header", "Unauthorized")
        self.authorized = True

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.authorized):
            status = 401 if repo is not None and not self.authorized else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        if write:
            self._check_write(repo_id)
        return repo

    def _check_write(self, repo_id: str) -> None:
        if not self.authorized:
            raise HubError(401, "You must be authenticated to write", "Unauthorized")
        if repo_id.split("/")[0] not in (self.hub.user, *self.hub.orgs):
            raise HubError(403, f"You don't have the rights to write to {repo_id}", "Forbidden")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] == ["api"]:
            return self._api(method, parts[1:], query, body)
        if parts[:1] == ["lfs-upload"] and method == "PUT":
            return self._lfs_put(parts[1], "/".join(parts[2:-1]), parts[-1], query.get("sig", [""])[0], body)
        if parts[:1] == ["lfs-verify"] and method == "POST":
            data = json.loads(body)
            if not self.hub.has_blob(data["oid"], data.get("size")):
                raise HubError(404, "object not uploaded", "EntryNotFound")
            return self._json(200, {})
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = _TYPES[parts[0]], parts[1:]
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}", json.loads(body))
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, f"no route for {method} {path}", "NotFound")

    def _api(self, method: str, parts: list[str], query: dict, body: bytes) -> None:
        if parts == ["whoami-v2"] and method == "GET":
            if not self.authorized:
                raise HubError(401, "Invalid credentials in Authorization header", "Unauthorized")
            return self._json(200, {"type": "user", "name": self.hub.user, "fullname": self.hub.user,
                                    "orgs": [{"name": o, "type": "org"} for o in self.hub.orgs],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if parts == ["repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body))
        if parts == ["repos", "delete"] and method == "DELETE":
            data = json.loads(body)
            repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            repo_type = data.get("type") or "model"
            self._repo(repo_type, repo_id, write=True)
            del self.hub.repos[(repo_type, repo_id)]
            return self._json(200, {})
        if parts == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body))
        if len(parts) >= 3 and parts[0] in _TYPES:
            repo_type, repo_id, rest = _TYPES[parts[0]], f"{parts[1]}/{parts[2]}", parts[3:]
            if not rest and method == "GET":
                return self._repo_info(repo_type, repo_id, "main")
            if rest[:1] == ["revision"] and len(rest) == 2 and method == "GET":
                return self._repo_info(repo_type, repo_id, rest[1])
            if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
            if rest[:1] == ["paths-info"] and len(rest) == 2 and method == "POST":
                return self._paths_info(repo_type, repo_id, rest[1], parse_qs(body.decode()))
            if rest[:1] == ["preupload"] and len(rest) == 2 and method == "POST":
                return self._preupload(repo_type, repo_id, rest[1], json.loads(body))
            if rest[:1] == ["commit"] and len(rest) == 2 and method == "POST":
                return self._commit(repo_type, repo_id, rest[1], body)
        raise HubError(404, f"no API route for {method} /api/{'/'.join(parts)}", "NotFound")

    # ------------------------------------------------------------------ repos
    def _create_repo(self, data: dict) -> None:
        repo_type = data.get("type") or "model"
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else f"{self.hub.user}/{data['name']}"
        if not self.authorized:
            raise HubError(401, "You must be authenticated to create a repo", "Unauthorized")
        self._check_write(repo_id)
        url = f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub.repos:
                raise HubError(409, "You already created this model repo", "RepoExists", {"error": "You already created this model repo", "url": url})
            repo = Repo(repo_type, repo_id, private=data.get("visibility") == "private" or bool(data.get("private")))
            content = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            digest = self.hub.store_blob(content)
            attributes = FileEntry(len(content), digest, git_blob_oid(content), False)
            first = self.hub.new_commit(repo, None, "initial commit", {".gitattributes": attributes})
            repo.branches["main"] = first.oid
            self.hub.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def _validate_yaml(self, data: dict) -> None:
        content = data.get("content", "")
        if content.startswith("---"):
            end = content.find("\n---", 3)
            if end < 0:
                raise HubError(400, "unterminated metadata block", "BadRequest",
                               {"errors": [{"message": "metadata block is not terminated"}]})
            header = content[3:end]
            # A model card header must be a mapping of `key: value` lines (YAML subset check).
            for line in header.splitlines():
                if line.strip() and not line.startswith((" ", "-", "#")) and ":" not in line:
                    raise HubError(400, "invalid metadata", "BadRequest",
                                   {"errors": [{"message": f"invalid metadata line: {line!r}"}]})
        self._json(200, {"errors": [], "warnings": []})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self.hub.resolve(repo, revision)
        self._json(200, {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
            "createdAt": commit.date, "private": repo.private, "disabled": False, "gated": False,
            "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
            "siblings": [{"rfilename": name} for name in sorted(commit.files)],
        })

    def _entry_json(self, path: str, entry: FileEntry) -> dict:
        data = {"type": "file", "oid": entry.blob_oid, "size": entry.size, "path": path}
        if entry.lfs:
            data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": 134}
        return data

    def _tree(self, repo_type: str, repo_id: str, revision: str, prefix: str, query: dict) -> None:
        commit = self.hub.resolve(self._repo(repo_type, repo_id), revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        if prefix and not any(p.startswith(base) for p in commit.files):
            raise HubError(404, f"{prefix} not found", "EntryNotFound")
        files, folders = [], set()
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base):].split("/")
            for depth in range(1, len(rest)):
                folders.add(base + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                files.append(self._entry_json(path, entry))
        listed = sorted(f for f in folders if recursive or "/" not in f[len(base):])
        folder_json = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                       for f in listed]
        self._json(200, folder_json + files)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str, form: dict) -> None:
        commit = self.hub.resolve(self._repo(repo_type, repo_id), revision)
        out = []
        for path in form.get("paths", []):
            if path in commit.files:
                out.append(self._entry_json(path, commit.files[path]))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                            "path": path})
        self._json(200, out)

    # ------------------------------------------------------------------ uploads
    def _preupload(self, repo_type: str, repo_id: str, revision: str, data: dict) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        commit = self.hub.resolve(repo, revision)
        files = []
        for item in data["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["size"] >= self.hub.lfs_threshold or b"\x00" in sample or item["path"].endswith(".safetensors")
            existing = commit.files.get(item["path"])
            oid = None
            if existing is not None and existing.lfs == lfs:
                oid = existing.sha256 if lfs else existing.blob_oid
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, repo_type: str, repo_id: str, data: dict) -> None:
        self._repo(repo_type, repo_id, write=data.get("operation") == "upload")
        objects = []
        for obj in data["objects"]:
            oid, size = obj["oid"], obj["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if not self.hub.has_blob(oid, size):
                # Like the Hub's presigned storage URLs: no Authorization header, a signature instead.
                target = f"{self.hub.url}/lfs-upload/{repo_type}/{quote(repo_id)}/{oid}?sig={self.hub.sign(oid)}"
                entry["actions"] = {"upload": {"href": target, "header": {}},
                                    "verify": {"href": f"{self.hub.url}/lfs-verify", "header": {}}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, repo_type: str, repo_id: str, oid: str, sig: str, body: bytes) -> None:
        if not hmac.compare_digest(sig, self.hub.sign(oid)):
            raise HubError(403, "invalid upload signature", "Forbidden")
        digest = hashlib.sha256(body).hexdigest()
        if digest != oid:
            raise HubError(400, f"sha256 mismatch: expected {oid}, got {digest}", "BadRequest")
        self.hub.store_blob(body)
        self._json(200, {})

    def _commit(self, repo_type: str, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_type, repo_id, write=True)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line", "BadRequest")
        header = lines[0]["value"]
        with self.hub._lock:
            head = self.hub.resolve(repo, revision)
            parent = header.get("parentCommit")
            if parent and parent != head.oid:
                raise HubError(412, f"A commit has happened since. Parent {parent} is not the head", "ParentMismatch")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"]
                if path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}", "BadRequest")
                if key == "file":
                    content = base64.b64decode(value["content"])
                    files[path] = FileEntry(len(content), self.hub.store_blob(content), git_blob_oid(content), False)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if not self.hub.has_blob(oid, value.get("size")):
                        raise HubError(422, f"LFS object {oid} for {path} was not uploaded", "LfsObjectMissing")
                    size = (self.hub.objects / oid).stat().st_size
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()
                    files[path] = FileEntry(size, oid, git_blob_oid(pointer), True)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    base = path.rstrip("/") + "/"
                    for name in [p for p in files if p.startswith(base)]:
                        del files[name]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}", "BadRequest")
            commit = self.hub.new_commit(repo, head.oid, header.get("summary", ""), files)
            branch = revision if revision in repo.branches or not _SHA1_RE.match(revision) else "main"
            repo.branches[branch] = commit.oid
        url = f"{self.hub.url}/{_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
        self._json(200, {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None, "success": True})

    # ------------------------------------------------------------------ downloads
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self.hub.resolve(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self.hub.file_bytes(entry)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.sha256 if entry.lfs else entry.blob_oid}"',
                   "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        status = 200
        match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise HubError(416, "range not satisfiable", "RangeNotSatisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers, content_type="application/octet-stream")


@contextlib.contextmanager
def hub_server(root: str | Path | None = None, *, token: str | None = None, user: str = "tester",
               orgs: tuple[str, ...] = ("apt-org",), lfs_threshold: int = 64 * 1024) -> Iterator[HubServer]:
    """Start a Hub-protocol server on a free 127.0.0.1 port in a thread; yields it (``.url``, ``.token``).

    Blobs are stored under *root* (a fresh temporary directory, removed afterwards, when not given).
    """
    owned = root is None
    root_path = Path(tempfile.mkdtemp(prefix="hub-server-")) if owned else Path(root)
    server = HubServer(root_path, token or f"hf_{secrets.token_hex(16)}", user, orgs, lfs_threshold).start()
    try:
        yield server
    finally:
        server.stop()
        if owned:
            shutil.rmtree(root_path, ignore_errors=True)
