"""User-facing errors and secret redaction.

An :class:`APTError` is something the user can fix (a bad path, a wrong ratio, a corrupt checkpoint,
missing credentials). The CLI prints it as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import re

__all__ = ["APTError", "redact"]


class APTError(Exception):
    """An error caused by the user's input or environment; shown as one line, exit status 2."""

    exit_code = 2


# Why patterns and not a list of known secrets: errors often come from SDKs that embed request
# details (headers, presigned URLs) we never saw. Each pattern keeps the name and hides the value.
_SECRET_PATTERNS = [
    # Authorization / token headers, in HTTP or repr form.
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*(?:b?['\"])?)(bearer\s+|aws4-hmac-sha256\s+|oss\s+)?[^'\",\s]+(?:[^'\"\n]*)"),
     r"\1\2***"),
    # SigV4 parts and OSS V1 signatures wherever they appear (SDK debug logs print them in bytes reprs).
    (re.compile(r"(?i)\b(Credential=)[^/,\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)\b(Signature=)[0-9a-fA-F]+"), r"\1***"),
    (re.compile(r"\b(OSS )[A-Za-z0-9]+:[A-Za-z0-9+/=]+"), r"\1***"),
    # Query-string signatures of presigned URLs (S3 v2/v4, OSS).
    (re.compile(r"(?i)([?&](?:x-amz-signature|signature|x-amz-credential|x-amz-security-token|"
                r"ossaccesskeyid|security-token)=)[^&\s'\"]+"), r"\1***"),
    # key=value / key: value for anything that looks like a secret name.
    (re.compile(r"(?i)((?:access[_-]?key(?:[_-]?id)?|secret(?:[_-]?access)?[_-]?key|session[_-]?token|"
                r"api[_-]?token|token|password|secret)['\"]?\s*[:=]\s*['\"]?)[^'\",\s&]+"), r"\1***"),
    # Hugging Face user tokens and AWS access key ids standing alone.
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"), "hf_***"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "AKIA***"),
]


def redact(text: str) -> str:
    """Return *text* with credentials, tokens, Authorization headers and URL signatures masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
