"""Formats without random access: PNG/APNG, JPEG, GIF, ICO, BMP, JPEG 2000, WebP, SVG.

Pixels are decoded once, on the first read, as 8-bit RGB. With a cache folder
the decoded array is written there (``_cache``) and memory-mapped; without one a
small image stays in memory and a large one is spilled to a private temporary
file. Overviews of a JPEG use the decoder's draft mode and of a JPEG 2000 its
resolution reduction, so they never need the full decode. Uncompressed 24/32-bit
BMPs are memory-mapped directly.

PNG, JPEG, GIF and WebP of ``STREAM_MIN_PIXELS`` or more are not decoded whole:
when pyvips is available, libvips streams them once into a tiled pyramidal TIFF
(``_vips``) read with bounded memory; without pyvips they take the path above.

A display setting (``display.Display``) is applied to the raw decoded samples
(16-bit PNG, Pillow's ``I;16``, ``I`` and ``F`` modes) before they become 8-bit;
the cached decode is named by it. 16-bit colour PNGs, which Pillow reduces to
8 bits, are decoded by imagecodecs when a setting needs their samples. Without a
setting, decoding is exactly as before.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from deepblock_nb.errors import DecompressionBombError, ImageReadError
from deepblock_nb.io import _cache, _vips
from deepblock_nb.io._base import ImageInfo, ImageSource, _fit, _resize, check_pixels
from deepblock_nb.io._checks import check_complete, parse_bmp_header
from deepblock_nb.io._convert import scale_to_uint8, to_rgb8
from deepblock_nb.io._lru import TileLRU, shared_tile_cache
from deepblock_nb.io._svg import render_svg, svg_size
from deepblock_nb.io.display import Display, strided

__all__ = ["BmpSource", "DecodedSource", "open_pillow", "pillow_rgb", "probe_pillow", "probe_svg"]

U8 = npt.NDArray[np.uint8]

# Decoded arrays larger than this are not kept in memory without a cache folder.
IN_MEMORY_MAX_BYTES = 256 * 1024 * 1024
# Images of at least this many pixels are streamed by libvips into a pyramid
# (when pyvips loads). Below it a whole decode costs under ~150 MB and is faster
# than writing and reading back a TIFF; the same size is where overviews stop
# reading a level whole (``_base.OVERVIEW_DIRECT_PIXELS``).
STREAM_MIN_PIXELS = 4096 * 4096

_DTYPES = {"1": "bool", "I;16": "uint16", "I;16L": "uint16", "I;16B": "uint16", "I;16N": "uint16"}
_DTYPES.update({"I": "int32", "F": "float32"})


def open_pillow(path: Path, fmt: str) -> Image.Image:
    """``Image.open`` with Pillow's own pixel limit kept, errors mapped to ours.

    Pillow warns (``DecompressionBombWarning``) above ``MAX_IMAGE_PIXELS`` and
    refuses above twice that; the refusal becomes ``DecompressionBombError``.
    """
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DecompressionBombError(
            f"{path}: {exc} (Pillow's limit PIL.Image.MAX_IMAGE_PIXELS applies to {fmt.upper()} files; "
            "raise it only for files you trust)",
            path,
        ) from exc
    except (Image.UnidentifiedImageError, ImportError) as exc:
        # ImportError: a library that replaced Image.open (Ultralytics does, on import)
        # tried to load a plugin for an unknown file
        raise ImageReadError(f"{path}: not a {fmt.upper()} image Pillow can read", path) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path}: corrupt {fmt.upper()} header ({exc})", path) from exc


_VIPS_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Largest ratio of decoded to file bytes accepted past Pillow's pixel limit: real
#: photographs and scans compress 2-200 times; a file claiming far more is a bomb.
STREAM_MAX_RATIO = 1000.0


def probe_pillow(path: Path, fmt: str, max_pixels: float | None) -> ImageInfo:
    """Header-only probe through Pillow (``Image.open`` does not decode pixels).

    Pillow refuses images above twice ``PIL.Image.MAX_IMAGE_PIXELS`` (its guard
    against decoding a "decompression bomb" whole in memory). Formats libvips
    streams in bounded memory (``_vips``; every image that large is read that way)
    are probed from their header by libvips instead, under our own ``max_pixels``
    and as long as they decode to at most :data:`STREAM_MAX_RATIO` times their file size.
    """
    try:
        pillow = open_pillow(path, fmt)
    except DecompressionBombError as exc:
        head = _vips.header(path, fmt)
        if head is None:
            raise
        w, h, bands, sample = head
        check_pixels(path, w, h, max_pixels)
        wide = sample in ("ushort", "short")
        ratio = w * h * bands * (2 if wide else 1) / max(1, path.stat().st_size)
        if ratio > STREAM_MAX_RATIO:
            raise DecompressionBombError(
                f"{exc} It would decode to {ratio:.0f} times its file size (at most "
                f"{STREAM_MAX_RATIO:.0f} is streamed past that limit).",
                path,
            ) from exc
        mode = "I;16" if wide and bands == 1 else _VIPS_MODES.get(bands, "RGB")
        return ImageInfo(w, h, fmt, mode, "uint16" if wide else "uint8", bands, ((w, h),))
    with pillow as im:
        w, h = im.size
        check_pixels(path, w, h, max_pixels)
        mode = im.mode
        bands = len(im.getbands())
    dtype = _DTYPES.get(mode, "uint8")
    if _png_16bit_colour(path, fmt):
        dtype = "uint16"  # Pillow holds these as 8-bit; our decode keeps all 16
    return ImageInfo(w, h, fmt, mode, dtype, bands, ((w, h),))


def _png_16bit_colour(path: Path, fmt: str) -> int | None:
    """The PNG colour type (2 RGB, 4 grey + alpha, 6 RGBA) of a 16-bit colour PNG, else None."""
    if fmt != "png":
        return None
    with path.open("rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[24] != 16 or head[25] not in (2, 4, 6):
        return None
    return int(head[25])


def probe_svg(path: Path, max_pixels: float | None) -> ImageInfo:
    w, h = svg_size(path)
    check_pixels(path, w, h, max_pixels)
    return ImageInfo(w, h, "svg", "RGBA", "uint8", 4, ((w, h),))


def pillow_samples(im: Image.Image, path: Path | None = None, fmt: str = "") -> tuple[Any, str, str] | None:
    """Raw decoded samples of a loaded Pillow image: ``(samples, photometric, alpha)``
    for ``to_rgb8``, or None for a palette image (its colours are its colour map)."""
    mode = im.mode
    colour16 = None if path is None else _png_16bit_colour(path, fmt)
    if colour16 is not None:
        import imagecodecs

        assert path is not None
        arr = imagecodecs.png_decode(path.read_bytes())
        return arr, ("grey" if colour16 == 4 else "rgb"), ("straight" if colour16 in (4, 6) else "none")
    if mode in ("P", "PA"):
        return None
    alphas = {"RGBa": "premultiplied", "La": "premultiplied", "RGBA": "straight", "LA": "straight"}
    if mode in alphas:
        return np.asarray(im), ("rgb" if mode.startswith("RGB") else "grey"), alphas[mode]
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), "grey", "none"
    if mode in ("I", "F", "L", "1"):
        return np.asarray(im), "grey", "none"
    if mode == "CMYK":
        return np.asarray(im), "cmyk", "none"
    return np.asarray(im.convert("RGB")), "rgb", "none"


def pillow_rgb(
    im: Image.Image, display: Display | None = None, path: Path | None = None, fmt: str = ""
) -> U8:
    """Decoded pixels of a Pillow image as ``(H, W, 3)`` uint8 (rules in ``_convert``).

    ``display``: bands and window applied to the raw samples (``path`` and ``fmt``
    let a 16-bit colour PNG be decoded at full depth); None: the plain rules.
    """
    if display is not None and not display.is_default:
        found = pillow_samples(im, path, fmt)
        if found is not None:
            samples, photometric, alpha = found
            return to_rgb8(samples, photometric, alpha=alpha, display=display)  # type: ignore[arg-type]
    mode = im.mode
    if (mode == "P" and "transparency" in im.info) or mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBa", "La"):
        premult = to_rgb8(np.asarray(im), "rgb" if mode == "RGBa" else "grey", alpha="premultiplied")
        return premult
    if mode in ("RGBA", "LA"):
        return to_rgb8(np.asarray(im), "rgb" if mode == "RGBA" else "grey", alpha="straight")
    if mode.startswith("I;16"):
        return to_rgb8(np.asarray(im).astype(np.uint16), "grey")
    if mode == "I":  # Pillow's 32-bit mode holds 16-bit samples in practice
        return to_rgb8(np.clip(np.asarray(im), 0, 65535).astype(np.uint16), "grey")
    if mode == "F":
        return to_rgb8(np.asarray(im), "grey")
    if mode in ("L", "1"):
        return to_rgb8(scale_to_uint8(np.asarray(im)), "grey")
    if mode == "CMYK":
        return to_rgb8(np.asarray(im), "cmyk")
    return np.asarray(im.convert("RGB"))


class DecodedSource(ImageSource):
    """An image decoded whole on first use, then read by slicing (see module docstring)."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        size: tuple[int, int],
        decode: Callable[[], U8],
        cache_dir: Path | None,
        fast_overview: Callable[[int, int], U8 | None] | None = None,
        raw: Callable[[], Any] | None = None,
        display: Display | None = None,
    ) -> None:
        super().__init__(path, [size], fmt)
        self.display = display
        self._kind = "rgb" + ("" if display is None else display.key)  # one cached decode per setting
        self._raw = raw
        self._decode = decode
        self._cache_dir = cache_dir  # decoded pixels go here; overviews are sliced from them
        self._fast_overview = fast_overview
        self._pixels: U8 | None = None
        self._temp: Path | None = None

    def pixels(self) -> U8:
        """The whole decoded image ``(H, W, 3)`` uint8 (memory map or array)."""
        with self._lock:
            if self._pixels is not None:
                return self._pixels
            if self._closed:
                raise ImageReadError(f"{self.path}: the image source is closed", self.path)
            cached = None
            if self._cache_dir is not None:
                target = _cache.cache_path(self._cache_dir, self.path, self._kind)
                cached = _cache.load_cached(target)
                if cached is not None and cached.shape[:2] != (self.height, self.width):
                    cached = None
            if cached is None:
                rgb = self._decode()
                if rgb.shape != (self.height, self.width, 3):
                    raise ImageReadError(
                        f"{self.path}: decoded to {rgb.shape[1]} x {rgb.shape[0]} pixels but the header "
                        f"says {self.width} x {self.height}",
                        self.path,
                    )
                if self._cache_dir is not None:
                    cached = _cache.write_cached(
                        _cache.cache_path(self._cache_dir, self.path, self._kind), rgb
                    )
                elif rgb.nbytes > IN_MEMORY_MAX_BYTES:
                    cached, self._temp = _cache.spill_to_temp(rgb)
                else:
                    cached = rgb
            self._pixels = cached
            return cached

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> U8:
        return np.array(self.pixels()[y : y + h, x : x + w])

    def raw_samples(self, max_side: int) -> Any:
        samples = None if self._raw is None else self._raw()
        return None if samples is None else strided(np.asarray(samples), max_side)

    def overview(self, max_side: int) -> U8:
        if self._pixels is None and self._fast_overview is not None and max_side >= 1:
            ow, oh = _fit(self.width, self.height, max_side)
            small = self._fast_overview(ow, oh)
            if small is not None:
                return _resize(small, ow, oh)
        return super().overview(max_side)

    def close(self) -> None:
        with self._lock:
            super().close()
            self._pixels = None
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)
                self._temp = None


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error)
"""What Pillow raises on damaged pixel data."""


