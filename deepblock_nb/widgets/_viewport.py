"""The geometry of an image shown on a canvas: pure functions, no widgets.

A :class:`Viewport` maps image pixels (full resolution, origin top-left, y down)
to canvas pixels: ``view = (image - origin) * scale``. Every conversion between
the two frames goes through :func:`convert`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import ArgumentError
from deepblock_nb.io.images import level_for

__all__ = [
    "MAX_SCALE",
    "Viewport",
    "box_from_drag",
    "choose_level",
    "convert",
    "fit",
    "handle_at",
    "hit_test",
    "pan",
    "render_plan",
    "resize_box",
    "zoom_at",
]

HANDLES = ("nw", "n", "ne", "e", "se", "s", "sw", "w")

MAX_SCALE = 32.0  # canvas pixels per image pixel at the deepest zoom


@dataclass(frozen=True)
class Viewport:
    """Which part of an image a canvas shows.

    Attributes:
        image_wh: full-resolution image size in pixels.
        canvas_wh: canvas size in pixels.
        scale: canvas pixels per image pixel.
        x0, y0: the image point (image pixels) at the canvas's top-left corner.
    """

    image_wh: tuple[int, int]
    canvas_wh: tuple[int, int]
    scale: float
    x0: float = 0.0
    y0: float = 0.0

    @property
    def fit_scale(self) -> float:
        """The scale at which the whole image fits the canvas."""
        return min(self.canvas_wh[0] / self.image_wh[0], self.canvas_wh[1] / self.image_wh[1])

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The image region the canvas covers, ``(x1, y1, x2, y2)`` image pixels (may exceed the image)."""
        cw, ch = self.canvas_wh
        return (self.x0, self.y0, self.x0 + cw / self.scale, self.y0 + ch / self.scale)


HANDLE_RADIUS = 6.0  # canvas pixels around a handle of a selected box that start a resize
MIN_DRAG = 3.0  # canvas pixels a move or resize must cover to count (less is a click)


