"""Parallel plumbing shared by the transfer operations: an ordered bounded map and a byte progress bar."""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ordered_map", "ByteProgress"]

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """Like ``pool.map`` but with at most *window* items in flight.

    Why: each item carries a chunk (up to tens of MB) and the consumer needs results in order (to feed
    a whole-file hash), so an unbounded map would hold the whole checkpoint in memory.
    On an exception the remaining futures are cancelled and the error propagates.
    """
    pending: deque[Future] = deque()
    iterator = iter(items)
    try:
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        # Let running tasks finish before the caller tears anything down (temp files, clients).
        for future in pending:
            if not future.cancelled():
                try:
                    future.exception()
                except BaseException:  # noqa: BLE001 - already reporting the first error
                    pass


class ByteProgress:
    """Thread-safe tqdm bar counting bytes (shows MB/s); a no-op when disabled."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self._lock = threading.Lock()
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        if self._bar is not None and n:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