def _rgb(im: Image.Image, path: Path, display: Display | None = None, fmt: str = "") -> U8:
    """``pillow_rgb`` with errors of ``_convert`` (which knows no file) naming ``path``."""
    try:
        return pillow_rgb(im, display, path, fmt)
    except ImageReadError as exc:
        if exc.path is not None:
            raise
        raise type(exc)(f"{path}: {exc}", path) from exc


def decoder_for(path: Path, fmt: str, display: Display | None = None) -> Callable[[], U8]:
    """A function decoding the whole image (first frame, largest icon) to RGB."""
    if fmt == "svg":
        w, h = svg_size(path)
        if display is None or display.is_default:
            return lambda: render_svg(path, w, h)
        return lambda: to_rgb8(render_svg(path, w, h), "rgb", display=display)

    def decode() -> U8:
        with open_pillow(path, fmt) as im:
            try:
                im.seek(0)
                im.load()
                return _rgb(im, path, display, fmt)
            except _DECODE_ERRORS as exc:
                raise ImageReadError(f"{path}: cannot decode the {fmt.upper()} pixels ({exc})", path) from exc

    return decode


def raw_decoder_for(path: Path, fmt: str) -> Callable[[], Any] | None:
    """A function decoding the whole image's raw samples (see ``pillow_samples``); None for SVG."""
    if fmt == "svg":
        return None

    def decode() -> Any:
        with open_pillow(path, fmt) as im:
            try:
                im.seek(0)
                im.load()
                found = pillow_samples(im, path, fmt)
            except _DECODE_ERRORS as exc:
                raise ImageReadError(f"{path}: cannot decode the {fmt.upper()} pixels ({exc})", path) from exc
        return None if found is None else found[0]

    return decode