def convert(vp: Viewport, xy: npt.ArrayLike, to: Literal["image", "view"]) -> np.ndarray:
    """Convert points ``(..., 2)`` (or boxes ``(..., 4)`` as ``x1, y1, x2, y2``) between frames.

    ``to="image"``: canvas pixels -> image pixels; ``to="view"``: image -> canvas.
    Returns float64 of the same shape.
    """
    a = np.asarray(xy, dtype=np.float64)
    if a.shape[-1] not in (2, 4):
        raise ArgumentError(f"expected points (..., 2) or boxes (..., 4), got shape {a.shape}")
    origin = np.array([vp.x0, vp.y0] * (a.shape[-1] // 2))  # [2] or [4]
    if to == "image":
        return a / vp.scale + origin
    if to == "view":
        return (a - origin) * vp.scale
    raise ArgumentError(f"to must be 'image' or 'view', got {to!r}")


def fit(image_wh: tuple[int, int], canvas_wh: tuple[int, int]) -> Viewport:
    """The viewport showing the whole image, centred on the canvas."""
    vp = Viewport((int(image_wh[0]), int(image_wh[1])), (int(canvas_wh[0]), int(canvas_wh[1])), 1.0)
    s = vp.fit_scale
    return _centred(replace(vp, scale=s), image_wh[0] / 2, image_wh[1] / 2)


def _centred(vp: Viewport, cx: float, cy: float) -> Viewport:
    cw, ch = vp.canvas_wh
    return replace(vp, x0=cx - cw / (2 * vp.scale), y0=cy - ch / (2 * vp.scale))


def _clamped(vp: Viewport) -> Viewport:
    """Keep the canvas centre over the image so it can never be panned out of sight."""
    cw, ch = vp.canvas_wh
    cx = min(max(vp.x0 + cw / (2 * vp.scale), 0.0), float(vp.image_wh[0]))
    cy = min(max(vp.y0 + ch / (2 * vp.scale), 0.0), float(vp.image_wh[1]))
    return _centred(vp, cx, cy)


def zoom_at(vp: Viewport, factor: float, anchor_xy: tuple[float, float] | None = None) -> Viewport:
    """Zoom by ``factor`` keeping the image point under ``anchor_xy`` (canvas pixels) fixed.

    The scale stays between half the fit scale and :data:`MAX_SCALE`; the anchor
    defaults to the canvas centre.
    """
    if anchor_xy is None:
        anchor_xy = (vp.canvas_wh[0] / 2, vp.canvas_wh[1] / 2)
    lo = min(vp.fit_scale / 2, MAX_SCALE)
    scale = float(min(max(vp.scale * factor, lo), MAX_SCALE))
    ix, iy = convert(vp, anchor_xy, "image")
    moved = replace(vp, scale=scale, x0=ix - anchor_xy[0] / scale, y0=iy - anchor_xy[1] / scale)
    return _clamped(moved)


def pan(vp: Viewport, dx: float, dy: float) -> Viewport:
    """Move the image by ``(dx, dy)`` canvas pixels (a drag to the right shows what was left)."""
    return _clamped(replace(vp, x0=vp.x0 - dx / vp.scale, y0=vp.y0 - dy / vp.scale))


def box_from_drag(
    vp: Viewport, start_xy: tuple[float, float], end_xy: tuple[float, float]
) -> np.ndarray | None:
    """The image box ``(4,)`` xyxy spanned by a drag between two canvas points.

    Corners are sorted and clipped to the image; returns None when the clipped
    box is narrower than one image pixel or two canvas pixels.
    """
    pts = convert(vp, np.array([start_xy, end_xy], dtype=np.float64), "image")  # [2,2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    w, h = vp.image_wh
    box = np.clip(np.concatenate([lo, hi]), 0.0, [w, h, w, h])
    size = box[2:] - box[:2]
    if np.any(size < 1.0) or np.any(size * vp.scale < 2.0):
        return None
    return box


def hit_test(xyxy: npt.ArrayLike, point_xy: tuple[float, float]) -> int:
    """Index of the smallest box ``(N, 4)`` containing the image point, or -1."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x, y = point_xy
    inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])  # [N]
    if not inside.any():
        return -1
    area = np.where(inside, (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), np.inf)
    return int(np.argmin(area))


def handle_at(box_xyxy: npt.ArrayLike, point_xy: tuple[float, float], radius: float) -> str | None:
    """The resize handle of a box ``(4,)`` under a point, or None (all in the same frame, canvas pixels).

    Corners (``"nw"``, ``"ne"``, ``"se"``, ``"sw"``) win within ``radius`` of the
    corner point; edges (``"n"``, ``"e"``, ``"s"``, ``"w"``) anywhere within
    ``radius`` of the edge line between its corners.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box_xyxy, dtype=np.float64).reshape(4))
    x, y = float(point_xy[0]), float(point_xy[1])
    corners = {"nw": (x1, y1), "ne": (x2, y1), "se": (x2, y2), "sw": (x1, y2)}
    dist = {k: math.hypot(x - cx, y - cy) for k, (cx, cy) in corners.items()}
    best = min(dist, key=dist.__getitem__)
    if dist[best] <= radius:
        return best
    within_x = x1 - radius <= x <= x2 + radius
    within_y = y1 - radius <= y <= y2 + radius
    edges = {
        "n": abs(y - y1) if within_x else math.inf,
        "s": abs(y - y2) if within_x else math.inf,
        "w": abs(x - x1) if within_y else math.inf,
        "e": abs(x - x2) if within_y else math.inf,
    }
    best = min(edges, key=edges.__getitem__)
    return best if edges[best] <= radius else None


def resize_box(
    xyxy: npt.ArrayLike,
    handle: str,
    dx: float,
    dy: float,
    min_size: float = 1.0,
    bounds_wh: tuple[float, float] | None = None,
) -> np.ndarray:
    """The box ``(4,)`` xyxy after dragging one of its handles by ``(dx, dy)`` (same frame as the box).

    ``"n"``/``"s"`` move the top/bottom edge, ``"w"``/``"e"`` the left/right edge,
    corners both. Dragging an edge past the opposite one flips the box (corners stay
    sorted); each side stays at least ``min_size``, grown away from the edge that
    did not move; ``bounds_wh`` clips the result to ``[0, w] x [0, h]``.
    """
    if handle not in HANDLES:
        raise ArgumentError(f"handle must be one of {HANDLES}, got {handle!r}")
    b = np.asarray(xyxy, dtype=np.float64).reshape(4)
    out = np.empty(4)
    for axis, d, lo_name, hi_name in ((0, dx, "w", "e"), (1, dy, "n", "s")):
        lo, hi = b[axis], b[axis + 2]
        move_lo, move_hi = lo_name in handle, hi_name in handle
        new_lo, new_hi = lo + d * move_lo, hi + d * move_hi
        a, z = min(new_lo, new_hi), max(new_lo, new_hi)
        limit = math.inf if bounds_wh is None else float(bounds_wh[axis])
        a, z = max(a, 0.0) if bounds_wh is not None else a, min(z, limit)
        if z - a < min_size:
            # grow from the edge that stayed put, towards where the moving edge went
            fixed = hi if move_lo and not move_hi else lo
            moved = new_lo if move_lo else new_hi
            # a moving edge that lands on the fixed one stays on the side it came from
            below = moved < fixed or (moved == fixed and move_lo)
            a, z = (fixed - min_size, fixed) if below else (fixed, fixed + min_size)
            if bounds_wh is not None:
                shift = max(0.0 - a, 0.0) - max(z - limit, 0.0)
                a, z = a + shift, z + shift
        out[axis], out[axis + 2] = a, z
    return out


