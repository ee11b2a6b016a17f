"""Viewport tiles: the image cut into fixed-size tiles per pyramid level, kept in the browser.

A view is painted from the tiles of one source: a pyramid level of the image
(chosen by :func:`deepblock_nb.widgets._viewport.render_plan`, i.e. by
:func:`deepblock_nb.io.images.level_for`) or the in-memory overview. A tile is
``tile x tile`` pixels of that source (smaller at the right and bottom edges),
read with ``read_region`` (never the whole image), encoded once (PNG, or JPEG of
quality >= 92) and sent once into a hidden ipycanvas ``Canvas`` through the
public ``draw_image`` of an ``ipywidgets.Image``. The browser keeps the decoded
pixels; painting a view is then one ``draw_image`` per visible tile, scaled to
its canvas rectangle, which sends no pixels.

:class:`TileCache` bounds the tiles the browser holds (least recently drawn go
first) and counts what it sent.
"""

from __future__ import annotations

import io
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from ipycanvas import Canvas
from ipywidgets import Image as ImageWidget
from ipywidgets import Widget
from PIL import Image

from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets._viewport import Viewport, render_plan

__all__ = ["OVERVIEW", "TILE", "TileCache", "encode_tile", "tile_dest", "tile_window", "visible_tiles"]

TILE = 256  # tile side in pixels of its source
OVERVIEW = -1  # the level index of overview tiles
RETIRE_S = 5.0  # seconds a dropped tile's widgets live on, so queued browser draws still find them
Key = tuple[int, int, int]  # (level or OVERVIEW, column, row)


