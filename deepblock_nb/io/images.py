"""Image sources: random access to any image as 8-bit RGB, in bounded memory.

``probe_image(path) -> ImageInfo`` reads headers only (never pixels) and rejects
missing, empty, non-image, truncated and oversized files. ``open_image(path) ->
ImageSource`` gives ``read_region(x, y, w, h, level)`` and ``overview(max_side)``.

Formats, recognised by their content (not their file name):

- TIFF, BigTIFF, OME-TIFF, pyramidal TIFF: a window decodes only the tiles or
  strips it touches; uncompressed images are memory-mapped; pyramid levels are
  exposed as ``levels`` and used for overviews (``_tiff``). A TIFF whose compressed
  strips (or tiles) decode to more than 64 MB each (a single-strip TIFF, say), with
  no pyramid and 8- or 16-bit samples, is streamed by libvips like a large PNG.
- Whole-slide images (``_slide``, the optional extra ``deepblock-nb[slides]``:
  openslide-python with the openslide-bin library): every file whose content
  OpenSlide names as a vendor format (Aperio SVS, Hamamatsu NDPI/VMS/VMU, Leica
  SCN, MIRAX MRXS, Philips TIFF, Sakura SVSLIDE, Trestle, Ventana BIF, DICOM,
  Zeiss CZI) is read region by region through OpenSlide with the slide's pyramid
  as ``levels``; its format is OpenSlide's vendor name (``"aperio"``, ``"mirax"``,
  ...). A plain tiled TIFF (OpenSlide's "generic-tiff") stays with ``_tiff``.
  Without the extra, TIFF-based slides (SVS, NDPI, SCN, BIF, Philips) are read by
  ``_tiff`` as TIFFs, and files only OpenSlide reads (``.mrxs``, ``.vms``,
  ``.vmu``, ``.svslide``; ``detect_format`` says ``"slide"``) raise
  ``FormatDependencyError`` naming the extra.
- PNG (first frame of an APNG), JPEG, GIF (first frame), ICO (largest icon),
  BMP, JPEG 2000, WebP and SVG (rasterised by resvg at its own size): decoded
  once, then cached as a memory map under ``cache_dir`` when given (``_raster``).
  Large PNG, JPEG, GIF and WebP are instead streamed by libvips (pyvips) into a
  tiled pyramidal TIFF under ``cache_dir`` (or a temporary file without one) and
  read from it with bounded memory (``_vips``).

Conversion to 8-bit RGB (``_convert``): 16-bit samples keep their high byte,
floats are read as 0..1, greyscale is repeated on three channels, palettes are
expanded, CMYK is converted with ``(255 - C) * (255 - K) / 255``, and alpha is
composited on white.

Display (``open_image(..., display=...)``; rules in ``deepblock_nb.io.display``):
a ``Display`` chooses the bands shown (3 as RGB, 1 as grey) and an intensity
window ``(lo, hi)`` in sample units mapped linearly to 0..255 and clipped, applied
by every reader inside that same conversion (TIFF tiles, Pillow decodes, libvips
streams), so the viewer, training and prediction see the same pixels. ``"auto"``
measures the default (``measure_samples``: robust percentiles of the raw samples
of a small overview, never the whole image) for samples wider than 8 bits; 8-bit
images read exactly as without a setting. Caches are named by the setting: the
LRU keys of decoded tiles and the derived files under ``cache_dir`` never mix two
settings.

Microns per pixel (``ImageInfo.mpp``, ``ImageSource.mpp``): OpenSlide's
``openslide.mpp-x`` / ``openslide.mpp-y`` for slides; for TIFFs the Aperio
description's ``MPP``, else the resolution tags when their unit is the centimetre
or the inch (not the 72-dpi placeholder); None when unknown.

Windows must lie fully inside the level and be non-empty; anything else raises
``WindowError`` (a ``ValueError``). Decoded tiles are kept in one LRU shared by
all sources (``set_tile_cache_bytes``). Sources are safe to read from several
threads at once.
"""

from __future__ import annotations

from pathlib import Path

