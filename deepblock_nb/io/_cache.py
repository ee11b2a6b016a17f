"""Derived pixel caches: decoded 8-bit RGB arrays stored as ``.npy`` and memory-mapped.

A format without random access (PNG, JPEG, GIF, ...) is decoded once; the RGB
array is written under a cache folder and every later window is a slice of a
memory map. Cache files are keyed by the source's size, modification time and a
hash of its first and last bytes, so an edited file gets a new entry. They are
plain derived data: deleting them is always safe (they are rebuilt on demand),
and the original image is never touched. Large PNG/JPEG/GIF/WebP are cached as
tiled pyramidal TIFFs instead (``_vips``), under the same key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["cache_path", "load_cached", "spill_to_temp", "write_atomically", "write_cached"]

U8 = npt.NDArray[np.uint8]
_SAMPLE = 64 * 1024
CACHE_VERSION = 1


def content_key(path: Path) -> str:
    """A cheap key of a file's content: size, mtime and the hash of its first and last 64 KiB."""
    st = path.stat()
    h = hashlib.blake2b(digest_size=10)
    h.update(f"v{CACHE_VERSION}:{st.st_size}:{st.st_mtime_ns}".encode())
    with path.open("rb") as f:
        h.update(f.read(_SAMPLE))
        if st.st_size > _SAMPLE:
            f.seek(max(_SAMPLE, st.st_size - _SAMPLE))
            h.update(f.read(_SAMPLE))
    return h.hexdigest()


def cache_path(cache_dir: Path, source: Path, kind: str = "rgb", suffix: str = ".npy") -> Path:
    """Where derived pixels of ``source`` (``kind``: ``"rgb"``, ``"pyramid"`` or an overview name) are cached."""
    return cache_dir / f"{source.stem[:40]}-{content_key(source)}.{kind}{suffix}"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary name beside ``path``, then rename it to ``path``.

    Readers never see a half-written file; on failure the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_cached(path: Path) -> U8 | None:
    """The cached ``(H, W, 3)`` uint8 memory map, or ``None`` if missing or unusable."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        return None
    return arr  # type: ignore[no-any-return]


def write_cached(path: Path, rgb: U8) -> U8:
    """Write ``rgb`` atomically to ``path`` and return it memory-mapped from there."""

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, rgb, allow_pickle=False)

    write_atomically(path, save)
    mapped = load_cached(path)
    if mapped is None:  # pragma: no cover - we just wrote it: only a failing disk gets here, no input
        raise OSError(f"cannot read back the image cache {path}")
    return mapped


def spill_to_temp(rgb: U8) -> tuple[U8, Path]:
    """Move a large decoded array into a private temporary file; returns the map and its path."""
    fd, name = tempfile.mkstemp(prefix="dbn-pixels-", suffix=".npy")
    os.close(fd)
    path = Path(name)
    with path.open("wb") as f:
        np.save(f, rgb, allow_pickle=False)
    mapped = load_cached(path)
    assert mapped is not None  # our own private file, written just above
    return mapped, path