def visible_tiles(vp: Viewport, level_wh: tuple[int, int], tile: int = TILE) -> list[tuple[int, int]]:
    """``(column, row)`` of the tiles of a source of size ``level_wh`` that the viewport shows, row by row."""
    iw, ih = vp.image_wh
    lw, lh = level_wh
    wx1, wy1, wx2, wy2 = vp.window
    x1, x2 = max(wx1 * lw / iw, 0.0), min(wx2 * lw / iw, float(lw))
    y1, y2 = max(wy1 * lh / ih, 0.0), min(wy2 * lh / ih, float(lh))
    if x2 <= x1 or y2 <= y1:
        return []
    cols = range(int(x1 // tile), math.ceil(x2 / tile))
    rows = range(int(y1 // tile), math.ceil(y2 / tile))
    return [(c, r) for r in rows for c in cols]


def tile_window(level_wh: tuple[int, int], col: int, row: int, tile: int = TILE) -> tuple[int, int, int, int]:
    """The tile's ``(x, y, w, h)`` in pixels of its source."""
    lw, lh = level_wh
    x, y = col * tile, row * tile
    if not (0 <= x < lw and 0 <= y < lh):
        raise ArgumentError(f"tile ({col}, {row}) lies outside a {lw} x {lh} level")
    return (x, y, min(tile, lw - x), min(tile, lh - y))


def tile_dest(
    vp: Viewport, level_wh: tuple[int, int], col: int, row: int, tile: int = TILE
) -> tuple[int, int, int, int]:
    """The canvas rectangle ``(x, y, w, h)`` of a tile, whole canvas pixels.

    Edges are rounded from the exact image position, so neighbouring tiles share
    their edge (no seam, no overlap) and every edge is within half a canvas pixel.
    """
    iw, ih = vp.image_wh
    lw, lh = level_wh

    def edge(v: int, n: int, full: int, origin: float) -> int:
        return round((min(v, n) * full / n - origin) * vp.scale)

    x1, x2 = edge(col * tile, lw, iw, vp.x0), edge((col + 1) * tile, lw, iw, vp.x0)
    y1, y2 = edge(row * tile, lh, ih, vp.y0), edge((row + 1) * tile, lh, ih, vp.y0)
    return (x1, y1, max(1, x2 - x1), max(1, y2 - y1))


#: "auto" sends JPEG when PNG would be more than this many times larger (photographs)
AUTO_JPEG_RATIO = 2.0


def encode_tile(rgb: np.ndarray, fmt: str = "auto", quality: int = 92) -> tuple[bytes, str]:
    """``(bytes, "png" | "jpeg")`` of an ``(H, W, 3)`` uint8 array: PNG (lossless), JPEG
    (``quality``), or ``"auto"``: PNG unless it is more than :data:`AUTO_JPEG_RATIO`
    times the JPEG (flat or drawn content and masks stay exact and small;
    photographs go as high-quality JPEG, a third to a fifth of the PNG)."""
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))

    def encoded(kind: str) -> bytes:
        buf = io.BytesIO()
        if kind == "png":
            im.save(buf, "PNG", compress_level=1)
        else:
            im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()

    if fmt in ("png", "jpeg"):
        return encoded(fmt), fmt
    if fmt != "auto":
        raise ArgumentError(f"tile format must be 'auto', 'png' or 'jpeg', got {fmt!r}")
    png, jpeg = encoded("png"), encoded("jpeg")
    return (jpeg, "jpeg") if len(png) > AUTO_JPEG_RATIO * len(jpeg) else (png, "png")


@dataclass
class _Tile:
    canvas: Canvas
    image: ImageWidget | None  # closed once its pixels surely reached the canvas
    sent_at: float
    last_paint: int


class TileCache:
    """The tiles of one image, each sent once to the browser and drawn from there.

    Args:
        max_tiles: how many tiles the browser keeps (``tile**2 * 4`` bytes each
            there: 512 tiles of 256 px are 128 MiB).
        tile: tile side in pixels of its source.
        fmt: ``"auto"`` (PNG, or JPEG of ``quality`` where PNG would be far larger:
            :func:`encode_tile`), ``"png"`` (lossless) or ``"jpeg"``.

    Attributes:
        bytes_sent: encoded tile bytes sent since creation (never reset).
        tiles_sent: tiles sent since creation; ``hits`` tiles drawn from the cache.
        last_level: the level of the last paint (``OVERVIEW`` or a pyramid level).
    """

    def __init__(self, max_tiles: int = 512, tile: int = TILE, fmt: str = "auto", quality: int = 92) -> None:
        if max_tiles < 1 or tile < 16:
            raise ArgumentError(f"max_tiles must be >= 1 and tile >= 16, got {max_tiles} and {tile}")
        if fmt not in ("auto", "png", "jpeg") or not 92 <= quality <= 100:
            raise ArgumentError(f"tiles are auto, PNG or JPEG of quality 92..100, got {fmt!r} at {quality}")
        self.max_tiles, self.tile, self.fmt, self.quality = max_tiles, tile, fmt, quality
        self.bytes_sent = 0
        self.tiles_sent = 0
        self.hits = 0
        self.last_level: int | None = None
        self._source: Any = None
        self._overview: np.ndarray | None = None
        self._image_wh = (1, 1)
        self._cache: OrderedDict[Key, _Tile] = OrderedDict()
        self._retired: list[tuple[float, Widget]] = []
        self._paints = 0

    def __len__(self) -> int:
        return len(self._cache)

    def keys(self) -> list[Key]:
        """Cached tiles, least recently drawn first."""
        return list(self._cache)

    def reset(self, source: Any, overview: np.ndarray | None, image_wh: tuple[int, int]) -> None:
        """Drop every tile and tile a new image (``source`` None: nothing to tile)."""
        self.clear()
        self._source, self._overview, self._image_wh = source, overview, image_wh

    def clear(self) -> None:
        """Drop the browser's tiles (a reloaded page has blank tile canvases)."""
        now = time.monotonic()
        for t in self._cache.values():
            self._retire(t, now)
        self._cache.clear()

    def close(self) -> None:
        """Close every tile widget now."""
        self.clear()
        for _, w in self._retired:
            w.close()
        self._retired.clear()

    def levels(self) -> list[tuple[int, int]]:
        return list(self._source.levels) if self._source is not None else []

    def level_wh(self, level: int) -> tuple[int, int]:
        """Size of a pyramid level, or of the overview for ``OVERVIEW``."""
        if level == OVERVIEW:
            assert self._overview is not None
            return (int(self._overview.shape[1]), int(self._overview.shape[0]))
        return tuple(self._source.levels[level])  # type: ignore[return-value]

    def pick(self, vp: Viewport, fast: bool = False) -> int | None:
        """The level a view needs (``OVERVIEW`` or a pyramid level); None when nothing is visible."""
        if self._source is None or self._overview is None:
            return None
        cw, ch = vp.canvas_wh
        plan = render_plan(
            vp, self.levels(), self.level_wh(OVERVIEW), max_read_pixels=16 * cw * ch, overview_only=fast
        )
        if plan is None:
            return None
        return OVERVIEW if plan.level is None else plan.level

    def paint(self, layer: Canvas, vp: Viewport, fast: bool = False) -> int:
        """Draw the view's tiles on ``layer`` (inside ``hold_canvas``); returns how many were drawn.

        ``fast`` (while dragging) reads nothing from the file: overview tiles,
        with the cached tiles of the needed level drawn over them.
        """
        self._paints += 1
        self._close_retired(time.monotonic())
        level = self.pick(vp, fast=False)
        if level is None:
            return 0
        self.last_level = level
        if not fast or level == OVERVIEW:
            drawn = self._draw(layer, vp, level, send=True)
        else:
            drawn = self._draw(layer, vp, OVERVIEW, send=True)
            drawn += self._draw(layer, vp, level, send=False)
        self._evict()
        return drawn

    def _draw(self, layer: Canvas, vp: Viewport, level: int, send: bool) -> int:
        wh = self.level_wh(level)
        # upscaled pixels stay crisp squares; downscaling is smoothed
        layer.image_smoothing_enabled = wh[0] / vp.image_wh[0] >= vp.scale - 1e-9
        drawn = 0
        for col, row in visible_tiles(vp, wh, self.tile):
            key = (level, col, row)
            t = self._cache.get(key)
            if t is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            elif send:
                t = self._send(key)
            else:
                continue
            t.last_paint = self._paints
            layer.draw_image(t.canvas, *tile_dest(vp, wh, col, row, self.tile))
            drawn += 1
        return drawn

    def pixels(self, key: Key) -> np.ndarray:
        """The ``(h, w, 3)`` uint8 pixels of a tile (at most ``tile`` square)."""
        level, col, row = key
        x, y, w, h = tile_window(self.level_wh(level), col, row, self.tile)
        if level == OVERVIEW:
            assert self._overview is not None
            return self._overview[y : y + h, x : x + w]
        return self._source.read_region(x, y, w, h, level=level)

    def _send(self, key: Key) -> _Tile:
        rgb = self.pixels(key)
        data, kind = encode_tile(rgb, self.fmt, self.quality)
        h, w = rgb.shape[:2]
        canvas = Canvas(width=w, height=h)
        image = ImageWidget(value=data, format=kind)
        canvas.draw_image(image, 0, 0)
        t = _Tile(canvas, image, time.monotonic(), self._paints)
        self._cache[key] = t
        self.bytes_sent += len(data)
        self.tiles_sent += 1
        return t

    def _retire(self, t: _Tile, now: float) -> None:
        # the browser runs draw commands in order but asynchronously: a widget closed
        # at once could vanish before a queued draw that names it
        self._retired.append((now, t.canvas))
        if t.image is not None:
            self._retired.append((now, t.image))
            t.image = None

    def _close_retired(self, now: float) -> None:
        keep = []
        for at, w in self._retired:
            if now - at >= RETIRE_S:
                w.close()
            else:
                keep.append((at, w))
        self._retired = keep
        for t in self._cache.values():  # the decoded pixels are in the tile canvas by now
            if t.image is not None and now - t.sent_at >= RETIRE_S:
                self._retired.append((now, t.image))
                t.image = None

    def _evict(self) -> None:
        now = time.monotonic()
        for key in list(self._cache):
            if len(self._cache) <= self.max_tiles:
                return
            if self._cache[key].last_paint < self._paints:
                self._retire(self._cache.pop(key), now)
