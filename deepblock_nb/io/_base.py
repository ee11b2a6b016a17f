"""``ImageInfo`` and the ``ImageSource`` base class shared by every reader."""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
from PIL import Image

from deepblock_nb.errors import DecompressionBombError, WindowError
from deepblock_nb.io.display import Display

__all__ = ["ImageInfo", "ImageSource", "WindowError", "check_pixels", "level_for"]

U8 = npt.NDArray[np.uint8]

# Levels up to this many pixels are read whole and resized for an overview;
# larger ones are sampled band by band so memory stays bounded.
OVERVIEW_DIRECT_PIXELS = 4096 * 4096
# Bytes of one band when an overview is sampled from a large level.
OVERVIEW_BAND_BYTES = 64 * 1024 * 1024
# Side of the overview kept under ``cache_dir`` for large images without a pyramid.
OVERVIEW_CACHE_SIDE = 2048

_ids = itertools.count(1)


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's headers say, without decoding pixels.

    Attributes:
        width, height: full-resolution size in pixels.
        format: lower-case format name (``"png"``, ``"jpeg"``, ``"tiff"``, ...).
        mode: colour layout as stored (``"RGB"``, ``"L"``, ``"RGBA"``, ``"P"``, ``"CMYK"``, ...).
        dtype: numpy name of one stored sample (``"uint8"``, ``"uint16"``, ...).
        bands: samples per pixel as stored.
        levels: ``(width, height)`` of each resolution level, level 0 full size.
        mpp: ``(x, y)`` microns per pixel of level 0 when the file says (slides, TIFF
            resolution tags in centimetres or inches), else None.
    """

    width: int
    height: int
    format: str
    mode: str
    dtype: str
    bands: int
    levels: tuple[tuple[int, int], ...] = field(default=())
    mpp: tuple[float, float] | None = None


def level_for(levels: list[tuple[int, int]] | tuple[tuple[int, int], ...], fx: float, fy: float) -> int:
    """The pyramid level to read for an output reduced ``fx`` times across and ``fy``
    times down from level 0: the coarsest level that is not coarser than that (it
    keeps every pixel the output can show, and reads the fewest). Overviews and
    the reduced reads of prediction both choose through this.
    """
    w0, h0 = levels[0]
    best = 0
    for i, (lw, lh) in enumerate(levels):
        if lw * fx >= w0 and lh * fy >= h0:
            best = i
    return best


def check_pixels(path: Path, width: int, height: int, max_pixels: float | None) -> None:
    """Raise ``DecompressionBombError`` when ``width * height`` exceeds ``max_pixels``."""
    if max_pixels is not None and width * height > max_pixels:
        raise DecompressionBombError(
            f"{path}: the header claims {width} x {height} = {width * height:,} pixels, over the "
            f"limit of {int(max_pixels):,} (deepblock_nb.io.images.MAX_PIXELS); raise the limit "
            "only for files you trust",
            path,
        )


class ImageSource:
    """Random access to the pixels of one image as 8-bit RGB.

    Attributes:
        path: the image file (never modified).
        width, height: full-resolution size in pixels.
        levels: ``(width, height)`` of each resolution level, level 0 full size.
        format: lower-case format name.
        cache_dir: folder for derived data (decoded pixels, overviews), or ``None``.
        display: the bands and intensity window applied when converting to 8 bits
            (``deepblock_nb.io.display``); None: the data type's range.
        mpp: ``(x, y)`` microns per pixel of level 0, or None when unknown.

    Subclasses implement ``_read(level, x, y, w, h)``; windows reaching it are
    already checked. Subclasses that can measure an "auto" window implement
    ``raw_samples``. Instances are safe to use from several threads.
    """

    def __init__(self, path: Path, levels: list[tuple[int, int]], format: str) -> None:
        self.path = path
        self.levels = levels
        self.width, self.height = levels[0]
        self.format = format
        self.cache_dir: Path | None = None
        self.display: Display | None = None
        self.mpp: tuple[float, float] | None = None
        self.uid = next(_ids)
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} {self.width}x{self.height} {self.format}>"

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> U8:
        """Pixels of a window, ``(h, w, 3)`` uint8 RGB.

        ``x, y, w, h`` are pixels of ``level`` (origin top-left). The window must
        be non-empty and lie fully inside the level, else ``WindowError``.
        """
        if self._closed:
            raise WindowError(f"{self.path}: the image source is closed")
        if not 0 <= level < len(self.levels):
            raise WindowError(f"{self.path}: level {level} does not exist (the image has {len(self.levels)})")
        window = (x, y, w, h)
        try:
            x, y, w, h = (int(v) for v in window)
        except (TypeError, ValueError) as exc:
            raise WindowError(f"{self.path}: window {window} must be integers") from exc
        if (x, y, w, h) != window:
            raise WindowError(f"{self.path}: window {window} must be whole pixels")
        lw, lh = self.levels[level]
        if w <= 0 or h <= 0:
            raise WindowError(f"{self.path}: window x={x} y={y} w={w} h={h} is empty")
        if x < 0 or y < 0 or x + w > lw or y + h > lh:
            raise WindowError(
                f"{self.path}: window x={x} y={y} w={w} h={h} is not inside level {level} of size {lw} x {lh}"
            )
        out = self._read(level, x, y, w, h)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8, out.shape  # each reader's contract
        return out

    def overview(self, max_side: int) -> U8:
        """The whole image, ``(h', w', 3)`` uint8, longest side ``<= max_side``, aspect kept.

        Never upscales. Uses the smallest pyramid level that is still at least
        ``max_side`` on its longest side.
        """
        if max_side < 1:
            raise WindowError(f"{self.path}: overview max_side must be >= 1, got {max_side}")
        ow, oh = _fit(self.width, self.height, max_side)
        level = level_for(self.levels, self.width / ow, self.height / oh)
        return self._overview_from_level(level, ow, oh)

    def _overview_from_level(self, level: int, ow: int, oh: int) -> U8:
        lw, lh = self.levels[level]
        if lw * lh <= OVERVIEW_DIRECT_PIXELS:
            return _resize(self.read_region(0, 0, lw, lh, level), ow, oh)
        if self.cache_dir is None or max(ow, oh) > OVERVIEW_CACHE_SIDE:
            return self._sample_level(level, ow, oh)
        # a large level without a smaller pyramid level: keep one sampled overview on disk
        from deepblock_nb.io import _cache

        key = "" if self.display is None else self.display.key  # one cached overview per display setting
        path = _cache.cache_path(self.cache_dir, self.path, f"overview{OVERVIEW_CACHE_SIDE}{key}")
        small = _cache.load_cached(path)
        if small is None:
            cw, ch = _fit(lw, lh, OVERVIEW_CACHE_SIDE)
            small = _cache.write_cached(path, self._sample_level(level, cw, ch))
        return _resize(np.asarray(small), ow, oh)

    def _band_height(self, level: int) -> int:
        """Rows per band when sampling a large level; subclasses align it to tiles."""
        lw, _ = self.levels[level]
        return max(1, OVERVIEW_BAND_BYTES // (3 * lw))

    def _sample_level(self, level: int, ow: int, oh: int) -> U8:
        """Nearest-neighbour ``(oh, ow, 3)`` sample of a level read band by band."""
        lw, lh = self.levels[level]
        xs = np.minimum(((np.arange(ow) + 0.5) * lw / ow).astype(np.int64), lw - 1)
        ys = np.minimum(((np.arange(oh) + 0.5) * lh / oh).astype(np.int64), lh - 1)
        out = np.empty((oh, ow, 3), np.uint8)
        band = self._band_height(level)
        for y0 in range(0, lh, band):
            rows = np.flatnonzero((ys >= y0) & (ys < y0 + band))
            if len(rows) == 0:
                continue
            y1 = min(lh, int(ys[rows[-1]]) + 1)
            block = self._read_band(level, y0, y1 - y0)
            out[rows] = block[ys[rows] - y0][:, xs]
        return out

    def _read_band(self, level: int, y: int, h: int) -> U8:
        """Rows ``y .. y + h`` of a level at full width, for sampling an overview."""
        return self.read_region(0, y, self.levels[level][0], h, level)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> U8:
        raise NotImplementedError

    def raw_samples(self, max_side: int) -> npt.NDArray[np.generic] | None:
        """``(N, C)`` unconverted samples of an overview about ``max_side`` a side, or
        None when this reader holds only 8-bit RGB (nothing to measure a window on)."""
        return None

    def close(self) -> None:
        """Release file handles and cached memory; reads afterwards raise."""
        self._closed = True

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side ``<= max_side`` (never upscaled), aspect kept."""
    scale = min(1.0, max_side / max(w, h))
    return max(1, min(w, math.floor(w * scale + 1e-9))), max(1, min(h, math.floor(h * scale + 1e-9)))


def _resize(rgb: U8, ow: int, oh: int) -> U8:
    if rgb.shape[1] == ow and rgb.shape[0] == oh:
        return rgb
    im = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(im.resize((ow, oh), Image.Resampling.BOX))
