"""A protocol-level Hugging Face Hub server for tests (the Hub cannot be installed locally).

Implements the endpoints ``huggingface_hub.HfApi`` uses for the backend, as the client speaks them
with ``HF_HUB_DISABLE_XET=1``: repo create (409 carries ``"url"``), repo info, preupload
(regular vs LFS), the git-LFS batch API + blob PUT with sha256/size checks, NDJSON commits (with
``parentCommit`` → 412 on a stale parent), resolve (GET/HEAD with ``X-Repo-Commit``/``ETag``), and
the tree API. Errors carry ``X-Error-Code`` / ``X-Error-Message``. Bearer tokens are checked: a wrong
token gets 401, writing to another user's namespace 403.
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

__all__ = ["HubServer"]

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    files: dict[str, tuple[bytes | None, str | None, int]] = field(default_factory=dict)  # path -> (data, lfs oid, size)
    head: str = ""
    commits: int = 0


class HubApp:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> user name
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.endpoint = ""
        self.commit_count = 0


class HubHandler(Handler):
    def json_reply(self, status: int, payload, headers: dict | None = None) -> None:
        self.reply(status, json.dumps(payload).encode(), headers, "application/json")

    def fail(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self.json_reply(status, {"error": message}, headers)

    def user(self) -> str | None | bool:
        """The caller's user name, None when anonymous, False (after replying 401) for a bad token."""
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        token = header.removeprefix("Bearer ").strip()
        user = self.app.tokens.get(token)
        if user is None:
            self.fail(401, None, "Invalid credentials in Authorization header")
            return False
        return user

    def repo(self, repo_type: str, repo_id: str, write: bool, user) -> Repo | None:
        repo = self.app.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            self.fail(404 if user else 401, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
            return None
        if write and user != repo_id.split("/")[0]:
            self.fail(403, None, "You don't have the rights to write to this repository")
            return None
        return repo

    def route(self, method: str) -> None:
        body = self.read_body() if method in ("POST", "PUT") else b""
        user = self.user()
        if user is False:
            return
        path = unquote(self.split.path)
        parts = path.strip("/").split("/")
        with self.app.lock:
            if method == "POST" and path == "/api/repos/create":
                return self.create_repo(json.loads(body), user)
            if method == "PUT" and parts[0] == "lfs-upload":
                return self.lfs_upload(parts[1], int(parts[2]), body)
            if parts[0] == "api" and len(parts) >= 4 and parts[1] in _TYPES:
                return self.api(method, _TYPES[parts[1]], "/".join(parts[2:4]), parts[4:], body, user)
            if method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
                head = path[: -len(".git/info/lfs/objects/batch")].strip("/").split("/")
                repo_type = _TYPES.get(head[0], "model") if len(head) == 3 else "model"
                return self.lfs_batch(repo_type, "/".join(head[-2:]), json.loads(body), user)
            if method in ("GET", "HEAD") and "resolve" in parts:
                i = parts.index("resolve")
                prefix = parts[:i]
                repo_type = _TYPES.get(prefix[0], "model") if len(prefix) == 3 else "model"
                return self.resolve(repo_type, "/".join(prefix[-2:]), "/".join(parts[i + 2:]), user)
        self.fail(404, None, f"no route for {method} {path}")

    # -- repos ------------------------------------------------------------------------------------

    def create_repo(self, payload: dict, user) -> None:
        if not user:
            return self.fail(401, None, "Invalid username or password.")
        namespace = payload.get("organization") or user
        if namespace != user:
            return self.fail(403, None, "You don't have the rights to create a repo in this namespace")
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.app.endpoint}/{prefix}{repo_id}"
        if (repo_type, repo_id) in self.app.repos:
            return self.json_reply(409, {"error": "You already created this repo", "url": url},
                                   {"X-Error-Message": "You already created this repo"})
        repo = Repo(repo_id, repo_type, bool(payload.get("private")))
        repo.head = hashlib.sha1(f"init {repo_id}".encode()).hexdigest()
        self.app.repos[(repo_type, repo_id)] = repo
        self.json_reply(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex})

    def api(self, method: str, repo_type: str, repo_id: str, rest: list[str], body: bytes, user) -> None:
        action = rest[0] if rest else ""
        write = action in ("preupload", "commit")
        repo = self.repo(repo_type, repo_id, write, user)
        if repo is None:
            return
        if method == "GET" and action in ("", "revision"):
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            return self.json_reply(200, {"id": repo_id, "_id": repo_id, "sha": repo.head, "private": repo.private,
                                         "siblings": siblings, "author": repo_id.split("/")[0],
                                         "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "downloads": 0,
                                         "likes": 0})
        if method == "POST" and action == "preupload":
            files = []
            for item in json.loads(body)["files"]:
                sample = base64.b64decode(item["sample"])
                lfs = item["size"] > 10 * 1024 * 1024 or b"\x00" in sample or _binary(sample)
                files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                              "shouldIgnore": False, "oid": None})
            return self.json_reply(200, {"files": files, "commitOid": repo.head})
        if method == "POST" and action == "commit":
            return self.commit(repo, body)
        if method == "GET" and action == "tree":
            return self.tree(repo, "/".join(rest[2:]))
        self.fail(404, None, f"unsupported API call {method} {self.path}")

    def commit(self, repo: Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"] if lines and lines[0]["key"] == "header" else {}
        parent = header.get("parentCommit")
        if parent and parent != repo.head:
            return self.fail(412, None, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.files)
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                    else value["content"].encode()
                files[value["path"]] = (data, None, len(data))
            elif key == "lfsFile":
                data = self.app.lfs.get(value["oid"])
                if data is None or len(data) != int(value["size"]):
                    return self.fail(400, None, f"LFS object {value['oid']} was not uploaded")
                files[value["path"]] = (None, value["oid"], len(data))
            elif key == "deletedFile":
                if value["path"] not in files:
                    return self.fail(404, "EntryNotFound", f"{value['path']} does not exist")
                del files[value["path"]]
            elif key == "deletedFolder":
                files = {p: v for p, v in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                return self.fail(400, None, f"unknown commit operation {key}")
        repo.files = files
        repo.commits += 1
        self.app.commit_count += 1
        repo.head = hashlib.sha1(f"{repo.repo_id} {repo.commits} {uuid.uuid4()}".encode()).hexdigest()
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        self.json_reply(200, {"success": True, "commitOid": repo.head, "pullRequestUrl": None,
                              "commitUrl": f"{self.app.endpoint}/{prefix}{repo.repo_id}/commit/{repo.head}"})

    def tree(self, repo: Repo, path: str) -> None:
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        base = path.strip("/")
        entries, dirs = [], set()
        for name, (data, oid, size) in sorted(repo.files.items()):
            if base and not name.startswith(base + "/"):
                continue
            rel = name[len(base) + 1:] if base else name
            if not recursive and "/" in rel:
                dirs.add((base + "/" if base else "") + rel.split("/")[0])
                continue
            if recursive:
                segs = rel.split("/")[:-1]
                for i in range(1, len(segs) + 1):
                    dirs.add((base + "/" if base else "") + "/".join(segs[:i]))
            entry = {"type": "file", "path": name, "size": size, "oid": _git_oid(data, oid, size)}
            if oid:
                entry["lfs"] = {"oid": oid, "size": size, "pointerSize": 134}
            entries.append(entry)
        if base and not entries and not dirs:
            return self.fail(404, "EntryNotFound", f"{base} does not exist")
        entries += [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in dirs]
        self.json_reply(200, sorted(entries, key=lambda e: e["path"]))

    def resolve(self, repo_type: str, repo_id: str, path: str, user) -> None:
        repo = self.repo(repo_type, repo_id, False, user)
        if repo is None:
            return
        item = repo.files.get(path)
        if item is None:
            return self.fail(404, "EntryNotFound", f"{path} does not exist on main")
        data, oid, size = item
        if oid:
            data = self.app.lfs[oid]
        headers = {"X-Repo-Commit": repo.head, "ETag": f'"{oid or _git_oid(data, None, size)}"'}
        if oid:
            headers.update({"X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(size)})
        self.reply(200, data, headers)

    # -- git LFS ----------------------------------------------------------------------------------

    def lfs_batch(self, repo_type: str, repo_id: str, payload: dict, user) -> None:
        if self.repo(repo_type, repo_id, True, user) is None:
            return
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.app.lfs:
                entry["actions"] = {"upload": {
                    "href": f"{self.app.endpoint}/lfs-upload/{obj['oid']}/{obj['size']}", "header": {}}}
            objects.append(entry)
        self.json_reply(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def lfs_upload(self, oid: str, size: int, body: bytes) -> None:
        if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
            return self.fail(400, None, "sha256 or size of the uploaded LFS object does not match its oid")
        self.app.lfs[oid] = body
        self.reply(200, b"")


def _binary(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def _git_oid(data: bytes | None, lfs_oid: str | None, size: int) -> str:
    if lfs_oid:
        return hashlib.sha1(f"lfs {lfs_oid}".encode()).hexdigest()
    return hashlib.sha1(b"blob %d\x00" % size + (data or b"")).hexdigest()


class HubServer(ServerThread):
    def __init__(self, tokens: dict[str, str]):
        self.app = HubApp(tokens)
        super().__init__(HubHandler, self.app)
        self.app.endpoint = self.endpoint
