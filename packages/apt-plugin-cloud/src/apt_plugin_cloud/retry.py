"""Retries with capped exponential backoff.

Backends translate their SDK's exceptions into the small set below; this module decides what to do:
:class:`TransientError` (429, 5xx, SlowDown, connection reset, a checksum mismatch in transit) is
retried with full-jitter exponential backoff capped at ``max_delay``, honouring a server's
Retry-After; everything else (401/403/404, a user error) fails at once — retrying a wrong password
only delays the message the user needs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from apt_core.errors import APTError, redact

__all__ = ["TransientError", "AuthError", "NotFoundError", "RetryPolicy", "call_with_retry"]

log = logging.getLogger("apt_plugin_cloud.retry")
T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(redact(message))
        self.retry_after = retry_after


class AuthError(APTError):
    """Credentials missing, wrong or not allowed (401/403): never retried."""


class NotFoundError(APTError):
    """The bucket, repository or key does not exist (404): never retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first try."""

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        # Full jitter (AWS architecture blog): spreads retries of parallel uploads apart.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def call_with_retry(fn: Callable[[], T], what: str, policy: RetryPolicy | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Call *fn*, retrying :class:`TransientError`; after the last attempt raise an APTError naming *what*."""
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except TransientError as exc:
            if attempt == policy.max_attempts:
                raise APTError(f"{what}: giving up after {attempt} attempts: {exc}") from None
            pause = policy.delay(attempt, exc.retry_after)
            log.info("%s: %s; retry %d/%d in %.2fs", what, exc, attempt, policy.max_attempts - 1, pause)
            sleep(pause)
    raise AssertionError("unreachable")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unparsable."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
