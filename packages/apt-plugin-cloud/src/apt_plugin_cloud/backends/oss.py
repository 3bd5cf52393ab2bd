"""``oss://bucket/prefix`` store on Aliyun OSS through oss2.

Endpoint from ``[plugins.cloud.oss] endpoint`` or ``OSS_ENDPOINT``; credentials from
``OSS_ACCESS_KEY_ID`` / ``OSS_ACCESS_KEY_SECRET`` (/ ``OSS_SESSION_TOKEN``), never from config.

Integrity: oss2 checks the CRC-64/XZ (ECMA-182) of uploads itself, but on download
``get_object(...).read()`` does *not* raise on a mismatch, so :meth:`OSSBackend.get` compares
``client_crc`` with ``server_crc`` explicitly (and the engine re-checks sha256 on top).
Create-if-absent uses ``x-oss-forbid-overwrite: true`` (409 FileAlreadyExists when taken).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from xml.etree import ElementTree

from apt_core.errors import APTError

from ..retry import AuthError, NotFoundError, TransientError, parse_retry_after
from .base import Backend, ObjectInfo, require_sdk, scrub, split_url

__all__ = ["OSSBackend"]

_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "SecurityTokenExpired",
               "InvalidSecurityToken"}
_TRANSIENT_CODES = {"RequestTimeout", "InternalError", "ServiceUnavailable", "SlowDown", "TooManyRequests",
                    "InvalidDigest", "BadDigest", "RequestTimeTooSkewed"}


class OSSBackend(Backend):
    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        bucket_name, self.prefix, query = split_url(url, "oss")
        settings.update(query)
        self.url = f"oss://{bucket_name}/{self.prefix}".rstrip("/")
        oss2 = require_sdk("oss2", "oss")
        from oss2.credentials import EnvironmentVariableCredentialsProvider

        endpoint = settings.get("endpoint") or os.environ.get("OSS_ENDPOINT")
        if not endpoint:
            raise APTError(f"{self.url}: no OSS endpoint; set [plugins.cloud.oss] endpoint or OSS_ENDPOINT "
                           f"(e.g. https://oss-cn-hangzhou.aliyuncs.com)")
        if not os.environ.get("OSS_ACCESS_KEY_ID") or not os.environ.get("OSS_ACCESS_KEY_SECRET"):
            raise AuthError(f"{self.url}: no OSS credentials; set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET")
        provider = EnvironmentVariableCredentialsProvider()
        region = settings.get("region")
        auth = oss2.ProviderAuthV4(provider) if region else oss2.ProviderAuth(provider)
        self.bucket = oss2.Bucket(auth, endpoint, bucket_name, connect_timeout=30, enable_crc=True,
                                  region=region or None)
        self.bucket_name = bucket_name
        self.max_parallel = max(1, int(settings.get("concurrency") or 4))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _translate(self, exc: Exception, what: str) -> Exception:
        from oss2 import exceptions as ox

        where = f"{self.url}: {what}"
        if isinstance(exc, ox.InconsistentError):
            return TransientError(f"{where}: CRC-64 mismatch between client and server ({exc.body})")
        if isinstance(exc, ox.RequestError):
            return TransientError(f"{where}: connection error: {scrub(str(exc.exception))}")
        if isinstance(exc, ox.ClientError):
            return APTError(f"{where}: {scrub(str(exc.body))}")
        if isinstance(exc, ox.ServerError):
            code, status, message = exc.code or "", int(exc.status), scrub(str(exc.message or ""))
            if code in _AUTH_CODES or status in (401, 403):
                return AuthError(f"{where}: access denied ({code or status}: {message}); check OSS_ACCESS_KEY_ID "
                                 f"/ OSS_ACCESS_KEY_SECRET")
            if code == "NoSuchBucket":
                return NotFoundError(f"{self.url}: bucket {self.bucket_name!r} does not exist; create it first")
            if status == 404:
                return NotFoundError(f"{where}: not found")
            if code in _TRANSIENT_CODES or status == 429 or status >= 500:
                return TransientError(f"{where}: {code or status}: {message}",
                                      parse_retry_after((exc.headers or {}).get("Retry-After")))
            return APTError(f"{where}: {code or status}: {message}")
        if isinstance(exc, (ConnectionError, TimeoutError, ElementTree.ParseError)) or \
                type(exc).__module__.startswith(("requests", "urllib3")):
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")
        return exc

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        from oss2 import exceptions as ox

        headers = {"x-oss-forbid-overwrite": "true"} if if_absent else None
        try:
            self.bucket.put_object(self._key(key), data, headers=headers)
        except ox.ServerError as exc:
            if if_absent and exc.status == 409 and exc.code in ("FileAlreadyExists", "ObjectAlreadyExists"):
                return False
            raise self._translate(exc, f"upload {key}") from None
        except Exception as exc:  # noqa: BLE001
            translated = self._translate(exc, f"upload {key}")
            if translated is exc:
                raise
            raise translated from None
        return True

    def get(self, key: str) -> bytes:
        def read() -> bytes:
            result = self.bucket.get_object(self._key(key))
            data = result.read()
            # oss2 computes client_crc while reading but never compares it: do it here.
            if result.server_crc is not None and result.client_crc != result.server_crc:
                raise TransientError(f"{self.url}: download {key}: CRC-64 mismatch "
                                     f"(client {result.client_crc}, server {result.server_crc})")
            if result.content_length is not None and len(data) != result.content_length:
                raise TransientError(f"{self.url}: download {key}: short read")
            return data

        return self._call(f"download {key}", read)

    def exists(self, key: str) -> bool:
        return bool(self._call(f"check {key}", self.bucket.object_exists, self._key(key)))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        import oss2

        strip = len(self._key(""))
        items = self._call(f"list {prefix}",
                           lambda: list(oss2.ObjectIteratorV2(self.bucket, prefix=self._key(prefix))))
        for item in items:
            yield ObjectInfo(item.key[strip:], int(item.size),
                             datetime.fromtimestamp(item.last_modified, timezone.utc) if item.last_modified else None)

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.bucket.delete_object, self._key(key))