from deepblock_nb.errors import ArgumentError, ImageReadError, UnsupportedFormatError
from deepblock_nb.io import _checks, _slide, _vips
from deepblock_nb.io._base import ImageInfo, ImageSource, WindowError, level_for
from deepblock_nb.io._lru import DEFAULT_TILE_CACHE_BYTES, TileLRU, shared_tile_cache
from deepblock_nb.io._raster import open_raster, probe_pillow, probe_svg
from deepblock_nb.io._tiff import TiffSource, probe_tiff
from deepblock_nb.io.display import (
    SAMPLE_SIDE,
    Display,
    SampleStats,
    colour_of,
    is_wide,
    measure_windows,
    resolve,
)

__all__ = [
    "DEFAULT_TILE_CACHE_BYTES",
    "MAX_PIXELS",
    "MULTI_FILE_SUFFIXES",
    "SLIDE",
    "SUPPORTED_FORMATS",
    "ImageInfo",
    "ImageSource",
    "WindowError",
    "clear_tile_cache",
    "detect_format",
    "level_for",
    "measure_samples",
    "open_image",
    "probe_image",
    "set_tile_cache_bytes",
]

#: Largest image (width x height) our own readers accept (TIFF, SVG). Formats
#: opened through Pillow are in addition limited by ``PIL.Image.MAX_IMAGE_PIXELS``.
MAX_PIXELS: float = 4e10

SUPPORTED_FORMATS = ("tiff", "png", "jpeg", "gif", "bmp", "ico", "jp2", "j2k", "webp", "svg")
#: what ``detect_format`` says of a whole-slide file that is not a TIFF (MIRAX, Hamamatsu
#: VMS/VMU, Sakura, DICOM, Zeiss CZI): only OpenSlide reads it (``deepblock-nb[slides]``)
SLIDE = "slide"
#: name endings of slides whose pixels lie in files beside the named one (MIRAX: a folder)
MULTI_FILE_SUFFIXES = _slide.MULTI_FILE_SUFFIXES

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xff\x4f\xff\x51", "j2k"),
)


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file", p)
    if not p.is_file():
        raise ImageReadError(f"{p}: not a file", p)
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: the file is empty", p)
    return p


def detect_format(path: str | Path) -> str:
    """The image format of a file from its first bytes (one of ``SUPPORTED_FORMATS``, or
    ``SLIDE`` for a whole-slide file that is not a TIFF, also known by its name ending).

    Raises:
        ImageReadError: the file is missing, empty, or not an image we know.
    """
    p = _resolve(path)
    with p.open("rb") as f:
        head = f.read(1024)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if (
        p.suffix.lower() in _slide.SLIDE_ONLY_SUFFIXES
        or head[128:132] == b"DICM"
        or head.startswith(b"ZISRAWFILE")
    ):
        return SLIDE  # an index (INI, SQLite), DICOM or CZI file: its content says little more
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<") and b"<svg" in head:
        return "svg"
    if head[4:8] in (b"ftyp",) or head.startswith(b"8BPS") or head.startswith(b"\x1aE\xdf\xa3"):
        raise UnsupportedFormatError(f"{p}: this image or video container is not supported", p)
    raise ImageReadError(
        f"{p}: not an image (unrecognised content; supported: {', '.join(SUPPORTED_FORMATS)})", p
    )


def _slide_vendor(path: Path, fmt: str) -> str | None:
    """OpenSlide's vendor name when the slide reader is to read this file, else None.

    Raises:
        FormatDependencyError: a file only OpenSlide reads, without the slides extra.
    """
    if fmt == SLIDE:
        return _slide.require(path)
    if fmt == "tiff":
        return _slide.vendor(path)  # None for a plain tiled TIFF, or without the extra
    return None


def probe_image(path: str | Path, max_pixels: float | None = None) -> ImageInfo:
    """Size, format and layout of an image from its headers; pixels are never decoded.

    Also checks cheaply that the file is complete (PNG ends with IEND, JPEG with
    EOI, TIFF segments lie inside the file, BMP pixel data fits, ...).

    Args:
        path: the image file.
        max_pixels: pixel limit; defaults to ``MAX_PIXELS``.

    Raises:
        ImageReadError: missing, empty, not an image, truncated, or a corrupt header.
        UnsupportedFormatError: an image format or compression that cannot be decoded
            (``FormatDependencyError``: a slide format whose optional extra is missing).
        DecompressionBombError: more pixels than the limit.
    """
    p = _resolve(path)
    fmt = detect_format(p)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    slide = _slide_vendor(p, fmt)
    if slide is not None:
        return _slide.probe_slide(p, slide, limit)
    if fmt == "tiff":
        return probe_tiff(p, limit)
    if fmt == "svg":
        return probe_svg(p, limit)
    info = probe_pillow(p, fmt, limit)
    _checks.check_complete(p, fmt)
    return info


