"""Grid tiling of large images (numpy only).

A grid of ``rows x cols`` tiles covers an image exactly. With ``overlap`` (a
fraction of a tile, ``0 <= overlap < 0.5``) each tile is widened by about
``overlap * tile`` pixels into its neighbours, clamped to the image, so tiles
never leave the image. Windows are ``x, y, w, h`` integer pixels of the
full-resolution image, origin top-left, row-major (left to right, then down).
Boxes are ``xyxy`` float pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._arrays import as_array
from deepblock_nb.errors import ArgumentError, ArgumentTypeError, DeepBlockError

__all__ = ["boxes_to_image", "clip_boxes_to_window", "suggest_grid", "tile_windows"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _image_wh(image_wh: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (_whole(v, "image_wh") for v in image_wh)
    except (TypeError, ValueError) as exc:  # not iterable, or not two items
        if isinstance(exc, DeepBlockError):
            raise
        raise ArgumentError(f"image_wh must be (width, height), got {image_wh!r}") from exc
    if w < 1 or h < 1:
        raise ArgumentError(f"image size must be at least 1 x 1 pixel, got {w} x {h}")
    return w, h


def _whole(value: object, name: str) -> int:
    """``value`` as an ``int``, refusing text, NaN, infinities and fractions."""
    if isinstance(value, str | bytes) or value is None:
        raise ArgumentTypeError(f"{name} must hold whole numbers, got {value!r}")
    try:
        out = int(value)  # type: ignore[call-overload]
        exact = out == value
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArgumentError(f"{name} must hold whole numbers, got {value!r}") from exc
    if not exact:
        raise ArgumentError(f"{name} must hold whole numbers, got {value!r}")
    return out


def _fraction(value: object, name: str) -> float:
    """``value`` as a ``float``, refusing text (``float("0.1")`` would accept it)."""
    if isinstance(value, str | bytes):
        raise ArgumentTypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(f"{name} must be a number, got {value!r}") from exc


def _as_boxes(value: npt.ArrayLike, name: str) -> FloatArray:
    return as_array(value, np.float64, f"{name} (N, 4)")


def _edges(length: int, n: int) -> IntArray:
    """``n + 1`` integer cut positions splitting ``[0, length]`` as evenly as possible."""
    return np.round(np.linspace(0, length, n + 1)).astype(np.int64)


def tile_windows(image_wh: Sequence[int], rows: int, cols: int, overlap: float = 0.0) -> IntArray:
    """Windows of a ``rows x cols`` grid over an image.

    Args:
        image_wh: image ``(width, height)`` in pixels.
        rows, cols: grid size, each at least 1 and at most the image side.
        overlap: fraction of a tile, ``0 <= overlap < 0.5``, by which every tile
            grows into each neighbour (clamped to the image).

    Returns:
        ``(rows * cols, 4)`` int64 ``x, y, w, h``, row-major. Without overlap the
        windows partition the image; with it their union is still the image.
    """
    w, h = _image_wh(image_wh)
    try:
        r, c = _whole(rows, "rows"), _whole(cols, "cols")
    except ArgumentError as exc:
        raise ArgumentError(f"rows and cols must be integers >= 1, got rows={rows!r}, cols={cols!r}") from exc
    if r < 1 or c < 1:
        raise ArgumentError(f"rows and cols must be integers >= 1, got rows={rows!r}, cols={cols!r}")
    rows, cols = r, c
    if rows > h or cols > w:
        raise ArgumentError(f"a {rows} x {cols} grid has tiles under 1 pixel on a {w} x {h} image")
    overlap = _fraction(overlap, "overlap")
    if not (0.0 <= overlap < 0.5):
        raise ArgumentError(
            f"overlap must satisfy 0 <= overlap < 0.5 (a fraction of a tile), got {overlap!r}"
        )
    xe, ye = _edges(w, cols), _edges(h, rows)
    pad_x = round(overlap * w / cols)
    pad_y = round(overlap * h / rows)
    x0 = np.clip(xe[:-1] - pad_x, 0, w)
    x1 = np.clip(xe[1:] + pad_x, 0, w)
    y0 = np.clip(ye[:-1] - pad_y, 0, h)
    y1 = np.clip(ye[1:] + pad_y, 0, h)
    gx0, gy0 = np.meshgrid(x0, y0)  # [rows, cols]
    gx1, gy1 = np.meshgrid(x1, y1)  # [rows, cols]
    out = np.stack([gx0, gy0, gx1 - gx0, gy1 - gy0], axis=-1).reshape(-1, 4)
    return out.astype(np.int64)


def suggest_grid(image_wh: Sequence[int], tile_size: int = 1000) -> tuple[int, int]:
    """``(rows, cols)`` giving tiles of about ``tile_size`` pixels (never larger)."""
    w, h = _image_wh(image_wh)
    size = _fraction(tile_size, "tile_size")
    if not (1 <= size < math.inf):
        raise ArgumentError(f"tile_size must be a finite number >= 1, got {tile_size!r}")
    return max(1, math.ceil(h / size)), max(1, math.ceil(w / size))


def _as_window(window: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in window)
    except (TypeError, ValueError) as exc:  # not iterable, not 4 items, or not numbers
        raise ArgumentError(f"window must be (x, y, w, h) numbers, got {window!r}") from exc
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ArgumentError(f"window must be finite with a positive size, got {window!r}")
    return x, y, w, h


def clip_boxes_to_window(
    xyxy: npt.ArrayLike, window: Sequence[float], min_visible: float = 0.5
) -> tuple[FloatArray, IntArray]:
    """Boxes seen by one tile, in tile-local coordinates.

    A box is kept when the part of it inside the window covers at least
    ``min_visible`` of its own area (``0 < min_visible <= 1``); kept boxes are
    clipped to the window. Boxes of zero area (or inverted) are dropped, as are
    boxes that only touch the window's border.

    Args:
        xyxy: ``(N, 4)`` boxes in image pixels.
        window: ``(x, y, w, h)`` of the tile in image pixels.
        min_visible: minimum visible fraction of a box's area.

    Returns:
        ``(M, 4)`` clipped boxes relative to the window's top-left corner, and
        ``(M,)`` int64 indices of those boxes in ``xyxy``.
    """
    min_visible = _fraction(min_visible, "min_visible")
    if not (0.0 < min_visible <= 1.0):
        raise ArgumentError(f"min_visible must satisfy 0 < min_visible <= 1, got {min_visible!r}")
    b = _as_boxes(xyxy, "xyxy")
    if b.size == 0:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ArgumentError(f"xyxy must have shape (N, 4), got {b.shape}")
    x, y, w, h = _as_window(window)
    lo = np.array([x, y, x, y])
    hi = np.array([x + w, y + h, x + w, y + h])
    clipped = np.clip(b, lo, hi)  # [N,4]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
    positive = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    # a small tolerance so a box exactly half inside passes at min_visible=0.5
    keep = positive & (vis > 0) & (vis >= min_visible * area * (1 - 1e-9))
    idx = np.flatnonzero(keep).astype(np.int64)
    return clipped[idx] - np.array([x, y, x, y]), idx


def boxes_to_image(xyxy_tile: npt.ArrayLike, window: Sequence[float]) -> FloatArray:
    """Shift ``(N, 4)`` tile-local boxes by the window's ``(x, y)`` into image pixels."""
    b = _as_boxes(xyxy_tile, "xyxy_tile")
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ArgumentError(f"xyxy_tile must have shape (N, 4), got {b.shape}")
    x, y, _, _ = _as_window(window)
    return b + np.array([x, y, x, y])
