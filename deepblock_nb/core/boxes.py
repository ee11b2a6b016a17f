"""Vectorised box operations (numpy only).

Boxes are ``xyxy`` float arrays of shape ``(N, 4)`` in pixels, origin top-left,
y down; a box over pixel columns 0..9 has ``x1 = 0, x2 = 10``. ``xywh`` is
``x, y, width, height`` (COCO). Functions never modify their arguments.
Merging boxes across tiles (NMS, non-maximum merging) lives in ``ml/merge.py``,
which works on sparse overlapping pairs rather than dense ``(N, N)`` matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._arrays import as_array
from deepblock_nb.errors import ArgumentError

__all__ = [
    "box_area",
    "box_ioa",
    "box_ios",
    "box_iou",
    "clip_boxes",
    "valid_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _as_boxes(boxes: npt.ArrayLike, name: str = "boxes") -> FloatArray:
    arr = as_array(boxes, np.float64, f"{name} (N, 4)")
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ArgumentError(f"{name} must have shape (N, 4), got {arr.shape}")
    return arr


def _wh(image_wh: Sequence[float]) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in image_wh)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"image_wh must be (width, height) numbers, got {image_wh!r}") from exc
    return w, h


def xywh_to_xyxy(xywh: npt.ArrayLike) -> FloatArray:
    """``(N, 4)`` ``x, y, w, h`` -> ``(N, 4)`` ``x1, y1, x2, y2``."""
    b = _as_boxes(xywh, "xywh")
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(xyxy: npt.ArrayLike) -> FloatArray:
    """``(N, 4)`` ``x1, y1, x2, y2`` -> ``(N, 4)`` ``x, y, w, h``."""
    b = _as_boxes(xyxy, "xyxy")
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def box_area(xyxy: npt.ArrayLike) -> FloatArray:
    """``(N,)`` areas in square pixels; inverted boxes count as 0."""
    b = _as_boxes(xyxy, "xyxy")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def valid_boxes(xyxy: npt.ArrayLike, image_wh: Sequence[float] | None = None) -> BoolArray:
    """``(N,)`` mask of finite boxes with ``x2 > x1`` and ``y2 > y1``.

    With ``image_wh``, a box must also lie inside ``[0, w] x [0, h]``.
    """
    b = _as_boxes(xyxy, "xyxy")
    ok = np.isfinite(b).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if image_wh is not None:
        w, h = _wh(image_wh)
        ok &= (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)
    return ok


def clip_boxes(xyxy: npt.ArrayLike, image_wh: Sequence[float]) -> FloatArray:
    """Clip ``(N, 4)`` boxes to ``[0, w] x [0, h]``; returns a new ``(N, 4)`` array."""
    b = _as_boxes(xyxy, "xyxy")
    w, h = _wh(image_wh)
    return np.clip(b, 0.0, np.array([w, h, w, h], dtype=np.float64))


def _intersection(a: FloatArray, b: FloatArray) -> FloatArray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # [N,M,2]
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # [N,M,2]
    wh = np.clip(rb - lt, 0.0, None)  # [N,M,2]
    return wh[..., 0] * wh[..., 1]  # type: ignore[no-any-return]


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over union, ``(N, 4), (M, 4) -> (N, M)``; 0 where the union is empty."""
    a_, b_ = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a_, b_)
    union = box_area(a_)[:, None] + box_area(b_)[None, :] - inter  # [N,M]
    return _safe_div(inter, union)


def box_ios(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over the smaller of the two areas, ``(N, 4), (M, 4) -> (N, M)``."""
    a_, b_ = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a_, b_)
    smaller = np.minimum(box_area(a_)[:, None], box_area(b_)[None, :])  # [N,M]
    return _safe_div(inter, smaller)


def box_ioa(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over the area of each box of ``a``, ``(N, 4), (M, 4) -> (N, M)``."""
    a_, b_ = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a_, b_)
    return _safe_div(inter, np.broadcast_to(box_area(a_)[:, None], inter.shape).copy())
