"""Reviewed tiles: windows of an image that a user marked done, and the rules that apply them.

A reviewed tile is stored as its window ``(x, y, w, h)`` (full-image pixels), not
as a grid index, so it keeps its meaning when the grid changes. Training and
Evaluate both read these windows through the functions below, with one pixel
tolerance (:data:`TOLERANCE_PX`).
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from deepblock_nb.store.database import Database

__all__ = ["TOLERANCE_PX", "Reviews", "centres_inside", "windows_inside"]

#: pixels by which a window may reach past a reviewed window and still lie inside it
#: (grids of other rows, cols or overlap round their edges differently)
TOLERANCE_PX = 2


class Reviews:
    """The ``reviewed_tiles`` table: per image, the windows marked done."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of_image(self, image_id: int) -> npt.NDArray[np.int64]:
        """``(T, 4)`` int64 windows ``x, y, w, h`` of the image's reviewed tiles, top to bottom."""
        rows = self._db.query(
            "SELECT x, y, w, h FROM reviewed_tiles WHERE image_id = ? ORDER BY y, x, h, w", (int(image_id),)
        )
        return np.array([[r["x"], r["y"], r["w"], r["h"]] for r in rows], np.int64).reshape(-1, 4)

    def set(self, image_id: int, window: tuple[int, int, int, int], reviewed: bool) -> None:
        """Mark a window done, or unmark it (and any stored window within the tolerance of it)."""
        x, y, w, h = (int(v) for v in window)
        with self._db.write() as cx:
            if reviewed:
                cx.execute(
                    "INSERT OR IGNORE INTO reviewed_tiles(image_id, x, y, w, h, reviewed) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (int(image_id), x, y, w, h, time.time()),
                )
                return
            cx.execute(
                "DELETE FROM reviewed_tiles WHERE image_id = ? AND abs(x - ?) <= ? AND abs(y - ?) <= ? "
                "AND abs(x + w - ?) <= ? AND abs(y + h - ?) <= ?",
                (int(image_id), x, TOLERANCE_PX, y, TOLERANCE_PX, x + w, TOLERANCE_PX, y + h, TOLERANCE_PX),
            )


def windows_inside(
    windows: npt.ArrayLike, regions: npt.ArrayLike, tolerance: float = TOLERANCE_PX
) -> npt.NDArray[np.bool_]:
    """``(N,)`` whether each window ``x, y, w, h`` lies inside one of ``regions`` (``(R, 4)``
    ``x, y, w, h``), reaching past it by at most ``tolerance`` pixels on any side."""
    win = np.asarray(windows, np.float64).reshape(-1, 4)
    reg = np.asarray(regions, np.float64).reshape(-1, 4)
    if not len(win) or not len(reg):
        return np.zeros(len(win), bool)
    lo_ok = (win[:, None, :2] >= reg[None, :, :2] - tolerance).all(axis=2)  # [N,R]
    hi = reg[None, :, :2] + reg[None, :, 2:] + tolerance  # [1,R,2]
    hi_ok = (win[:, None, :2] + win[:, None, 2:] <= hi).all(axis=2)  # [N,R]
    return np.asarray(np.any(lo_ok & hi_ok, axis=1), dtype=bool)


def centres_inside(xyxy: npt.ArrayLike, regions: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """``(N,)`` whether the centre of each box ``x1, y1, x2, y2`` lies in one of ``regions``
    (``(R, 4)`` ``x, y, w, h``; edges included)."""
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    reg = np.asarray(regions, np.float64).reshape(-1, 4)
    if not len(boxes) or not len(reg):
        return np.zeros(len(boxes), bool)
    c = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N,2]
    inside = (c[:, None] >= reg[None, :, :2]) & (c[:, None] <= reg[None, :, :2] + reg[None, :, 2:])  # [N,R,2]
    return np.asarray(np.any(np.all(inside, axis=2), axis=1), dtype=bool)