def open_image(
    path: str | Path,
    cache_dir: str | Path | None = None,
    cache_bytes: int | None = None,
    max_pixels: float | None = None,
    display: Display | str | None = None,
) -> ImageSource:
    """Open an image for windowed reading as 8-bit RGB.

    Args:
        path: the image file (never modified).
        cache_dir: folder for derived data, deletable and rebuilt on demand: the
            decoded pixels of formats without random access (PNG, JPEG, ...; a
            pyramidal TIFF for large ones) and a 2048-px overview of large TIFFs
            without a pyramid.
        cache_bytes: ``None`` shares the module-wide decoded-tile LRU; a number
            gives this source a private LRU of that many bytes (0: no caching).
        max_pixels: pixel limit; defaults to ``MAX_PIXELS``.
        display: bands and intensity window applied in the conversion to 8 bits;
            ``"auto"`` measures the default (``measure_samples``, then
            ``display.resolve``); None: the data type's range (as 8-bit images are).

    Returns:
        An ``ImageSource`` (a context manager; ``close()`` releases the file).
    """
    p = _resolve(path)
    fmt = detect_format(p)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(display, str):
        if display != "auto":
            raise ArgumentError(f"display is a Display, 'auto' or None, not {display!r}")
        display = resolve(measure_samples(p, cache_dir, limit))
    if display is not None and display.is_default:
        display = None
    slide = _slide_vendor(p, fmt)
    if slide is not None:
        source: ImageSource = _slide.SlideSource(p, slide, limit, display)
        source.cache_dir = None if cache_dir is None else Path(cache_dir)
        return source
    lru = shared_tile_cache if cache_bytes is None else TileLRU(cache_bytes)
    if fmt == "tiff":
        tiff = TiffSource(p, limit, lru, display)
        if tiff.streams_better() and _vips.available("tiff"):
            size = (tiff.width, tiff.height)
            tiff.close()  # huge compressed strips: streamed once into a pyramid instead
            return _vips.PyramidSource(
                p, "tiff", size, None if cache_dir is None else Path(cache_dir), lru, display
            )
        tiff.cache_dir = None if cache_dir is None else Path(cache_dir)
        return tiff
    if fmt == "svg":
        info = probe_svg(p, limit)
    else:
        info = probe_pillow(p, fmt, limit)
        _checks.check_complete(p, fmt)  # a truncated file fails here, naming itself, not on a later read
    return open_raster(p, fmt, info, None if cache_dir is None else Path(cache_dir), lru, display)


def measure_samples(
    path: str | Path, cache_dir: str | Path | None = None, max_pixels: float | None = None
) -> SampleStats:
    """What the display defaults need of an image: sample type, bands, colour kind and,
    for samples wider than 8 bits, each band's robust window (``display.AUTO_PERCENTILES``)
    measured on the raw samples of an overview about ``display.SAMPLE_SIDE`` pixels a side
    (a pyramid level, a strided read or a spread of tiles; never the whole image).
    """
    info = probe_image(path, max_pixels)
    colour = colour_of(info.mode)
    windows = None
    if is_wide(info.dtype) and colour != "palette":
        with open_image(path, cache_dir, cache_bytes=0, max_pixels=max_pixels) as source:
            samples = source.raw_samples(SAMPLE_SIDE)
        if samples is not None:
            windows = measure_windows(samples)
            if len(windows) < info.bands:  # a reader holding fewer bands than the header says
                windows = windows + (windows[-1],) * (info.bands - len(windows))
    return SampleStats(info.dtype, info.bands, colour, windows)


def set_tile_cache_bytes(max_bytes: int) -> None:
    """Set the byte budget of the decoded-tile LRU shared by all sources."""
    shared_tile_cache.max_bytes = max_bytes


def clear_tile_cache() -> None:
    """Drop every decoded tile held by the shared LRU."""
    shared_tile_cache.clear()
