"""Write a directory completely or not at all: build it in a hidden sibling, then rename it into place.

Used by export, import and pull so that a failure (a bad checkpoint, a 401 from the Hub, Ctrl-C)
never leaves a half-written folder under the name the user asked for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from apt_core.errors import APTError

__all__ = ["staged_directory", "check_target"]


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty *out* unless *overwrite*; refuse a file in the way."""
    if out.exists() and not out.is_dir():
        raise APTError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise APTError(f"{out} already exists and is not empty (pass --force to replace it)")


@contextlib.contextmanager
def staged_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to *out*; on success it becomes *out* (replacing it if allowed)."""
    out = Path(out)
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