def choose_level(levels: list[tuple[int, int]] | tuple[tuple[int, int], ...], scale: float) -> int:
    """The coarsest pyramid level whose resolution still meets ``scale`` (canvas px per image px).

    The rule of :func:`deepblock_nb.io.images.level_for`, for a view reduced
    ``1 / scale`` times (a level exactly at ``scale`` counts as meeting it).
    """
    s = max(min(scale, 1.0), 1e-12) * (1 - 1e-9)
    return level_for(levels, 1 / s, 1 / s)


@dataclass(frozen=True)
class RenderPlan:
    """What to read and where to paint it.

    Attributes:
        source: ``(x, y, w, h)`` in pixels of the image at ``level`` (or of the
            overview when ``level`` is None).
        level: the pyramid level to read, None for the overview.
        dest: ``(x, y, w, h)`` canvas pixels the source is resized into.
    """

    source: tuple[int, int, int, int]
    level: int | None
    dest: tuple[int, int, int, int]


def render_plan(
    vp: Viewport,
    levels: list[tuple[int, int]] | tuple[tuple[int, int], ...],
    overview_wh: tuple[int, int],
    max_read_pixels: int = 16_000_000,
    overview_only: bool = False,
) -> RenderPlan | None:
    """Plan the read for the visible part of the image; None when none of it is visible.

    The overview is used while it is detailed enough (or ``overview_only``);
    otherwise the coarsest sufficient pyramid level, unless that read would exceed
    ``max_read_pixels``, in which case the overview is upscaled instead.
    """
    iw, ih = vp.image_wh
    wx1, wy1, wx2, wy2 = vp.window
    x1, y1 = max(wx1, 0.0), max(wy1, 0.0)
    x2, y2 = min(wx2, float(iw)), min(wy2, float(ih))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    ov_scale = overview_wh[0] / iw
    if not overview_only and vp.scale > ov_scale * 1.001:
        level = choose_level(levels, vp.scale)
        plan = _plan_on(vp, (x1, y1, x2, y2), levels[level], level)
        if plan.source[2] * plan.source[3] <= max_read_pixels:
            return plan
    return _plan_on(vp, (x1, y1, x2, y2), overview_wh, None)


def _plan_on(
    vp: Viewport, visible: tuple[float, float, float, float], source_wh: tuple[int, int], level: int | None
) -> RenderPlan:
    """Whole source pixels covering ``visible`` (image pixels) and the canvas rectangle they map to."""
    iw, ih = vp.image_wh
    sw, sh = source_wh
    fx, fy = sw / iw, sh / ih
    sx1 = min(math.floor(visible[0] * fx), sw - 1)
    sy1 = min(math.floor(visible[1] * fy), sh - 1)
    sx2 = max(min(math.ceil(visible[2] * fx), sw), sx1 + 1)
    sy2 = max(min(math.ceil(visible[3] * fy), sh), sy1 + 1)
    d = convert(vp, (sx1 / fx, sy1 / fy, sx2 / fx, sy2 / fy), "view")  # [4] canvas xyxy
    dx1, dy1 = math.floor(d[0]), math.floor(d[1])
    dest = (dx1, dy1, max(1, math.ceil(d[2]) - dx1), max(1, math.ceil(d[3]) - dy1))
    return RenderPlan((sx1, sy1, sx2 - sx1, sy2 - sy1), level, dest)
