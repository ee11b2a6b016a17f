"""Helpers shared by the annotation formats: exact box conversion, checks, atomic writes."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path, PurePosixPath

import numpy as np

from deepblock_nb.errors import FormatError
from deepblock_nb.io.atomic import atomic_write_text

from ._records import AnnotationSet, FloatArray

__all__ = [
    "atomic_write_text",
    "check_class_names",
    "check_set",
    "check_xml_text",
    "fmt_float",
    "is_number",
    "name_problem",
    "read_bytes",
    "read_text",
    "relative_output_path",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]


def xywh_to_xyxy(xywh: FloatArray) -> FloatArray:
    """``(N, 4)`` COCO ``x, y, w, h`` -> ``(N, 4)`` ``x1, y1, x2, y2`` (``x2 = x + w``)."""
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def xyxy_to_xywh(xyxy: FloatArray, source_xywh: FloatArray | None = None) -> FloatArray:
    """``(N, 4)`` ``x1, y1, x2, y2`` -> ``(N, 4)`` COCO ``x, y, w, h``.

    ``w = x2 - x1``: converting back with :func:`xywh_to_xyxy` (``x1 + w``) gives
    ``x2`` bit for bit whenever ``0 <= x1 < x2`` (for a negative ``x1`` the last bit
    may differ). The other way, ``x + w - x`` often differs from ``w`` in the last
    bit, so rows of ``source_xywh`` (the boxes as a COCO file gave them) are returned
    unchanged wherever ``xyxy`` still equals ``x, y, x + w, y + h``.
    """
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    out = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    if source_xywh is not None and len(source_xywh) == len(xyxy):
        src = np.asarray(source_xywh, dtype=np.float64).reshape(-1, 4)
        same = np.all(xywh_to_xyxy(src) == xyxy, axis=1)  # [N]
        out[same] = src[same]
    return out


def is_number(value: object) -> bool:
    """A finite JSON number that is also a finite float64 (``bool`` is not a number here).

    JSON integers have no size limit: ``10**400`` is refused, not left to overflow later.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max
    return math.isfinite(value)


def name_problem(name: str, *, file: bool) -> str | None:
    """Why ``name`` (a category or, with ``file``, an image file name) cannot be used, or ``None``.

    No file system allows a NUL character in a name, and text with a lone surrogate
    (a ``\\udcXX`` escape in JSON) can be neither stored nor written back as UTF-8.
    """
    if not name.strip():
        return "is empty"
    if file and "\0" in name:
        return "contains a NUL character, which no file name can hold"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def read_bytes(path: Path, expected: str) -> bytes:
    """The content of ``path``; every reason it cannot be read becomes a ``FormatError``.

    Args:
        path: the file.
        expected: what the file should be, for the message ("a .json file").
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file", path) from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder, expected {expected}", path) from None
    except NotADirectoryError:
        raise FormatError(f"{path}: a folder on this path is a file", path) from None
    except OSError as exc:  # permissions, a name too long, an I/O error
        raise FormatError(f"{path}: cannot read the file ({exc.strerror or exc})", path) from None
    except ValueError as exc:  # a NUL character in the path
        raise FormatError(f"{path!r}: not a usable file name ({exc})", path) from None


def read_text(path: Path, expected: str, where: str | None = None) -> str:
    """``path`` decoded as UTF-8 (a leading byte-order mark is dropped), else ``FormatError``.

    ``where`` names the file in messages (default: its name).
    """
    data = read_bytes(path, expected)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"{where or path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})", path
        ) from None


def fmt_float(value: float) -> str:
    """Shortest text that reads back as the same float64; integral values without ``.0``."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def relative_output_path(file_name: str, suffix: str, out_dir: Path) -> Path:
    """``out_dir / file_name`` with ``suffix``, refusing names that leave ``out_dir``."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.name or rel.name in (".", "..") or "\0" in file_name:
        raise FormatError(f"{out_dir}: cannot write a file for the image name {file_name!r}", out_dir)
    return out_dir.joinpath(*rel.parts).with_suffix(suffix)


def check_class_names(aset: AnnotationSet, out: Path) -> None:
    """Refuse category names that ``classes.txt`` (one name a line, stripped) cannot hold.

    ``str.splitlines`` also breaks at form feeds, file separators, U+2028 and others,
    so any of those counts as a line break here.
    """
    for name in aset.categories:
        if name.splitlines() != [name] or name != name.strip():
            raise FormatError(
                f"{out}: category {name!r} cannot be written to classes.txt (line break or edge spaces)", out
            )


# characters XML 1.0 cannot hold at all, even escaped
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def check_xml_text(text: str, what: str, out: Path) -> None:
    """Refuse a name that would not read back from XML text as written: control
    characters XML forbids, a carriage return (parsers turn it into a line feed), or
    edge spaces (VOC readers strip them)."""
    if _XML_ILLEGAL.search(text) or "\r" in text or text != text.strip():
        raise FormatError(
            f"{out}: {what} {text!r} cannot be written to XML (control character, carriage return "
            "or edge spaces)",
            out,
        )


def check_set(aset: AnnotationSet, target: Path, *, need_size: bool = False) -> None:
    """Refuse to write a set that no reader would accept back.

    Raises:
        FormatError: duplicate category or file names, a name the readers refuse
            (blank, a NUL in a file name, a lone surrogate), a box of an unknown category,
            a box that is not finite or has ``x2 <= x1`` / ``y2 <= y1``, or (with
            ``need_size``) an image without width and height.
    """
    seen: set[str] = set()
    for name in aset.categories:
        if not isinstance(name, str) or not name:
            raise FormatError(f"{target.name}: category name {name!r} is not a non-empty string", target)
        problem = name_problem(name, file=False)
        if problem:
            raise FormatError(f"{target.name}: category name {name!r} {problem}", target)
        if name in seen:
            raise FormatError(f"{target.name}: category {name!r} is listed twice", target)
        seen.add(name)
    files: set[str] = set()
    for im in aset.images:
        where = f"{target.name}: image {im.file_name!r}"
        if not im.file_name:
            raise FormatError(f"{target.name}: an image has an empty file name", target)
        problem = name_problem(im.file_name, file=True)
        if problem:
            raise FormatError(f"{where} {problem}", target)
        if im.file_name in files:
            raise FormatError(f"{where} is listed twice", target)
        files.add(im.file_name)
        if need_size and (im.width is None or im.height is None):
            raise FormatError(f"{where} has no width/height, which this format needs", target)
        for label in im.category:
            if label not in seen:
                raise FormatError(f"{where} has a box of unknown category {label!r}", target)
        if len(im) == 0:
            continue
        if not np.isfinite(im.xyxy).all():
            raise FormatError(f"{where} has a box with a non-finite coordinate", target)
        bad = np.flatnonzero((im.xyxy[:, 2] <= im.xyxy[:, 0]) | (im.xyxy[:, 3] <= im.xyxy[:, 1]))
        if len(bad):
            raise FormatError(
                f"{where}: box {int(bad[0])} is empty or inverted {im.xyxy[bad[0]].tolist()}", target
            )
        if im.scores is not None and not np.isfinite(im.scores).all():
            raise FormatError(f"{where} has a non-finite score", target)
