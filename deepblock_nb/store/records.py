"""Plain records returned by the store: categories, images, grids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.io.display import DisplaySetting

__all__ = ["SPLITS", "Category", "Grid", "ImageRecord"]

SPLITS = ("train", "evaluate", "predict")

# Distinct, readable on photos; cycled for categories created without a colour.
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#a9a9a9",
    "#ffe119",
)


@dataclass(frozen=True)
class Category:
    """A class of object. ``id`` is stable and >= 1; ``name`` is unique."""

    id: int
    name: str
    color: str


@dataclass(frozen=True)
class Grid:
    """How an image is divided: ``rows`` x ``cols`` tiles, ``overlap`` a fraction of a tile."""

    rows: int
    cols: int
    overlap: float = 0.0


@dataclass(frozen=True)
class ImageRecord:
    """One image of the project.

    ``path`` is where the pixels are read from: the copy under ``images/`` or, for
    images added with ``copy=False``, the original file. ``width`` and ``height``
    are full-resolution pixels; ``grid`` is None until the image is divided.
    ``reviewed``: a user marked the image done, so its boxes (maybe none) are
    complete: without boxes it is a true negative in training and Evaluate.
    ``display``: the user's bands and intensity window (``DisplaySetting``; the
    default is "auto"); ``Project.display`` gives the effective one.
    ``mpp``: ``(x, y)`` microns per pixel of level 0 as the file said when the image
    was added (whole-slide images, TIFF resolution tags), None when unknown.
    """

    id: int
    name: str
    path: Path
    width: int
    height: int
    format: str
    split: str
    grid: Grid | None
    hash: str
    size: int
    copied: bool
    reviewed: bool = False
    display: DisplaySetting = field(default_factory=DisplaySetting)
    mpp: tuple[float, float] | None = None

    @property
    def image_wh(self) -> tuple[int, int]:
        return (self.width, self.height)

    def windows(self) -> np.ndarray:
        """``(N, 4)`` int64 windows ``x, y, w, h`` of the image's grid, one whole-image
        window when it has none: the one tile policy that training, prediction and
        the Divide view all use."""
        if self.grid is None:
            return np.array([[0, 0, self.width, self.height]], np.int64)
        return tile_windows(self.image_wh, self.grid.rows, self.grid.cols, self.grid.overlap)
