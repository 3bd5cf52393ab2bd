"""``s3://bucket/prefix`` store through boto3 (AWS S3 and S3-compatibles via ``endpoint_url``).

Per-endpoint checksum mode (``[plugins.cloud.s3] checksum``), because boto3 >= 1.36 sends CRC
checksums by default and several S3-compatible stores reject or mangle them:

* ``sha256`` (default): send ``x-amz-checksum-sha256`` computed from our own content hash (an
  object's key *is* its sha256, so this is free) and turn boto3's automatic CRCs off; the server
  then rejects any upload corrupted in transit.
* ``md5``: send ``Content-MD5`` (the oldest, most widely supported form) and nothing else.
* ``when_supported`` / ``when_required``: boto3's own ``request_checksum_calculation`` modes.

Retries are ours (see :mod:`apt_plugin_cloud.retry`), so botocore's are switched off.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from apt_core.errors import APTError

from ..retry import AuthError, NotFoundError, TransientError, parse_retry_after
from .base import Backend, ObjectInfo, require_sdk, scrub, split_url

__all__ = ["S3Backend"]

_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
               "InvalidClientTokenId", "AllAccessDisabled", "AccountProblem"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "BadDigest",
                    "XAmzContentSHA256Mismatch", "InvalidDigest", "ConditionalRequestConflict",
                    "OperationAborted", "IncompleteBody"}
PART_SIZE = 16 * 1024 * 1024


class S3Backend(Backend):
    """A bucket and key prefix; objects written with one PUT, or multipart above the threshold."""

    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        self.bucket, self.prefix, query = split_url(url, "s3")
        settings.update(query)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        boto3 = require_sdk("boto3", "s3")
        from botocore.config import Config

        self.checksum = settings.get("checksum") or "sha256"
        self.multipart_threshold = int(float(settings.get("multipart_threshold_mb") or 64) * 1024 * 1024)
        endpoint_url = settings.get("endpoint_url") or None
        boto_mode = self.checksum if self.checksum in ("when_supported", "when_required") else "when_required"
        concurrency = int(settings.get("concurrency") or 4)
        addressing = settings.get("addressing_style") or ("path" if endpoint_url else "auto")
        s3_options = {"addressing_style": addressing}
        if self.checksum in ("sha256", "md5"):
            # Our checksum header is signed and verified by the server, which already binds the body to
            # the signature; hashing the payload again for SigV4 (botocore does on http://) is wasted CPU.
            s3_options["payload_signing_enabled"] = False
        config = Config(
            # With a custom endpoint, presigned URLs and some stores need SigV4 explicitly.
            signature_version="s3v4",
            s3=s3_options,
            retries={"total_max_attempts": 1},
            request_checksum_calculation=boto_mode,
            response_checksum_validation=boto_mode,
            max_pool_connections=max(10, concurrency * 2),
            connect_timeout=10,
            read_timeout=60,
        )
        region = settings.get("region") or None
        if endpoint_url and not region:
            region = "us-east-1"
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region,
                                                     config=config)
        self.max_parallel = max(1, concurrency)

    # -- helpers -----------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _translate(self, exc: Exception, what: str) -> Exception:
        """Map a boto3/botocore exception to retry's vocabulary, with a message free of secrets."""
        from botocore import exceptions as bx

        where = f"{self.url}: {what}"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            code, status = str(error.get("Code", "")), int(meta.get("HTTPStatusCode") or 0)
            message = scrub(str(error.get("Message", "")))
            if code in _AUTH_CODES or status in (401, 403):
                return AuthError(f"{where}: access denied ({code or status}: {message}); check the AWS credentials "
                                 f"in the environment or profile")
            if code == "NoSuchBucket":
                return NotFoundError(f"{self.url}: bucket {self.bucket!r} does not exist; create it first")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return NotFoundError(f"{where}: not found")
            if code in _TRANSIENT_CODES or status == 429 or status >= 500:
                retry_after = parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
                return TransientError(f"{where}: {code or status}: {message}", retry_after)
            return APTError(f"{where}: {code or status}: {message}")
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return AuthError(f"{self.url}: no usable AWS credentials found; set AWS_ACCESS_KEY_ID and "
                             f"AWS_SECRET_ACCESS_KEY or configure an AWS profile")
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionError, bx.HTTPClientError,
                            bx.ResponseStreamingError, bx.IncompleteReadError, bx.FlexibleChecksumError,
                            ConnectionError, TimeoutError)):
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")
        if type(exc).__module__.startswith("urllib3"):
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")
        return exc

    def _checksum_args(self, key: str, data: bytes) -> dict:
        if self.checksum == "sha256":
            name = key.rsplit("/", 1)[-1]
            # Objects are named by their sha256; reuse it instead of hashing again.
            digest = bytes.fromhex(name) if key.startswith("objects/") and len(name) == 64 \
                else hashlib.sha256(data).digest()
            return {"ChecksumSHA256": base64.b64encode(digest).decode()}
        if self.checksum == "md5":
            return {"ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
        return {}

    # -- protocol ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        if len(data) > self.multipart_threshold and not if_absent:
            self._multipart_put(key, data)
            return True
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   **self._checksum_args(key, data), **extra)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if if_absent and (status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed"):
                return False  # someone else created it first: create-if-absent did its job
            raise self._translate(exc, f"upload {key}") from None
        except Exception as exc:  # noqa: BLE001
            translated = self._translate(exc, f"upload {key}")
            if translated is exc:
                raise
            raise translated from None
        return True

    def _multipart_put(self, key: str, data: bytes) -> None:
        """Multipart upload, aborted on any failure so no orphaned parts keep costing storage."""
        full_key = self._key(key)
        checksum = {"ChecksumAlgorithm": "SHA256"} if self.checksum == "sha256" else {}
        upload = self._call(f"start multipart {key}", self.client.create_multipart_upload, Bucket=self.bucket,
                            Key=full_key, **checksum)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, offset in enumerate(range(0, len(data), PART_SIZE), start=1):
                body = data[offset:offset + PART_SIZE]
                args = {}
                if self.checksum == "sha256":
                    args["ChecksumSHA256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
                elif self.checksum == "md5":
                    args["ContentMD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
                reply = self._call(f"upload part {number} of {key}", self.client.upload_part, Bucket=self.bucket,
                                   Key=full_key, UploadId=upload_id, PartNumber=number, Body=body, **args)
                part = {"PartNumber": number, "ETag": reply["ETag"]}
                if "ChecksumSHA256" in reply:
                    part["ChecksumSHA256"] = reply["ChecksumSHA256"]
                parts.append(part)
            self._call(f"complete multipart {key}", self.client.complete_multipart_upload, Bucket=self.bucket,
                       Key=full_key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - prune's abort_incomplete_uploads is the safety net
                pass
            raise

    def get(self, key: str) -> bytes:
        def read() -> bytes:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            body = reply["Body"].read()
            if reply.get("ContentLength") is not None and len(body) != reply["ContentLength"]:
                raise TransientError(f"{self.url}: {key}: short read ({len(body)} of {reply['ContentLength']} bytes)")
            return body

        return self._call(f"download {key}", read)

    def exists(self, key: str) -> bool:
        try:
            self._call(f"check {key}", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFoundError as exc:
            if "does not exist" in str(exc):
                raise
            return False

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix)
        strip = len(self._key(""))
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], int(item["Size"]), item.get("LastModified"))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            reply = self._call("delete objects", self.client.delete_objects, Bucket=self.bucket,
                               Delete={"Objects": batch, "Quiet": True})
            errors = [e for e in reply.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                raise TransientError(f"{self.url}: {len(errors)} deletes failed, first: {errors[0].get('Code')}")

    def abort_incomplete_uploads(self, older_than_s: float) -> int:
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_s)
        reply = self._call("list multipart uploads", self.client.list_multipart_uploads, Bucket=self.bucket,
                           Prefix=self._key(""))
        aborted = 0
        for upload in reply.get("Uploads", []) or []:
            initiated = upload.get("Initiated")
            if initiated is None or initiated <= cutoff:
                self._call("abort multipart upload", self.client.abort_multipart_upload, Bucket=self.bucket,
                           Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
        return aborted

    def close(self) -> None:
        self.client.close()
