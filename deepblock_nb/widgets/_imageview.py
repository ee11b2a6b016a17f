"""ImageView: one project image on an ipycanvas MultiCanvas with pan and zoom.

Layers: 0 the image pixels, 1 overlays (boxes, grid lines), 2 interaction
(the rubber band while drawing). The image layer is composed of tiles (see
``_tiles``) of the coarsest source that fills the canvas: the overview while
zoomed out, a pyramid level when zoomed in. Each tile is read once (never the
whole full-resolution image), sent once and kept in the browser, so panning back
to a place already seen sends no pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from ipycanvas import MultiCanvas, hold_canvas

from deepblock_nb.widgets._boxindex import BoxIndex
from deepblock_nb.widgets._tiles import TILE, TileCache
from deepblock_nb.widgets._util import DRAW_LOCK
from deepblock_nb.widgets._viewport import Viewport, convert, fit, pan, zoom_at

__all__ = ["ImageView"]

Point = tuple[float, float]
MODES = ("draw", "select", "pan")
MAX_STROKED_BOXES = 5_000  # beyond this many visible boxes, stroke_boxes(index=...) draws a density
DENSITY_CELL = 24  # canvas pixels per density cell
LABEL_CHAR_PX = 6.2  # about the width of one character of the 11-px label font


def text_color_on(color: str) -> str:
    """Black or white, whichever reads on the hex colour ``color`` (white for anything else)."""
    c = color.strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    try:
        r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4)) if len(c) == 6 else (0, 0, 0)
    except ValueError:
        r = g = b = 0
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


class ImageView:
    """Pan/zoom viewer of one image of a project.

    The owner draws overlays in ``overlay(view)`` (called after every view change)
    and handles pointer gestures through ``on_press(p)``, ``on_drag(p0, p)``,
    ``on_release(p0, p)`` and ``on_cancel()`` (points in canvas pixels) in every
    mode but ``"pan"``, where dragging pans the view.
    """

    def __init__(
        self,
        project: Any,
        width: int = 800,
        height: int = 560,
        overview_side: int = 2048,
        max_tiles: int = 512,
        tile: int = TILE,
        tile_format: str = "auto",
    ) -> None:
        self.tiles = TileCache(max_tiles=max_tiles, tile=tile, fmt=tile_format)
        self.project = project
        self.canvas = MultiCanvas(3, width=width, height=height)
        self.canvas.layout.width = f"{width}px"
        self.canvas.layout.height = f"{height}px"
        self.overview_side = overview_side
        self.mode = "pan"
        self.image: Any = None
        self.viewport: Viewport | None = None
        self.overlay: Callable[[ImageView], None] | None = None
        self.on_press: Callable[[Point], None] | None = None
        self.on_drag: Callable[[Point, Point], None] | None = None
        self.on_release: Callable[[Point, Point], None] | None = None
        self.on_cancel: Callable[[], None] | None = None
        self.on_view_change: Callable[[], None] | None = None
        self.drag_interval = 1 / 30  # seconds between drag redraws
        self.pan_interval = 1 / 10
        self._source: Any = None
        self._overview: np.ndarray | None = None
        self._down: Point | None = None
        self._down_viewport: Viewport | None = None
        self._pointer: Point = (width / 2, height / 2)
        self._last_drag = 0.0
        self._clients = 0
        self.renders = 0  # image-layer paints (for tests and benchmarks); bytes: self.tiles.bytes_sent
        c = self.canvas
        c.on_mouse_down(self._on_mouse_down)
        c.on_mouse_move(self._on_mouse_move)
        c.on_mouse_up(self._on_mouse_up)
        c.on_mouse_out(self._on_mouse_out)
        c.on_mouse_wheel(self._on_mouse_wheel)
        c.on_client_ready(self._on_client_ready)

    # -- the image ---------------------------------------------------------------
    @property
    def canvas_wh(self) -> tuple[int, int]:
        return (int(self.canvas.width), int(self.canvas.height))

    def show(self, image: Any) -> None:
        """Show a project image (record, id or name), fitted to the canvas; None clears."""
        self._close_source()
        self._down = None
        if image is None:
            self.image, self.viewport = None, None
            self.redraw()
            return
        rec = self.project.image(image)
        source = self.project.open_image(rec)
        try:
            overview = source.overview(self.overview_side)
        except BaseException:
            source.close()
            raise
        self.image, self._source, self._overview = rec, source, overview
        self.tiles.reset(source, overview, (rec.width, rec.height))
        self.viewport = fit((rec.width, rec.height), self.canvas_wh)
        self.redraw()

    def reload_pixels(self) -> None:
        """Open the shown image again (its display setting changed), keeping the view."""
        if self.image is not None:
            viewport = self.viewport
            self.show(self.image.id)
            self.viewport = viewport
            self.redraw()

    def refresh_record(self) -> None:
        """Re-read the image record (after its grid changed) without moving the view."""
        if self.image is not None:
            self.image = self.project.image(self.image.id)

    def close(self) -> None:
        self._close_source()
        self.tiles.close()
        self.canvas.close()

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
        self._source, self._overview = None, None
        self.tiles.reset(None, None, (1, 1))

    def _on_client_ready(self) -> None:
        # the first client got every tile sent so far (widget messages reach it even
        # before display); a later one (a reloaded page) has blank tile canvases
        self._clients += 1
        if self._clients > 1:
            self.tiles.clear()
        self.redraw()

    # -- view changes --------------------------------------------------------------
    def set_viewport(self, vp: Viewport, fast: bool = False) -> None:
        self.viewport = vp
        self.redraw(fast=fast)
        if self.on_view_change is not None:
            self.on_view_change()

    def zoom(self, factor: float, anchor: Point | None = None) -> None:
        if self.viewport is not None:
            self.set_viewport(zoom_at(self.viewport, factor, anchor))

    def fit_view(self) -> None:
        if self.image is not None:
            self.set_viewport(fit((self.image.width, self.image.height), self.canvas_wh))

    def pan_by(self, dx: float, dy: float) -> None:
        if self.viewport is not None:
            self.set_viewport(pan(self.viewport, dx, dy))

    def to_image(self, xy: npt.ArrayLike) -> np.ndarray:
        """Canvas pixels -> image pixels (see ``_viewport.convert``)."""
        assert self.viewport is not None
        return convert(self.viewport, xy, "image")

    # -- painting ------------------------------------------------------------------
    def redraw(self, fast: bool = False) -> None:
        """Repaint every layer (``fast`` uses the in-memory overview only)."""
        with DRAW_LOCK, hold_canvas():
            self._paint_image(fast)
            self.canvas[2].clear()
            self.redraw_overlay(hold=False)

    def redraw_overlay(self, hold: bool = True) -> None:
        if not hold:
            self.canvas[1].clear()
            if self.overlay is not None and self.viewport is not None:
                self.overlay(self)
            return
        with DRAW_LOCK, hold_canvas():
            self.redraw_overlay(hold=False)

    def _paint_image(self, fast: bool) -> None:
        layer = self.canvas[0]
        layer.clear()
        layer.fill_style = "#3a3a3a"
        layer.fill_rect(0, 0, *self.canvas_wh)
        if self.viewport is None or self._source is None or self._overview is None:
            layer.fill_style = "#bbbbbb"
            layer.font = "16px sans-serif"
            layer.fill_text("no image", 20, 30)
            return
        if self.tiles.paint(layer, self.viewport, fast):
            self.renders += 1

    def rubber_band(self, xyxy_view: np.ndarray | None, color: str) -> None:
        """Draw (or with None, clear) the dashed outline of a box being dragged, canvas pixels."""
        layer = self.canvas[2]
        with DRAW_LOCK, hold_canvas():
            layer.clear()
            if xyxy_view is not None:
                x1, y1, x2, y2 = (float(v) for v in xyxy_view)
                layer.line_width = 2
                layer.stroke_style = color
                layer.set_line_dash([5, 3])
                layer.stroke_rect(x1, y1, x2 - x1, y2 - y1)
                layer.set_line_dash([])

    def stroke_boxes(
        self,
        xyxy: npt.ArrayLike,
        colors: Sequence[str] | np.ndarray,
        layer: int = 1,
        line_width: float = 2.0,
        labels: Sequence[str] | np.ndarray | None = None,
        index: BoxIndex | None = None,
        max_boxes: int = MAX_STROKED_BOXES,
        label_min_height: float = 0.0,
        max_labels: int = 300,
        dash: Sequence[float] | None = None,
    ) -> int:
        """Stroke image boxes ``(N, 4)`` in per-box colours; returns how many were visible.

        Boxes are converted to canvas pixels at once and grouped by colour, one
        draw command per colour.

        With ``index`` (a :class:`BoxIndex` whose ids are the rows of ``xyxy`` and
        ``colors``, kept in step with them), only the boxes in the view are looked
        up, converted and drawn; when more than ``max_boxes`` are visible a density
        (one filled, translucent cell per :data:`DENSITY_CELL` canvas pixels, alpha
        by count) is drawn instead of boxes and labels.

        ``labels`` (one per row) are written at the top-left inside each visible box
        at least ``label_min_height`` canvas pixels tall, in its colour; at most
        ``max_labels`` of them (the tallest boxes) per call. ``dash`` (canvas pixels,
        as ``set_line_dash``) strokes them dashed.
        """
        assert self.viewport is not None
        lab = (labels, label_min_height, max_labels)
        if dash:
            self.canvas[layer].set_line_dash([float(v) for v in dash])
        try:
            if index is not None:
                return self._stroke_indexed(xyxy, colors, layer, line_width, lab, index, max_boxes)
            b = convert(self.viewport, np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), "view")  # [N,4]
            cw, ch = self.canvas_wh
            visible = (b[:, 2] >= 0) & (b[:, 0] <= cw) & (b[:, 3] >= 0) & (b[:, 1] <= ch)  # [N]
            self._stroke_view_boxes(b, np.asarray(colors, dtype=object), visible, layer, line_width, lab)
            return int(visible.sum())
        finally:
            if dash:
                self.canvas[layer].set_line_dash([])

    def _stroke_view_boxes(
        self,
        b: np.ndarray,
        col: np.ndarray,
        visible: np.ndarray,
        layer: int,
        line_width: float,
        lab: tuple[Sequence[str] | np.ndarray | None, float, int],
        ids: np.ndarray | None = None,
    ) -> None:
        """Stroke canvas boxes ``b`` (K, 4) where ``visible``; ``lab`` is (labels, label_min_height,
        max_labels) as in :meth:`stroke_boxes`; ``ids`` map rows to ``labels`` indices."""
        canvas = self.canvas[layer]
        canvas.line_width = line_width
        for color in dict.fromkeys(col[visible].tolist()):
            k = visible & (col == color)
            canvas.stroke_style = color
            canvas.stroke_rects(b[k, 0], b[k, 1], b[k, 2] - b[k, 0], b[k, 3] - b[k, 1])
        labels, min_height, max_labels = lab
        if labels is None:
            return
        height = b[:, 3] - b[:, 1]  # [K] canvas pixels
        rows = np.flatnonzero(visible & (height >= min_height))
        if len(rows) > max_labels:
            rows = rows[np.argsort(-height[rows], kind="stable")[: max(max_labels, 0)]]
        if not len(rows):
            return
        texts = [str(labels[i if ids is None else int(ids[i])]) for i in rows.tolist()]
        # each label on a tag of its box's colour inside the outline, in black or white, whichever
        # reads on that colour: readable on any image
        inset = float(line_width)
        widths = np.array([LABEL_CHAR_PX * len(t) + 4.0 for t in texts])
        for color in dict.fromkeys(col[rows].tolist()):
            k = col[rows] == color
            canvas.fill_style = color
            canvas.fill_rects(
                b[rows[k], 0] + inset, b[rows[k], 1] + inset, widths[k], np.full(int(k.sum()), 13.0)
            )
        canvas.font = "11px sans-serif"
        for i, text in zip(rows.tolist(), texts):
            canvas.fill_style = text_color_on(str(col[i]))
            canvas.fill_text(text, float(b[i, 0]) + inset + 2, float(b[i, 1]) + inset + 10)

    def _stroke_indexed(
        self,
        xyxy: npt.ArrayLike,
        colors: Sequence[str] | np.ndarray,
        layer: int,
        line_width: float,
        lab: tuple[Sequence[str] | np.ndarray | None, float, int],
        index: BoxIndex,
        max_boxes: int,
    ) -> int:
        assert self.viewport is not None
        vp = self.viewport
        ids = index.query(vp.window)  # [K]
        if len(ids) > max_boxes:
            self._paint_density(index, layer)
            return len(ids)
        b = convert(vp, np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)[ids], "view")  # [K,4]
        if isinstance(colors, np.ndarray):
            col = colors[ids].astype(object)
        else:  # a list of 100,000 strings costs more to convert than to index
            col = np.array([colors[i] for i in ids.tolist()], dtype=object)
        self._stroke_view_boxes(b, col, np.ones(len(ids), dtype=bool), layer, line_width, lab, ids)
        return len(ids)

    def _paint_density(self, index: BoxIndex, layer: int, rgb: tuple[int, int, int] = (255, 196, 0)) -> None:
        """Fill one translucent cell per DENSITY_CELL canvas pixels, alpha growing with its box count."""
        assert self.viewport is not None
        cw, ch = self.canvas_wh
        cells_wh = (math.ceil(cw / DENSITY_CELL), math.ceil(ch / DENSITY_CELL))
        x1, y1, _, _ = self.viewport.window
        s = DENSITY_CELL / self.viewport.scale  # image pixels per cell
        counts = index.counts_per_cell((x1, y1, x1 + cells_wh[0] * s, y1 + cells_wh[1] * s), cells_wh)
        rows, cols = np.nonzero(counts)
        if not len(rows):
            return
        n = counts[rows, cols].astype(np.float64)
        alpha = 0.15 + 0.7 * np.log1p(n) / np.log1p(n.max())  # [K]
        color = np.broadcast_to(np.asarray(rgb, dtype=np.int32), (len(n), 3))
        self.canvas[layer].fill_styled_rects(
            cols * DENSITY_CELL, rows * DENSITY_CELL, DENSITY_CELL, DENSITY_CELL, color, alpha
        )

    def stroke_grid(
        self, tiles: Sequence[tuple[int, int, int, int]] | np.ndarray, color: str = "#ffffff"
    ) -> None:
        """Outline tile windows ``(x, y, w, h)`` (image pixels), dashed, on the overlay layer."""
        if len(tiles) <= 1:
            return
        t = np.asarray(tiles, dtype=np.float64)
        xyxy = np.concatenate([t[:, :2], t[:, :2] + t[:, 2:]], axis=1)  # [T,4]
        self.stroke_boxes(xyxy, [color] * len(xyxy), line_width=1.0, dash=(6.0, 4.0))

    # -- pointer -------------------------------------------------------------------
    def _on_mouse_down(self, x: float, y: float) -> None:
        if self.viewport is None:
            return
        self._down = (x, y)
        self._pointer = (x, y)
        self._down_viewport = self.viewport
        if self.mode != "pan" and self.on_press is not None:
            self.on_press((x, y))

    def _on_mouse_move(self, x: float, y: float) -> None:
        # one message per browser mouse move: keep the common path to a tuple store
        self._pointer = (x, y)
        if self._down is None:
            return
        now = time.monotonic()
        if self.mode == "pan":
            if now - self._last_drag >= self.pan_interval:
                self._last_drag = now
                self._pan_from_down(fast=True)
        elif self.on_drag is not None and now - self._last_drag >= self.drag_interval:
            self._last_drag = now
            self.on_drag(self._down, (x, y))

    def _pan_from_down(self, fast: bool) -> None:
        assert self._down is not None and self._down_viewport is not None
        dx, dy = self._pointer[0] - self._down[0], self._pointer[1] - self._down[1]
        self.set_viewport(pan(self._down_viewport, dx, dy), fast=fast)

    def _on_mouse_up(self, x: float, y: float) -> None:
        down, self._down = self._down, None
        if down is None:
            return
        self._pointer = (x, y)
        if self.mode == "pan":
            self._down = down
            self._pan_from_down(fast=False)
            self._down = None
        elif self.on_release is not None:
            self.on_release(down, (x, y))

    def _on_mouse_out(self, x: float, y: float) -> None:
        """A drag that leaves the canvas ends where it left (clamped to the canvas), as
        a release there: the box drawn or moved up to the edge is kept (the page sends
        no events from outside the canvas). Escape is the way to cancel a drag."""
        if self._down is None:
            return
        cw, ch = self.canvas_wh
        px, py = self._pointer
        self._on_mouse_up(min(max(px, 0.0), float(cw)), min(max(py, 0.0), float(ch)))

    def _on_mouse_wheel(self, dx: float, dy: float) -> None:
        # ipycanvas sends the wheel deltas only: zoom around the last pointer position
        if dy:
            self.zoom(1.25 if dy < 0 else 0.8, self._pointer)