def fast_overview_for(
    path: Path, fmt: str, display: Display | None = None
) -> Callable[[int, int], U8 | None] | None:
    """A reduced-resolution decoder for JPEG (draft) and JPEG 2000 (reduce), else None."""
    if fmt == "jpeg":

        def jpeg(ow: int, oh: int) -> U8 | None:
            with open_pillow(path, fmt) as im:
                if im.mode not in ("RGB", "L", "CMYK", "YCbCr"):
                    return None
                im.draft("RGB" if im.mode != "CMYK" else "CMYK", (ow, oh))
                try:
                    im.load()
                except _DECODE_ERRORS as exc:
                    raise ImageReadError(f"{path}: cannot decode the JPEG ({exc})", path) from exc
                return _rgb(im, path, display, fmt)

        return jpeg
    if fmt in ("jp2", "j2k"):

        def jp2(ow: int, oh: int) -> U8 | None:
            with open_pillow(path, fmt) as im:
                w, _ = im.size
                factor = max(0, math.floor(math.log2(max(1.0, w / ow))))
                im.reduce = min(factor, 5)  # type: ignore[method-assign,assignment]
                try:
                    im.load()
                except _DECODE_ERRORS as exc:
                    raise ImageReadError(f"{path}: cannot decode the JPEG 2000 ({exc})", path) from exc
                return _rgb(im, path, display, fmt)

        return jp2
    return None


