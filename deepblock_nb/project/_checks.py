"""Argument checks shared by the Project and its services: each refusal is a
:class:`DeepBlockError` naming the value and what would be accepted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.boxes import clip_boxes, valid_boxes
from deepblock_nb.errors import (
    AnnotationError,
    ArgumentError,
    ArgumentTypeError,
    CategoryError,
    DeepBlockError,
    RecordNotFoundError,
)
from deepblock_nb.store import SPLITS, Category, ImageRecord

__all__ = [
    "box_array",
    "category_id_array",
    "check_color",
    "check_name",
    "check_split",
    "check_threshold",
    "clip_checked",
    "tile_window",
]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ArgumentError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def check_threshold(value: Any) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"a threshold is a number in [0, 1], got {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise ArgumentError(f"threshold must lie in [0, 1] (or None to follow the evaluations), got {t}")
    return t


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str):
        raise CategoryError(f"a {what} name is a string, got {type(name).__name__}")
    name = name.strip()
    if not name:
        raise CategoryError(f"a {what} name must not be empty")
    return name


def check_color(color: str) -> str:
    c = str(color)
    if not (c.startswith("#") and len(c) in (4, 7) and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])):
        raise CategoryError(f"colour {color!r} is not a hex colour like '#e6194b'")
    return c


def box_array(xyxy: npt.ArrayLike, what: str) -> np.ndarray:
    try:
        arr = np.asarray(xyxy, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{what} must be numbers x1, y1, x2, y2, got {xyxy!r}") from None
    if arr.size % 4 or arr.size == 0:
        raise AnnotationError(f"{what} must be x1, y1, x2, y2 (4 numbers per box), got shape {arr.shape}")
    return arr


def clip_checked(
    boxes: np.ndarray, image_wh: tuple[int, int], where: str, error: type[DeepBlockError] = AnnotationError
) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(N, 4)`` boxes to the image; refuse non-finite, inverted, empty or wholly outside ones.

    Returns:
        ``(N, 4)`` clipped boxes and an ``(N,)`` mask of the boxes clipping changed.

    Raises:
        ``error`` naming ``where`` and the first bad box.
    """
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise error(f"{where}: box {i} {boxes[i].tolist()} has coordinates that are not finite numbers")
    inverted = ~valid_boxes(boxes)
    if inverted.any():
        i = int(np.argmax(inverted))
        raise error(f"{where}: box {i} {boxes[i].tolist()} is inverted or empty (need x2 > x1 and y2 > y1)")
    clipped = clip_boxes(boxes, image_wh)
    outside = ~valid_boxes(clipped)
    if outside.any():
        i = int(np.argmax(outside))
        raise error(
            f"{where}: box {i} {boxes[i].tolist()} lies outside the image "
            f"({image_wh[0]} x {image_wh[1]} pixels)"
        )
    return clipped, (clipped != boxes).any(axis=1)


def category_id_array(
    categories: Any, n: int, known: Sequence[Category], one: Callable[[Any], Category]
) -> np.ndarray:
    """``(n,)`` category ids of one category (``one`` looks it up) or ``(len(categories),)`` of a
    list of records, ids or names among ``known``; an unknown one is a RecordNotFoundError."""
    if isinstance(categories, (Category, int, str, np.integer)):
        return np.full(n, one(categories).id, np.int64)
    lookup = {c.name: c.id for c in known}
    ids = {c: c for c in lookup.values()}
    out = np.empty(len(categories), np.int64)
    for i, c in enumerate(categories):
        if isinstance(c, Category):
            c = c.id
        key = ids.get(int(c)) if isinstance(c, (int, np.integer)) else lookup.get(str(c))
        if key is None:
            raise RecordNotFoundError(f"no category {c!r} in this project")
        out[i] = key
    return out


def tile_window(rec: ImageRecord, tile: Any) -> tuple[int, int, int, int]:
    """The window ``(x, y, w, h)`` of tile ``tile`` of the image's grid: an index into
    ``project.tiles(rec)`` (row-major) or a ``(row, col)`` pair."""
    if rec.grid is None:
        raise ArgumentError(
            f"image {rec.name!r} has no grid: divide it first (project.set_grid), "
            "or mark the whole image with project.set_reviewed(image)"
        )
    rows, cols = rec.grid.rows, rec.grid.cols

    def whole(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if whole(tile):
        index = int(tile)
        if not 0 <= index < rows * cols:
            raise ArgumentError(
                f"image {rec.name!r} has {rows * cols} tiles ({rows} x {cols}); tile {index} is not one "
                f"(0 to {rows * cols - 1})"
            )
    elif isinstance(tile, tuple) and len(tile) == 2 and all(whole(v) for v in tile):
        row, col = (int(v) for v in tile)
        if not (0 <= row < rows and 0 <= col < cols):
            raise ArgumentError(
                f"image {rec.name!r} has a {rows} x {cols} grid; tile (row, col) {(row, col)} is outside it"
            )
        index = row * cols + col
    else:
        raise ArgumentTypeError(
            f"a tile is an index into project.tiles(image) or a (row, col) tuple of ints, not {tile!r}"
        )
    x, y, w, h = (int(v) for v in rec.windows()[index])
    return x, y, w, h
