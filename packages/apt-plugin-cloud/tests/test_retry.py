"""Retry policy: capped exponential backoff, Retry-After honoured, no retries on auth/not-found errors."""

from __future__ import annotations

import pytest

from apt_core.errors import APTError
from apt_plugin_cloud.retry import (
    AuthError,
    NotFoundError,
    RetryPolicy,
    TransientError,
    call_with_retry,
    parse_retry_after,
)


def _flaky(failures: list[Exception], value="ok"):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_backoff_is_capped_and_retry_after_wins():
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=3.0)
    fn, calls = _flaky([TransientError("503")] * 6 + [TransientError("429", retry_after=7.5)])
    assert call_with_retry(fn, "x", policy, sleep=sleeps.append) == "ok"
    assert len(calls) == 8
    assert all(0 <= s <= 3.0 for s in sleeps[:-1]) and sleeps[-1] == 7.5


def test_gives_up_with_a_clear_error():
    fn, calls = _flaky([TransientError("SlowDown")] * 10)
    with pytest.raises(APTError, match="upload x: giving up after 3 attempts: SlowDown"):
        call_with_retry(fn, "upload x", RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert len(calls) == 3


@pytest.mark.parametrize("error", [AuthError("403"), NotFoundError("404"), APTError("bad")])
def test_fail_fast(error):
    fn, calls = _flaky([error])
    with pytest.raises(type(error)):
        call_with_retry(fn, "x", RetryPolicy(), sleep=lambda s: pytest.fail("must not sleep"))
    assert len(calls) == 1


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Fri, 27 Nov 2099 08:00:00 GMT") and parse_retry_after(
        "Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
