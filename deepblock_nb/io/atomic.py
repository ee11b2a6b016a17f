"""Atomic file writes: a temporary file beside the target, flushed, then renamed.

A reader never sees a half-written file, even if the process dies mid-write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[IO[bytes]]:
    """Open a binary temporary file that replaces ``dest`` when the block succeeds.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    with atomic_open(dest, fsync=fsync) as fh:
        fh.write(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` (newlines as given)."""
    atomic_write_bytes(dest, text.encode("utf-8"))
