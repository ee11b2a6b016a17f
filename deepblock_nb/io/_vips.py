"""Large PNG, JPEG, GIF, WebP and huge-strip TIFFs streamed by libvips into a tiled pyramidal TIFF.

Such formats have no random access, so reading one window means decoding the
image (a TIFF whose strip is larger than ``_tiff.STREAM_SEGMENT_BYTES`` too: a
single-strip TIFF is decoded whole by every window). Instead of decoding it whole in memory, libvips decodes it top to bottom
(``access="sequential"``), converts it to 8-bit RGB by the rules of ``_convert``
and writes it once as a tiled (512 px), pyramidal BigTIFF: deflate for lossless
sources, JPEG quality 95 for JPEG sources (the source is lossy already; the cache
stays about the size of the source instead of several times it). Windows and
overviews are then read from that file by ``_tiff`` with bounded memory.

With a cache folder the TIFF is kept there under the source's content key and
reused; without one it is built in a private temporary file that ``close()``
deletes. Without pyvips (not installed, or its library fails to load)
``available()`` is false and ``_raster`` decodes with Pillow as before.

A display setting (bands, intensity window; ``display.Display``) is applied by
libvips while it streams, with the formula of ``_convert.window_to_uint8``, so a
16-bit PNG follows the same window whichever reader decodes it; the cached
pyramid is named by the setting. ``raw_samples`` streams the source once more,
point-sampled to a small overview, to measure an "auto" window on.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import DeepBlockError, ImageReadError
from deepblock_nb.io import _cache
from deepblock_nb.io._base import OVERVIEW_CACHE_SIDE, ImageSource, _fit, _resize
from deepblock_nb.io._lru import TileLRU
from deepblock_nb.io._tiff import TiffSource
from deepblock_nb.io.display import Display, strided

__all__ = ["PyramidSource", "available", "build_pyramid", "header", "pyramid_levels"]

U8 = npt.NDArray[np.uint8]
log = logging.getLogger(__name__)

TILE_SIDE = 512
JPEG_QUALITY = 95
_LOADERS = {"jpeg": "jpegload", "png": "pngload", "gif": "gifload", "webp": "webpload", "tiff": "tiffload"}

_lock = threading.Lock()
_module: Any = None
_tried = False


def _pyvips() -> Any:
    """The ``pyvips`` module, or ``None`` when it cannot be loaded (logged once)."""
    global _module, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                import pyvips

                pyvips.cache_set_max(0)  # no operation cache: it would keep source files open
                _module = pyvips
            except Exception as exc:  # ImportError, or OSError when libvips itself fails to load
                log.info(
                    "pyvips is not available (%s): large PNG/JPEG/GIF/WebP are decoded whole by Pillow", exc
                )
        return _module


def available(fmt: str) -> bool:
    """Whether libvips can stream ``fmt`` here (pyvips loads and has that loader)."""
    vips = _pyvips()
    loader = _LOADERS.get(fmt)
    return vips is not None and loader is not None and vips.type_find("VipsOperation", loader) != 0


def header(path: Path, fmt: str) -> tuple[int, int, int, str] | None:
    """``(width, height, bands, vips format)`` from the file's header, without decoding
    pixels (None when libvips cannot stream ``fmt`` or cannot read the header)."""
    vips = _pyvips()
    if vips is None or not available(fmt):
        return None
    try:
        im = vips.Image.new_from_file(str(path), access="sequential", fail_on="error")
        return int(im.width), int(im.height), int(im.bands), str(im.format)
    except Exception:  # pyvips.Error: the caller reports the file with its own message
        return None


def pyramid_levels(width: int, height: int, tile: int = TILE_SIDE) -> list[tuple[int, int]]:
    """``(width, height)`` of each level ``tiffsave(pyramid=True)`` writes: halved (floor)
    until the level fits in one tile or a side would reach zero."""
    levels = [(width, height)]
    while (width > tile or height > tile) and width >= 2 and height >= 2:
        width, height = width // 2, height // 2
        levels.append((width, height))
    return levels


def _window(im: Any, window: tuple[tuple[float, float], ...]) -> Any:
    """``floor(clip((v - lo) * 255 / (hi - lo), 0, 255) + 0.5)`` per band, as ``_convert``."""
    pairs = window if len(window) == 1 else window[: im.bands]
    lo = [p[0] for p in pairs]
    scale = [255.0 / (p[1] - p[0]) for p in pairs]
    v = (im.cast("double") - lo) * scale
    v = (v < 0).ifthenelse(0, v)
    v = (v > 255).ifthenelse(255, v)
    return (v + 0.5).floor().cast("uchar")


def _displayed(im: Any, display: Display) -> Any:
    """``im`` under a display setting: chosen bands, or windowed colour with alpha kept."""
    if display.bands is not None:
        chosen = im[display.bands[0]]
        if len(display.bands) > 1:
            chosen = chosen.bandjoin([im[b] for b in display.bands[1:]])
        if display.window is not None:
            v = _window(chosen, display.window)
        elif chosen.format == "ushort":
            v = (chosen >> 8).cast("uchar")
        elif chosen.format == "uchar":
            v = chosen
        else:
            raise ValueError(f"samples of type {im.format} are not supported")
        return (v.bandjoin([v, v]) if v.bands == 1 else v).copy(interpretation="srgb")
    if display.window is None:
        return _rgb8(im)
    colour = 4 if im.interpretation == "cmyk" and im.bands >= 4 else (1 if im.bands <= 2 else 3)
    v = _window(im.extract_band(0, n=colour), display.window)
    if im.bands > colour and colour != 4:  # alpha keeps its data type's range
        a = im[colour]
        v = v.bandjoin((a >> 8).cast("uchar") if a.format == "ushort" else a)
    return _rgb8(v.copy(interpretation="cmyk" if colour == 4 else "srgb"))


def _rgb8(im: Any) -> Any:
    """``im`` as 3-band 8-bit sRGB by the rules of ``_convert`` (high byte, grey
    repeated, CMYK formula, straight alpha composited on white)."""
    if im.format == "ushort":
        im = (im >> 8).cast("uchar")
    elif im.format != "uchar":
        raise ValueError(f"samples of type {im.format} are not supported")
    if im.interpretation == "cmyk" and im.bands >= 4:
        k = 255 - im[3]
        rgb = ((255 - im.extract_band(0, n=3)) * k + 127.5) * (1 / 255)
        return rgb.floor().cast("uchar").copy(interpretation="srgb")
    colour = 1 if im.bands <= 2 else 3
    rgb = im.extract_band(0, n=colour)
    if im.bands in (2, 4):
        a = im[colour]
        # (c * a + 255 * (255 - a) + 127) // 255 as _convert; + 0.5 keeps the float floor exact
        rgb = ((rgb * a + (255 - a) * 255 + 127.5) * (1 / 255)).floor().cast("uchar")
    if colour == 1:
        rgb = rgb.bandjoin([rgb, rgb])
    return rgb.copy(interpretation="srgb")


def build_pyramid(
    source: Path, fmt: str, size: tuple[int, int], target: Path, display: Display | None = None
) -> None:
    """Stream ``source`` into a tiled pyramidal 8-bit RGB TIFF at ``target`` (atomically).

    Raises:
        ImageReadError: the pixels cannot be decoded (truncated or damaged file),
            or they do not have the size the header says.
    """
    vips = _pyvips()
    if vips is None:  # pragma: no cover - callers check available() first
        raise RuntimeError("pyvips is not available")
    options: dict[str, Any] = {"compression": "deflate", "predictor": "horizontal"}
    if fmt == "jpeg":
        options = {"compression": "jpeg", "Q": JPEG_QUALITY}
    try:
        im = vips.Image.new_from_file(str(source), access="sequential", fail_on="error")
        if (im.width, im.height) != size:
            raise ImageReadError(
                f"{source}: decoded to {im.width} x {im.height} pixels but the header says {size[0]} x {size[1]}",
                source,
            )
        rgb = _rgb8(im) if display is None or display.is_default else _displayed(im, display)

        def save(tmp: Path) -> None:
            rgb.tiffsave(
                str(tmp),
                tile=True,
                tile_width=TILE_SIDE,
                tile_height=TILE_SIDE,
                pyramid=True,
                bigtiff=True,
                keep=0,  # no metadata: the cache holds pixels only
                **options,
            )

        _cache.write_atomically(target, save)
    except vips.Error as exc:
        reason = " ".join(str(exc.detail or exc.message).split())[:300]
        raise ImageReadError(f"{source}: cannot decode the {fmt.upper()} pixels ({reason})", source) from exc
    except ValueError as exc:
        raise ImageReadError(f"{source}: cannot convert the {fmt.upper()} pixels ({exc})", source) from exc


class PyramidSource(ImageSource):
    """A PNG/JPEG/GIF/WebP read from the pyramidal TIFF libvips builds on first use."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        size: tuple[int, int],
        cache_dir: Path | None,
        tile_cache: TileLRU,
        display: Display | None = None,
    ) -> None:
        super().__init__(path, pyramid_levels(*size), fmt)
        self.display = display
        self._size = size
        self._cache_dir = cache_dir
        self._tile_cache = tile_cache
        self._tiff: TiffSource | None = None
        self._temp: Path | None = None
        self._small: U8 | None = None  # the decoded overview, OVERVIEW_CACHE_SIDE a side

    def _open_pyramid(self, target: Path) -> TiffSource | None:
        try:
            tiff = TiffSource(target, None, self._tile_cache)
        except (DeepBlockError, OSError):
            return None
        if tiff.levels[0] != self._size:
            tiff.close()
            return None
        return tiff

    def _cached_target(self) -> Path | None:
        """Where the cache folder keeps this source's pyramid (None without a folder)."""
        if self._cache_dir is None:
            return None
        key = "" if self.display is None else self.display.key  # one pyramid per display setting
        return _cache.cache_path(self._cache_dir, self.path, f"pyramid{key}", ".tif")

    def pyramid(self) -> TiffSource:
        """The TIFF this source reads from, built (or found in the cache folder) on first use."""
        with self._lock:
            if self._tiff is not None:
                return self._tiff
            if self._closed:
                raise ImageReadError(f"{self.path}: the image source is closed", self.path)
            tiff = None
            if self._cache_dir is not None:
                target = self._cached_target()
                assert target is not None
                tiff = self._open_pyramid(target) if target.exists() else None
            else:
                fd, name = tempfile.mkstemp(prefix="dbn-pyramid-", suffix=".tif")
                os.close(fd)
                target = self._temp = Path(name)
            if tiff is None:
                build_pyramid(self.path, self.format, self._size, target, self.display)
                tiff = self._open_pyramid(target)
                if tiff is None:  # pragma: no cover - we just wrote it: only a failing disk gets here
                    raise ImageReadError(f"{self.path}: cannot read back its pyramid {target}", self.path)
            if tiff.levels != self.levels:  # another libvips may halve differently: trust the file
                log.debug("%s: pyramid levels %s, not the predicted %s", self.path, tiff.levels, self.levels)
                self.levels = list(tiff.levels)
            self._tiff = tiff
            return tiff

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> U8:
        return self.pyramid()._read(level, x, y, w, h)

    def _decode_error(self, exc: Exception) -> ImageReadError:
        reason = " ".join(str(getattr(exc, "detail", "") or getattr(exc, "message", "") or exc).split())
        return ImageReadError(
            f"{self.path}: cannot decode the {self.format.upper()} pixels ({reason[:300]})", self.path
        )

    def raw_samples(self, max_side: int) -> Any:
        """Raw samples point-sampled from one more sequential decode of the source."""
        vips = _pyvips()
        try:
            im = vips.Image.new_from_file(str(self.path), access="sequential", fail_on="error")
            step = max(1, -(-max(im.width, im.height) // max_side))
            small = im.subsample(step, step, point=True) if step > 1 else im
            return strided(np.asarray(small.numpy()), max_side)
        except vips.Error as exc:
            raise self._decode_error(exc) from exc

    def overview(self, max_side: int) -> U8:
        """Overviews up to ``OVERVIEW_CACHE_SIDE`` a side come from one sequential decode shrunk
        as it streams (about a second for 400 MP, bounded memory), kept in the cache folder (or
        by this source without one), so the image shows without waiting for its pyramid, which
        the first window read builds. Always this way, so an overview does not depend on
        whether the pyramid exists yet. Larger ones are read from the pyramid's levels."""
        if max_side < 1:
            return super().overview(max_side)  # refused before any decoding
        ow, oh = _fit(self.width, self.height, max_side)
        if max(ow, oh) > OVERVIEW_CACHE_SIDE:
            self.pyramid()  # the levels are final once the file exists
            return super().overview(max_side)
        with self._lock:
            if self._closed:
                raise ImageReadError(f"{self.path}: the image source is closed", self.path)
            small = self._small
        if small is None:
            path = None
            if self._cache_dir is not None:
                key = "" if self.display is None else self.display.key  # one per display setting
                path = _cache.cache_path(self._cache_dir, self.path, f"overview{OVERVIEW_CACHE_SIDE}{key}")
                small = _cache.load_cached(path)
            if small is None:
                small = self._decoded_overview(OVERVIEW_CACHE_SIDE)
                if path is not None:
                    small = _cache.write_cached(path, small)
            with self._lock:
                self._small = small
        return _resize(np.asarray(small), ow, oh)

    def _decoded_overview(self, max_side: int) -> U8:
        vips = _pyvips()
        ow, oh = _fit(self.width, self.height, max_side)
        factor = max(1, min(self.width // ow, self.height // oh))  # a whole factor at most the reduction
        options: dict[str, Any] = {"access": "sequential", "fail_on": "error"}
        if self.format == "jpeg":  # the JPEG decoder scales by 1/2, 1/4 or 1/8 as it decodes
            options["shrink"] = max(d for d in (1, 2, 4, 8) if d <= factor)
        try:
            im = vips.Image.new_from_file(str(self.path), **options)
            rgb = (
                _rgb8(im) if self.display is None or self.display.is_default else _displayed(im, self.display)
            )
            rest = max(1, min(rgb.width // ow, rgb.height // oh))
            small = rgb.shrink(rest, rest) if rest > 1 else rgb  # box means, row by row
            arr = np.asarray(small.numpy(), dtype=np.uint8)
        except vips.Error as exc:
            raise self._decode_error(exc) from exc
        except ValueError as exc:
            raise ImageReadError(
                f"{self.path}: cannot convert the {self.format.upper()} pixels ({exc})", self.path
            ) from exc
        return _resize(arr.reshape(arr.shape[0], arr.shape[1], -1)[:, :, :3], ow, oh)

    def close(self) -> None:
        with self._lock:
            super().close()
            if self._tiff is not None:
                self._tiff.close()
                self._tiff = None
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)
                self._temp = None
            self._small = None