class BmpSource(ImageSource):
    """An uncompressed 24- or 32-bit BMP memory-mapped (no decode at all)."""

    def __init__(self, path: Path, hdr: dict[str, int]) -> None:
        w, h = hdr["width"], abs(hdr["height"])
        super().__init__(path, [(w, h)], "bmp")
        self._bpp = hdr["bpp"] // 8
        self._bottom_up = hdr["height"] > 0
        stride = ((w * hdr["bpp"] + 31) // 32) * 4
        self._map: np.memmap | None = np.memmap(path, np.uint8, "r", offset=hdr["offset"], shape=(h, stride))

    @staticmethod
    def supports(hdr: dict[str, int]) -> bool:
        return hdr["compression"] == 0 and hdr["bpp"] in (24, 32) and hdr["width"] > 0 and hdr["height"] != 0

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> U8:
        assert self._map is not None  # read_region refuses a closed source before this
        if self._bottom_up:
            top = self.height - y
            rows = self._map[top - h : top][::-1]
        else:
            rows = self._map[y : y + h]
        px = rows[:, x * self._bpp : (x + w) * self._bpp].reshape(h, w, self._bpp)
        return np.ascontiguousarray(px[..., 2::-1])  # BGR(X) -> RGB; BI_RGB has no alpha

    def close(self) -> None:
        with self._lock:
            super().close()
            self._map = None


def open_raster(
    path: Path,
    fmt: str,
    info: ImageInfo,
    cache_dir: Path | None,
    tile_cache: TileLRU | None = None,
    display: Display | None = None,
) -> ImageSource:
    """An ``ImageSource`` for a format without random access.

    ``tile_cache`` holds the decoded tiles of a streamed pyramid (default: the shared LRU);
    ``display`` the bands and window to apply (None: the plain rules).
    """
    if display is not None and display.is_default:
        display = None
    if info.width * info.height >= STREAM_MIN_PIXELS and _vips.available(fmt):
        lru = shared_tile_cache if tile_cache is None else tile_cache
        return _vips.PyramidSource(path, fmt, (info.width, info.height), cache_dir, lru, display)
    if fmt == "bmp" and display is None:  # a setting needs the decode path that applies it
        with path.open("rb") as f:
            hdr = parse_bmp_header(f.read(64), path)
        if BmpSource.supports(hdr):
            check_complete(path, "bmp")  # the memory map must not reach past the end of the file
            return BmpSource(path, hdr)
    return DecodedSource(
        path,
        fmt,
        (info.width, info.height),
        decoder_for(path, fmt, display),
        cache_dir,
        fast_overview_for(path, fmt, display),
        raw_decoder_for(path, fmt),
        display,
    )
