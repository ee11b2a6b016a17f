"""The project's file layout: safe names, cheap content hashes, atomic copies, and
the staging of image files added to a project (copied under ``images/`` with a
temporary name, renamed inside the transaction that records them, removed again
if that transaction fails)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.errors import ImageReadError, PathError
from deepblock_nb.io.atomic import atomic_open, atomic_write_bytes
from deepblock_nb.io.frames import encode_png
from deepblock_nb.io.images import MULTI_FILE_SUFFIXES, probe_image

__all__ = [
    "ImageSourceLike",
    "Staging",
    "atomic_write_bytes",
    "content_hash",
    "copy_atomic",
    "safe_image_name",
    "within",
]

#: what can be added as an image: a path, the bytes of an image file, a uint8 array
ImageSourceLike = str | os.PathLike[str] | bytes | bytearray | np.ndarray

_SAMPLES = 16
_SAMPLE_BYTES = 64 * 1024


def content_hash(path: str | os.PathLike[str]) -> str:
    """A cheap fingerprint: the size plus blake2b of up to 16 spread 64 KiB samples.

    Reads at most 1 MiB whatever the file size, so it stays fast on 10 GB images.
    Files up to 1 MiB are hashed whole.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        if size <= _SAMPLES * _SAMPLE_BYTES:
            h.update(f.read())
        else:
            step = (size - _SAMPLE_BYTES) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                f.seek(i * step)
                h.update(f.read(_SAMPLE_BYTES))
    return f"{size:x}-{h.hexdigest()}"


def safe_image_name(name: str) -> str:
    """Check a name used as a file name under ``images/``; return it NFC-normalised.

    Unicode and spaces are fine. Path separators, ``..``, control characters and
    empty names are refused with :class:`PathError`: a name must not leave ``images/``.
    """
    norm = unicodedata.normalize("NFC", str(name)).strip()
    if not norm or norm in (".", ".."):
        raise PathError(f"image name {name!r} is empty; give the image a file name")
    if "/" in norm or "\\" in norm or "\x00" in norm:
        raise PathError(
            f"image name {name!r} contains a path separator; names must be plain file names "
            "(a name must not point outside the project's images/ folder)"
        )
    if any(unicodedata.category(ch) == "Cc" for ch in norm):
        raise PathError(f"image name {name!r} contains control characters")
    if len(norm.encode("utf-8")) > 255:
        raise PathError(f"image name {name[:40]!r}... is longer than 255 bytes")
    return norm


def within(base: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``base``; refuse one that escapes it (``../``, absolute)."""
    try:
        base_r = base.resolve()
        target = (base_r / relative).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a name the file system refuses
        raise PathError(f"{relative!r} is not a usable file name under {base} ({exc})") from None
    if target != base_r and base_r not in target.parents:
        raise PathError(f"{relative!r} points outside {base}; refusing to read or write there")
    return target


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary file in the same folder, then rename."""
    with atomic_open(dest, fsync=False) as fh, open(src, "rb") as f:
        shutil.copyfileobj(f, fh, 1 << 20)


class Staging:
    """Image files being added to the project folder ``root`` by one call.

    ``stage(...)`` probes a source (headers only) and, when it is to be copied,
    copies it under ``images/`` with a temporary name; ``commit(entries)``, called
    inside the transaction that records them, gives copies their final names.
    Used as a context manager: on an exception every file it wrote is removed.
    """

    def __init__(self, root: Path, name_taken: Callable[[str], bool]) -> None:
        self.root = root
        self._name_taken = name_taken
        self._files: list[Path] = []

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            for p in self._files:
                p.unlink(missing_ok=True)

    def stage(self, source: ImageSourceLike, copy: bool, name: str | None) -> dict[str, Any]:
        """Probe and (when copying) copy one source; returns its entry for ``Images.insert``.

        Raises:
            ImageReadError: the source is missing or not a readable image (named).
            PathError: the name is unsafe or already taken.
        """
        images_dir = self.root / "images"
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(self._files)}"
        data: bytes | None = None
        if isinstance(source, (bytes, bytearray)):
            name = safe_image_name(name or f"upload-{stamp}")
            origin, data = f"uploaded image {name!r}", bytes(source)
        elif isinstance(source, np.ndarray):
            name = safe_image_name(name or f"frame-{stamp}.png")
            origin, data = f"frame {name!r}", encode_png(source, name)
        else:
            src = Path(source).expanduser()
            if not src.is_file():
                raise ImageReadError(f"{src}: no such image file", src)
            name = safe_image_name(name or src.name)
            origin = str(src)
        if self._name_taken(name):
            raise PathError(
                f"{origin}: the project already has an image named {name!r}; rename the file or pass name=..."
            )
        tmp = images_dir / f".incoming-{time.time_ns()}-{len(self._files)}"
        if data is not None:  # bytes are written first: the probe reads a file
            atomic_write_bytes(tmp, data, fsync=False)
            self._files.append(tmp)
            copy, probe_path = True, tmp
        else:
            probe_path = src
        try:
            info = probe_image(probe_path)  # headers only; refuses a bad file before any copy
        except ImageReadError as exc:
            raise type(exc)(f"{origin}: {_strip_path(str(exc), probe_path)}", origin) from exc
        if data is None and copy and src.suffix.lower() in MULTI_FILE_SUFFIXES:
            raise PathError(
                f"{origin}: this whole-slide image keeps its pixels in files beside it (a {src.suffix} "
                "slide); add it with copy=False so the project reads it where it is"
            )
        if data is None:
            if copy:
                copy_atomic(src, tmp)
                self._files.append(tmp)
            else:
                tmp = src.resolve()
        stored = f"images/{name}" if copy else str(tmp)
        if copy and (self.root / stored).exists():
            raise PathError(f"{origin}: a file named {name!r} already exists in {images_dir}")
        return {
            "name": name,
            "origin": origin,
            "copied": copy,
            "stored": stored,
            "tmp": str(tmp.relative_to(self.root)) if copy else None,
            "hash": content_hash(tmp),
            "size": tmp.stat().st_size,
            "width": int(info.width),
            "height": int(info.height),
            "format": str(info.format),
            "mpp": info.mpp,
        }

    def check_names(self, entries: list[dict[str, Any]]) -> None:
        """Refuse two entries of one call with the same name."""
        seen: set[str] = set()
        for e in entries:
            if e["name"] in seen:
                raise PathError(f"two images being added are named {e['name']!r}; give them distinct names")
            seen.add(e["name"])

    def commit(self, entries: list[dict[str, Any]]) -> None:
        """Give the staged copies their final names (inside the recording transaction)."""
        for e in entries:
            if e["copied"]:
                final = self.root / e["stored"]
                (self.root / e["tmp"]).replace(final)
                self._files.append(final)


def _strip_path(message: str, path: Path) -> str:
    return message.replace(f"{path}: ", "").replace(str(path), "the file")
