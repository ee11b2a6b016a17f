"""Argument checks shared by the Project and its services: each refusal is a
:class:`DeepBlockError` naming the value and what would be accepted."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.boxes import clip_boxes, valid_boxes
from deepblock_nb.errors import AnnotationError, ArgumentError, CategoryError, DeepBlockError
from deepblock_nb.store import SPLITS

__all__ = ["box_array", "check_color", "check_name", "check_split", "check_threshold", "clip_checked"]


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
