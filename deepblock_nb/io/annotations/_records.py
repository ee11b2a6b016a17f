"""Neutral annotation records: what every file format reads into and writes from.

Coordinates are pixels of the original image, ``xyxy`` floats with the origin
top-left and y down: a box over pixel columns 0..9 has ``x1 = 0, x2 = 10``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._arrays import as_array
from deepblock_nb.errors import ArgumentError, RecordNotFoundError

__all__ = ["AnnotatedImage", "AnnotationSet"]

FloatArray = npt.NDArray[np.float64]


@dataclass(eq=False)
class AnnotatedImage:
    """The boxes of one image, as a file states them.

    Attributes:
        file_name: the image name as written in the file (may hold sub-folders,
            unicode, spaces).
        width: image width in pixels when the file says so, else ``None``.
        height: image height in pixels when the file says so, else ``None``.
        xyxy: ``(N, 4)`` float64 ``x1, y1, x2, y2`` in image pixels. COCO boxes are
            converted as ``x2 = x + w``, ``y2 = y + h`` (one float addition).
        category: ``N`` category names, one per box.
        scores: ``(N,)`` float64 scores for results files, else ``None``.
        source_id: the image id in the source file (COCO ``id``), else ``None``.
        xywh: ``(N, 4)`` float64, the COCO ``bbox`` exactly as read, else ``None``.
            ``x + w`` rounds in floating point, so ``x2 - x1`` often differs from
            ``w`` in the last bit; COCO writers use these values for every box whose
            ``xyxy`` still equals ``x, y, x + w, y + h``, which makes
            COCO -> records -> COCO exact.
        extra: further per-image fields a COCO file gave (``license``,
            ``date_captured``, ``coco_url``, ``flickr_url``), written back by COCO writers.
        sources: ``N`` strings (or ``None``) saying where each box came from ("manual",
            "accepted" or "corrected" from a model's proposal), else ``None``; COCO
            writers give each annotation with one a ``source`` key.
    """

    file_name: str
    width: int | None
    height: int | None
    xyxy: FloatArray
    category: list[str]
    scores: FloatArray | None = None
    source_id: int | str | None = None
    xywh: FloatArray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sources: list[str | None] | None = None

    def __post_init__(self) -> None:
        self.xyxy = _boxes(self.xyxy, "xyxy", self.file_name)
        n = len(self.xyxy)
        self.category = list(self.category)
        if len(self.category) != n:
            raise ArgumentError(f"{self.file_name}: {n} boxes but {len(self.category)} categories")
        if self.scores is not None:
            scores = _floats(self.scores, "scores", self.file_name).reshape(-1)
            if len(scores) != n:
                raise ArgumentError(f"{self.file_name}: {n} boxes but {len(scores)} scores")
            self.scores = scores
        if self.sources is not None:
            self.sources = [None if v is None else str(v) for v in self.sources]
            if len(self.sources) != n:
                raise ArgumentError(f"{self.file_name}: {n} boxes but {len(self.sources)} sources")
        if self.xywh is not None:
            self.xywh = _boxes(self.xywh, "xywh", self.file_name)
            if len(self.xywh) != n:
                raise ArgumentError(f"{self.file_name}: {n} boxes but {len(self.xywh)} xywh rows")

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass(eq=False)
class AnnotationSet:
    """The content of one annotation file or folder.

    Attributes:
        categories: every category named in the file, in file order, including
            those with no boxes.
        images: one record per image, in file order (images with no boxes too).
        path: the file or folder read, or ``None``.
        warnings: human-readable notes about what was skipped (e.g. COCO crowd boxes).
        category_ids: category name -> id in the source file (COCO), else empty.
            COCO writers reuse these ids when they cover every category.
        info: the COCO ``info`` object, when the file had one (written back by COCO writers).
        licenses: the COCO ``licenses`` list, when the file had one.
    """

    categories: list[str]
    images: list[AnnotatedImage]
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    category_ids: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] | None = None
    licenses: list[Any] | None = None

    @property
    def num_boxes(self) -> int:
        """Total number of boxes over all images."""
        return sum(len(im) for im in self.images)

    def image(self, file_name: str) -> AnnotatedImage:
        """The record of ``file_name``.

        Raises:
            RecordNotFoundError: (a ``KeyError``) no image of that name.
        """
        for im in self.images:
            if im.file_name == file_name:
                return im
        where = f"{self.path}: " if self.path is not None else ""
        raise RecordNotFoundError(f"{where}no image named {file_name!r} in this annotation set")


def _floats(value: object, name: str, file_name: str) -> FloatArray:
    return as_array(value, np.float64, f"{file_name}: {name}")


def _boxes(value: object, name: str, file_name: str) -> FloatArray:
    arr = _floats(value, name, file_name)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ArgumentError(f"{file_name}: {name} must have shape (N, 4), got {arr.shape}")
    return arr
