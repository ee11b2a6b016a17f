"""Cheap completeness checks on a file's structure, reading a few bytes only.

Each check raises ``ImageReadError`` naming the file when it is visibly
truncated; none decodes pixels.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

from deepblock_nb.errors import ImageReadError

__all__ = ["check_complete", "parse_bmp_header"]

_TAIL = 4096


def _tail(path: Path, size: int, n: int = _TAIL) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, size - n))
        return f.read()


def _truncated(path: Path, what: str) -> ImageReadError:
    return ImageReadError(f"{path}: truncated or damaged file: {what}", path)


def _png(path: Path, size: int) -> None:
    if b"IEND" not in _tail(path, size):
        raise _truncated(path, "the PNG has no IEND chunk at its end")


def _jpeg(path: Path, size: int) -> None:
    if b"\xff\xd9" not in _tail(path, size):
        raise _truncated(path, "the JPEG has no end-of-image marker (FFD9)")


def _gif(path: Path, size: int) -> None:
    if not _tail(path, size, 64).rstrip(b"\x00").endswith(b";"):
        raise _truncated(path, "the GIF has no trailer byte (0x3B) at its end")


def parse_bmp_header(head: bytes, path: Path) -> dict[str, int]:
    """Fields of a BMP file header and BITMAPINFOHEADER (or larger) from its first bytes.

    Raises:
        ImageReadError: ``head`` is too short or not a BMP header (naming ``path``).
    """
    if len(head) < 30 or head[:2] != b"BM":
        raise _truncated(path, "not a BMP header")
    offset, dib = struct.unpack_from("<II", head, 10)
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        w, h, _, bpp = struct.unpack_from("<HHHH", head, 18)
        return {
            "offset": offset,
            "dib": dib,
            "width": w,
            "height": h,
            "bpp": bpp,
            "compression": 0,
            "image_size": 0,
        }
    if len(head) < 54:
        raise _truncated(path, "BMP header too short")
    w, h, _, bpp, comp, image_size = struct.unpack_from("<iiHHII", head, 18)
    return {
        "offset": offset,
        "dib": dib,
        "width": w,
        "height": h,
        "bpp": bpp,
        "compression": comp,
        "image_size": image_size,
    }


def _bmp(path: Path, size: int) -> None:
    with path.open("rb") as f:
        head = f.read(64)
    hdr = parse_bmp_header(head, path)
    if hdr["compression"] in (0, 3, 6):  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS: rows stored as is
        stride = ((abs(hdr["width"]) * hdr["bpp"] + 31) // 32) * 4
        need = hdr["offset"] + stride * abs(hdr["height"])
    else:
        need = hdr["offset"] + hdr["image_size"]
    if need > size:
        raise _truncated(path, f"the BMP pixel data needs {need} bytes but the file has {size}")


def _ico(path: Path, size: int) -> None:
    with path.open("rb") as f:
        head = f.read(6)
        if len(head) < 6:
            raise _truncated(path, "ICO header too short")
        (count,) = struct.unpack_from("<H", head, 4)
        table = f.read(16 * count)
    if len(table) < 16 * count:
        raise _truncated(path, "the ICO directory is cut short")
    for i in range(count):
        n, off = struct.unpack_from("<II", table, 16 * i + 8)
        if off + n > size:
            raise _truncated(path, f"icon {i} ends at byte {off + n} but the file has {size}")


def _jp2(path: Path, size: int) -> None:
    with path.open("rb") as f:
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                raise _truncated(path, f"a JPEG 2000 box header at byte {pos} is cut short")
            length, kind = struct.unpack_from(">I4s", head)
            if length == 1:
                if len(head) < 16:
                    raise _truncated(path, "a JPEG 2000 box header is cut short")
                (length,) = struct.unpack_from(">Q", head, 8)
            elif length == 0:  # the last box runs to the end of the file
                if kind == b"jp2c" and b"\xff\xd9" not in _tail(path, size, 64):
                    raise _truncated(path, "the JPEG 2000 codestream has no end marker")
                return
            if length < 8 or pos + length > size:
                raise _truncated(path, f"JPEG 2000 box {kind!r} at byte {pos} runs past the end of the file")
            pos += length


def _j2k(path: Path, size: int) -> None:
    if b"\xff\xd9" not in _tail(path, size, 64):
        raise _truncated(path, "the JPEG 2000 codestream has no end marker (FFD9)")


def _webp(path: Path, size: int) -> None:
    with path.open("rb") as f:
        head = f.read(12)
    (riff,) = struct.unpack_from("<I", head, 4)
    if riff + 8 > size:
        raise _truncated(path, f"the WebP RIFF container needs {riff + 8} bytes but the file has {size}")


_CHECKS: dict[str, Callable[[Path, int], None]] = {
    "png": _png,
    "jpeg": _jpeg,
    "gif": _gif,
    "bmp": _bmp,
    "ico": _ico,
    "jp2": _jp2,
    "j2k": _j2k,
    "webp": _webp,
}


def check_complete(path: Path, fmt: str) -> None:
    """Raise ``ImageReadError`` if the file of format ``fmt`` is visibly truncated."""
    check = _CHECKS.get(fmt)
    if check is not None:
        check(path, path.stat().st_size)
