"""A protocol-level ModelScope Hub server for tests (ModelScope cannot be installed locally).

Implements the ``/api/v1`` endpoints the ``modelscope`` SDK (``HubApi(endpoint=...)``) uses for
model repositories: create repo, repo info, file listing (``repo/files``), the LFS batch API and
blob PUT (sha256/size checked), commits with ``create``/``delete`` actions, and file download
(``repo?Revision=&FilePath=``). Responses use ModelScope's ``{"Code", "Data", "Message",
"Success"}`` envelope. Tokens arrive as ``Authorization: Bearer`` or the ``m_session_id`` cookie;
an unknown token gets 401, a write outside the caller's namespace 403.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from .http_base import Handler, ServerThread

__all__ = ["ModelScopeServer"]


@dataclass
class MSRepo:
    repo_id: str
    visibility: int
    files: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)  # path -> (data, lfs sha256)
    commits: int = 0


class MSApp:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens
        self.repos: dict[str, MSRepo] = {}
        self.blobs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.endpoint = ""
        self.commit_count = 0
        self.unknown: list[str] = []


class MSHandler(Handler):
    def envelope(self, status: int, data=None, message: str = "success", code: int | None = None) -> None:
        rid = uuid.uuid4().hex
        body = {"Code": code if code is not None else (200 if status < 400 else status), "Data": data,
                "Message": message, "RequestId": rid, "Success": status < 400}
        self.reply(status, json.dumps(body).encode(), {"X-Request-ID": rid}, "application/json")

    def caller(self) -> str | None | bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "m_session_id":
                    token = value
        if not token:
            return None
        user = self.app.tokens.get(token)
        if user is None:
            self.envelope(401, None, "Invalid access token, please login again.", code=10010101)
            return False
        return user

    def route(self, method: str) -> None:
        body = self.read_body() if method in ("POST", "PUT") else b""
        user = self.caller()
        if user is False:
            return
        parts = [unquote(p) for p in self.split.path.strip("/").split("/")]
        with self.app.lock:
            if parts[:1] == ["blob-upload"] and method == "PUT":
                return self.put_blob(parts[1], body)
            if parts[:3] == ["api", "v1", "models"] and len(parts) == 3 and method == "POST":
                return self.create(json.loads(body), user)
            if parts[:3] == ["api", "v1", "models"] and len(parts) >= 5:
                repo_id = "/".join(parts[3:5])
                rest = parts[5:]
                if rest == [] and method == "GET":
                    return self.info(repo_id, user)
                if rest == ["repo", "files"] and method == "GET":
                    return self.list_files(repo_id, user)
                if rest == ["repo"] and method in ("GET", "HEAD"):
                    return self.download(repo_id, user)
            if parts[:4] == ["api", "v1", "repos", "models"] and len(parts) >= 7:
                repo_id = "/".join(parts[4:6])
                if parts[6] == "commit" and method == "POST":
                    return self.commit(repo_id, json.loads(body), user)
                if parts[6:] == ["info", "lfs", "objects", "batch"] and method == "POST":
                    return self.lfs_batch(repo_id, json.loads(body), user)
        self.app.unknown.append(f"{method} {self.path}")
        self.envelope(404, None, f"no route for {method} {self.split.path}", code=10020101)

    def _repo(self, repo_id: str, user, write: bool) -> MSRepo | None:
        repo = self.app.repos.get(repo_id)
        owner = repo_id.split("/")[0]
        if repo is None or (repo.visibility == 1 and user != owner):
            self.envelope(404, None, f"Model {repo_id} not exists", code=10020101)
            return None
        if write and user != owner:
            self.envelope(403, None, "Permission denied", code=10010205)
            return None
        return repo

    def create(self, payload: dict, user) -> None:
        if not user:
            return self.envelope(401, None, "Please login first", code=10010101)
        owner, name = payload.get("Path"), payload.get("Name")
        if owner != user:
            return self.envelope(403, None, "Permission denied", code=10010205)
        repo_id = f"{owner}/{name}"
        if repo_id in self.app.repos:
            return self.envelope(400, None, f"Model {repo_id} already exists", code=10020301)
        self.app.repos[repo_id] = MSRepo(repo_id, int(payload.get("Visibility") or 5))
        self.envelope(200, {"Path": owner, "Name": name, "Visibility": self.app.repos[repo_id].visibility,
                            "Url": f"{self.app.endpoint}/models/{repo_id}"})

    def info(self, repo_id: str, user) -> None:
        repo = self._repo(repo_id, user, False)
        if repo:
            owner, name = repo_id.split("/")
            self.envelope(200, {"Id": abs(hash(repo_id)) % 10**6, "Name": name, "Path": owner,
                                "Visibility": repo.visibility, "ModelId": repo_id, "Revision": "master"})

    def list_files(self, repo_id: str, user) -> None:
        repo = self._repo(repo_id, user, False)
        if not repo:
            return
        root = (self.query.get("Root") or "").strip("/")
        files = []
        for path, (data, sha) in sorted(repo.files.items()):
            if root and not path.startswith(root + "/"):
                continue
            files.append({"Name": path.rsplit("/", 1)[-1], "Path": path, "Size": len(data), "Type": "blob",
                          "Sha256": sha or hashlib.sha256(data).hexdigest(), "IsLFS": bool(sha),
                          "Revision": f"c{repo.commits}"})
        self.envelope(200, {"Files": files})

    def download(self, repo_id: str, user) -> None:
        repo = self._repo(repo_id, user, False)
        if not repo:
            return
        path = self.query.get("FilePath", "")
        item = repo.files.get(path)
        if item is None:
            return self.envelope(404, None, f"file {path} not exists", code=10020102)
        self.reply(200, item[0], {"ETag": hashlib.sha256(item[0]).hexdigest()})

    def lfs_batch(self, repo_id: str, payload: dict, user) -> None:
        if not self._repo(repo_id, user, True):
            return
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.app.blobs:
                entry["actions"] = {"upload": {"href": f"{self.app.endpoint}/blob-upload/{obj['oid']}"}}
            objects.append(entry)
        self.envelope(200, {"objects": objects})

    def put_blob(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self.envelope(400, None, "blob sha256 mismatch", code=10020401)
        self.app.blobs[oid] = body
        self.envelope(200, {"oid": oid})

    def commit(self, repo_id: str, payload: dict, user) -> None:
        repo = self._repo(repo_id, user, True)
        if not repo:
            return
        files = dict(repo.files)
        for action in payload.get("actions", []):
            path = action["path"]
            if action["action"] == "delete":
                if path not in files:
                    return self.envelope(400, None, f"file {path} not exists", code=10020102)
                del files[path]
            elif action.get("type") == "lfs":
                blob = self.app.blobs.get(action["sha256"])
                if blob is None or len(blob) != int(action["size"]):
                    return self.envelope(400, None, f"LFS blob for {path} was not uploaded", code=10020402)
                files[path] = (blob, action["sha256"])
            else:
                data = base64.b64decode(action["content"]) if action.get("encoding") == "base64" \
                    else action["content"].encode()
                files[path] = (data, None)
        repo.files = files
        repo.commits += 1
        self.app.commit_count += 1
        self.envelope(200, {"CommitId": uuid.uuid4().hex, "Revision": "master"})


class ModelScopeServer(ServerThread):
    def __init__(self, tokens: dict[str, str]):
        self.app = MSApp(tokens)
        super().__init__(MSHandler, self.app)
        self.app.endpoint = self.endpoint
