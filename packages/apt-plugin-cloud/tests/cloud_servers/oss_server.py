"""A protocol-level Aliyun OSS server for tests (no installable OSS server exists).

Implements what the backend uses, as the OSS REST API documents it: PutObject (with
``x-oss-forbid-overwrite``), GetObject / HeadObject (with ``x-oss-hash-crc64ecma``), DeleteObject,
ListObjectsV2 (``list-type=2``, continuation tokens, ``encoding-type=url``), XML error bodies, and
signature V1 verification (``Authorization: OSS <id>:<base64 hmac-sha1>``), so wrong credentials
are rejected with 403 as the real service does. Path-style addressing (oss2 uses it for IP endpoints).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from email.utils import formatdate
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

import crcmod

from .http_base import Handler, ServerThread

__all__ = ["OSSServer", "start_oss"]

_crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)
# Sub-resources that take part in the V1 string-to-sign (the subset our requests can carry).
_SUBRESOURCES = {"acl", "uploads", "uploadId", "partNumber", "delete", "continuation-token", "stat", "symlink",
                 "tagging", "versionId", "versions", "security-token", "objectMeta"}


class OSSApp:
    def __init__(self, credentials: dict[str, str], buckets: list[str]):
        self.credentials = credentials
        self.buckets: dict[str, dict[str, tuple[bytes, float]]] = {b: {} for b in buckets}
        self.lock = threading.Lock()
        self.requests = 0


class OSSHandler(Handler):
    def error(self, status: int, code: str, message: str) -> None:
        rid = uuid.uuid4().hex.upper()[:24]
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
                f"</Message><RequestId>{rid}</RequestId><HostId>127.0.0.1</HostId></Error>").encode()
        self.reply(status, body, {"x-oss-request-id": rid}, "application/xml")

    def authorized(self, bucket: str, key: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("OSS ") or ":" not in header:
            self.error(403, "AccessDenied", "AccessDenied: anonymous access is not allowed")
            return False
        access_id, _, signature = header[4:].partition(":")
        secret = self.app.credentials.get(access_id)
        if secret is None:
            self.error(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
            return False
        oss_headers = sorted((k.lower(), v) for k, v in self.headers.items() if k.lower().startswith("x-oss-"))
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in oss_headers)
        subs = sorted((k, v) for k, v in self.query.items() if k in _SUBRESOURCES)
        sub = ("?" + "&".join(f"{k}={v}" if v else k for k, v in subs)) if subs else ""
        resource = f"/{bucket}/{key}{sub}"
        to_sign = "\n".join([self.command, self.headers.get("Content-MD5", ""), self.headers.get("Content-Type", ""),
                             self.headers.get("Date", ""), canonical_headers + resource])
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            self.error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                     "signature you provided.")
            return False
        return True

    def route(self, method: str) -> None:
        with self.app.lock:
            self.app.requests += 1
        path = self.split.path.lstrip("/")
        bucket, _, raw_key = path.partition("/")
        key = unquote(raw_key)
        body = self.read_body() if method in ("PUT", "POST") else b""
        if not self.authorized(bucket, key):
            return
        objects = self.app.buckets.get(bucket)
        if objects is None:
            self.error(404, "NoSuchBucket", "The specified bucket does not exist.")
            return
        if not key:
            if method == "GET" and self.query.get("list-type") == "2":
                self.list_objects(objects)
            else:
                self.error(400, "NotImplemented", f"{method} on a bucket is not implemented by this test server")
            return
        if method == "PUT":
            self.put_object(objects, key, body)
        elif method in ("GET", "HEAD"):
            with self.app.lock:
                item = objects.get(key)
            if item is None:
                if method == "HEAD":
                    self.reply(404, b"", {"x-oss-request-id": "0"})
                else:
                    self.error(404, "NoSuchKey", "The specified key does not exist.")
                return
            data, mtime = item
            self.reply(200, data, {"ETag": f'"{hashlib.md5(data).hexdigest().upper()}"',
                                   "x-oss-hash-crc64ecma": str(_crc64(data)),
                                   "Last-Modified": formatdate(mtime, usegmt=True),
                                   "x-oss-request-id": uuid.uuid4().hex[:24]})
        elif method == "DELETE":
            with self.app.lock:
                objects.pop(key, None)
            self.reply(204, b"", {"x-oss-request-id": uuid.uuid4().hex[:24]})
        else:
            self.error(405, "MethodNotAllowed", method)

    def put_object(self, objects: dict, key: str, body: bytes) -> None:
        md5 = self.headers.get("Content-MD5")
        if md5 and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
            self.error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
            return
        with self.app.lock:
            if self.headers.get("x-oss-forbid-overwrite", "").lower() == "true" and key in objects:
                exists = True
            else:
                exists = False
                objects[key] = (body, time.time())
        if exists:
            self.error(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")
            return
        self.reply(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest().upper()}"',
                              "x-oss-hash-crc64ecma": str(_crc64(body)), "x-oss-request-id": uuid.uuid4().hex[:24]})

    def list_objects(self, objects: dict) -> None:
        q = self.query
        prefix, token = q.get("prefix", ""), q.get("continuation-token", "")
        limit = int(q.get("max-keys") or 100)
        encode = q.get("encoding-type") == "url"
        with self.app.lock:
            keys = sorted(k for k in objects if k.startswith(prefix) and k > token)
            page = [(k, objects[k]) for k in keys[:limit]]
        truncated = len(keys) > limit
        enc = (lambda s: quote(s, safe="")) if encode else escape
        parts = [f"<Name>{escape(self.split.path.strip('/'))}</Name><Prefix>{enc(prefix)}</Prefix>"
                 f"<MaxKeys>{limit}</MaxKeys><KeyCount>{len(page)}</KeyCount>"
                 f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
        if encode:
            parts.append("<EncodingType>url</EncodingType>")
        if truncated:
            parts.append(f"<NextContinuationToken>{enc(page[-1][0])}</NextContinuationToken>")
        for key, (data, mtime) in page:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
            parts.append(f"<Contents><Key>{enc(key)}</Key><LastModified>{stamp}</LastModified>"
                         f'<ETag>"{hashlib.md5(data).hexdigest().upper()}"</ETag><Type>Normal</Type>'
                         f"<Size>{len(data)}</Size><StorageClass>Standard</StorageClass></Contents>")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>' + "".join(parts)
                + "</ListBucketResult>").encode()
        self.reply(200, body, {"x-oss-request-id": uuid.uuid4().hex[:24]}, "application/xml")


class OSSServer(ServerThread):
    def __init__(self, credentials: dict[str, str], buckets: list[str]):
        self.app = OSSApp(credentials, buckets)
        super().__init__(OSSHandler, self.app)


def start_oss(access_key: str, secret: str, buckets: list[str]) -> OSSServer:
    return OSSServer({access_key: secret}, buckets)
