"""Helpers shared by the annotation formats: exact box conversion, checks, atomic writes."""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np

from deepblock_nb.errors import FormatError
from deepblock_nb.io.atomic import atomic_write_text

from ._records import AnnotationSet, FloatArray

__all__ = [
    "atomic_write_text",
    "check_set",
    "fmt_float",
    "is_number",
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
    """A finite JSON number (``bool`` is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt_float(value: float) -> str:
    """Shortest text that reads back as the same float64; integral values without ``.0``."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def relative_output_path(file_name: str, suffix: str, out_dir: Path) -> Path:
    """``out_dir / file_name`` with ``suffix``, refusing names that leave ``out_dir``."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.name or rel.name in (".", ".."):
        raise FormatError(f"{file_name!r}: cannot write a file for this image name", out_dir)
    return out_dir.joinpath(*rel.parts).with_suffix(suffix)


def check_set(aset: AnnotationSet, target: Path, *, need_size: bool = False) -> None:
    """Refuse to write a set that no reader would accept back.

    Raises:
        FormatError: duplicate category or file names, a box of an unknown category,
            a box that is not finite or has ``x2 <= x1`` / ``y2 <= y1``, or (with
            ``need_size``) an image without width and height.
    """
    seen: set[str] = set()
    for name in aset.categories:
        if not isinstance(name, str) or not name:
            raise FormatError(f"{target.name}: category name {name!r} is not a non-empty string", target)
        if name in seen:
            raise FormatError(f"{target.name}: category {name!r} is listed twice", target)
        seen.add(name)
    files: set[str] = set()
    for im in aset.images:
        where = f"{target.name}: image {im.file_name!r}"
        if not im.file_name:
            raise FormatError(f"{target.name}: an image has an empty file name", target)
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
