"""TIFF, BigTIFF, OME-TIFF and pyramidal TIFF through tifffile, one tile at a time.

A window decodes only the tiles (or strips) it touches, in parallel threads
(imagecodecs releases the GIL), and keeps them as 8-bit RGB in a byte-bounded
LRU. Uncompressed contiguous images are memory-mapped. Pyramid levels come from
tifffile's series levels (SubIFDs, OME or reduced pages).

A display setting (bands, intensity window) is applied as each tile is converted;
the LRU key names it, so tiles of two settings never mix. ``raw_samples`` gives
the unconverted samples of a small overview (the coarsest fitting level: strided
from a memory map, or a spread of at most ``RAW_SAMPLE_TILES`` tiles) to measure
an "auto" window on.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from deepblock_nb.errors import DeepBlockError, ImageReadError, UnsupportedFormatError
from deepblock_nb.io._base import ImageInfo, ImageSource, check_pixels
from deepblock_nb.io._convert import to_rgb8
from deepblock_nb.io._lru import TileLRU
from deepblock_nb.io.display import Display, strided

__all__ = ["TiffSource", "probe_tiff", "tiff_mpp"]

U8 = npt.NDArray[np.uint8]

# Most tiles decoded to measure the raw samples of a level (spread over it evenly).
RAW_SAMPLE_TILES = 64

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _decode_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="dbn-tiff")
        return _pool


def _open_tiff(path: Path) -> tifffile.TiffFile:
    """``TiffFile`` with its chain of pages walked once, up front.

    Walking the chain (``len(pages)``) stops at a page whose next-page offset points
    back into the chain; tifffile's lazy page iterator, which ``series`` uses, does
    not, and loops forever on such a damaged file.
    """
    tif = tifffile.TiffFile(path)
    try:
        len(tif.pages)
    except BaseException:
        tif.close()
        raise
    return tif


def _compression_name(page: Any) -> str:
    try:
        return f"{tifffile.COMPRESSION(page.compression).name} ({int(page.compression)})"
    except ValueError:
        return f"code {int(page.compression)}"


def _colour(page: Any, path: Path) -> tuple[str, str, Any]:
    """``(photometric, alpha kind, colormap)`` of a page, for ``to_rgb8``."""
    pm = int(page.photometric)
    extras = tuple(page.extrasamples or ())
    alpha = {1: "premultiplied", 2: "straight"}.get(extras[0], "none") if extras else "none"
    if pm == 0:
        return "grey_inverted", alpha, None
    if pm == 1:
        return "grey", alpha, None
    if pm == 2 or (pm == 6 and page.compression in (6, 7)):  # tifffile decodes JPEG YCbCr to RGB
        return "rgb", alpha, None
    if pm == 3:
        if page.colormap is None:
            raise ImageReadError(f"{path}: palette TIFF without a colour map", path)
        return "palette", "none", np.asarray(page.colormap).T
    if pm == 5 and page.samplesperpixel >= 4:
        return "cmyk", alpha, None
    raise UnsupportedFormatError(
        f"{path}: TIFF photometric interpretation {tifffile.PHOTOMETRIC(pm).name} is not supported", path
    )


def _mode(photometric: str, alpha: str) -> str:
    base = {"grey": "L", "grey_inverted": "L", "rgb": "RGB", "palette": "P", "cmyk": "CMYK"}[photometric]
    return base + ("A" if alpha != "none" else "")


def _check_decodable(page: Any, path: Path) -> None:
    kf = page.keyframe
    if kf.shaped[1] != 1:
        raise UnsupportedFormatError(f"{path}: volumetric (tiled-depth) TIFF is not supported", path)
    try:
        kf.decode(None, 0, jpegtables=None)
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise UnsupportedFormatError(
            f"{path}: cannot decode this TIFF: compression {_compression_name(kf)}, "
            f"{kf.bitspersample}-bit samples ({exc})",
            path,
        ) from exc


def _level_pages(level: Any) -> list[Any]:
    """Pages forming one level: 3 channel pages for an OME/ImageJ ``CYX`` stack, else one page."""
    pages = [p for p in level.pages if p is not None]
    if not pages:
        raise ImageReadError("the TIFF series has no pages")
    kf = pages[0].keyframe
    page_axes = kf.axes
    lead = level.axes[: len(level.axes) - len(page_axes)]
    if lead.endswith("C") and kf.samplesperpixel == 1 and int(kf.photometric) == 1:
        c = level.shape[len(lead) - 1]
        if c >= 3 and len(pages) >= 3:
            return pages[:3]
    return pages[:1]


def _segment_grid(kf: Any) -> tuple[int, int, int, int]:
    """``(tile height, tile width, rows, columns)`` of the tiles or strips of a page."""
    _, _, h, w, _ = (int(v) for v in kf.shaped)
    if kf.is_tiled:
        th, tw = int(kf.tilelength), int(kf.tilewidth)
    else:
        th, tw = max(1, min(int(kf.rowsperstrip or h), h)), w
    return th, tw, math.ceil(h / th), math.ceil(w / tw)


def _check_segment_count(page: Any, kf: Any, path: Path) -> None:
    """Refuse a page listing fewer tiles or strips than its size and tile size need."""
    th, tw, ny, nx = _segment_grid(kf)
    need = int(kf.shaped[0]) * ny * nx
    have = min(len(page.dataoffsets), len(page.databytecounts))
    if have < need:
        raise ImageReadError(
            f"{path}: damaged TIFF: {have} tiles or strips are listed but a "
            f"{int(kf.imagewidth)} x {int(kf.imagelength)} image in {th} x {tw} segments needs {need}",
            path,
        )


#: microns in one unit of the TIFF ResolutionUnit tag (2: inch, 3: centimetre)
_MICRONS_PER_UNIT = {2: 25400.0, 3: 10000.0}


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return float(value[0]) / float(value[1]) if value[1] else math.nan
    return float(value)


def tiff_mpp(page: Any) -> tuple[float, float] | None:
    """``(x, y)`` microns per pixel of a page: the Aperio ImageDescription's ``MPP``
    (SVS), else the resolution tags when their unit is the inch or the centimetre."""
    try:
        desc = str(page.description or "")
        if desc.startswith("Aperio"):
            for part in desc.split("|")[1:]:
                key, _, value = part.partition("=")
                if key.strip() == "MPP":
                    mpp = float(value.strip())
                    if math.isfinite(mpp) and mpp > 0:
                        return (mpp, mpp)
        tags = page.tags
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2  # TIFF's default: inch
        if unit not in _MICRONS_PER_UNIT or "XResolution" not in tags or "YResolution" not in tags:
            return None
        rx, ry = _rational(tags["XResolution"].value), _rational(tags["YResolution"].value)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):  # a TiffFrame, odd tag types
        return None
    if not (math.isfinite(rx) and math.isfinite(ry) and rx > 0 and ry > 0):
        return None
    if rx == ry == 72.0 and unit == 2:  # the writers' placeholder (72 dpi), not a measurement
        return None
    return (_MICRONS_PER_UNIT[unit] / rx, _MICRONS_PER_UNIT[unit] / ry)


def probe_tiff(path: Path, max_pixels: float | None, check_complete: bool = True) -> ImageInfo:
    """Read TIFF headers (no pixel data); optionally check that every segment lies inside the file."""
    size = path.stat().st_size
    try:
        with _open_tiff(path) as tif:
            series = tif.series[0]
            levels = [_level_pages(level) for level in series.levels]
            kf = levels[0][0].keyframe
            width, height = int(kf.imagewidth), int(kf.imagelength)
            check_pixels(path, width, height, max_pixels)
            _check_decodable(kf, path)
            photometric, alpha, _ = _colour(kf, path)
            if check_complete:
                for li, pages in enumerate(levels):
                    for page in pages:
                        _check_segment_count(page, page.keyframe, path)
                        offsets = np.asarray(page.dataoffsets, np.int64)
                        counts = np.asarray(page.databytecounts, np.int64)
                        end = offsets + counts
                        bad = np.flatnonzero(end > size)
                        if len(bad):
                            raise ImageReadError(
                                f"{path}: truncated TIFF: segment {int(bad[0])} of level {li} ends at byte "
                                f"{int(end[bad[0]])} but the file has {size} bytes",
                                path,
                            )
            sizes = tuple((int(p[0].keyframe.imagewidth), int(p[0].keyframe.imagelength)) for p in levels)
            samples = int(kf.samplesperpixel) * (len(levels[0]) if len(levels[0]) > 1 else 1)
            return ImageInfo(
                width=width,
                height=height,
                format="tiff",
                mode="RGB" if len(levels[0]) > 1 else _mode(photometric, alpha),
                dtype=str(kf.dtype),
                bands=samples,
                levels=sizes,
                mpp=tiff_mpp(levels[0][0]),
            )
    except (ImageReadError, OSError):
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise ImageReadError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})", path) from exc


#: A tile or strip decoding to more than this makes a TIFF stream through libvips
#: (``TiffSource.streams_better``).
STREAM_SEGMENT_BYTES = 64 * 1024 * 1024


class _Plane:
    """The pixels of one level: its pages, segment grid and colour rules."""

    def __init__(self, pages: list[Any], path: Path, display: Display | None = None) -> None:
        self.pages = pages
        self.path = path
        self.display = display
        kf = pages[0].keyframe
        for page in pages:
            _check_decodable(page, path)
        self.kf = kf
        self.photometric, self.alpha, self.colormap = _colour(kf, path)
        if len(pages) > 1:
            self.photometric, self.alpha = "rgb", "none"
        s, _, h, w, c = (int(v) for v in kf.shaped)
        self.separate, self.height, self.width, self.contig = s, h, w, c
        self.th, self.tw, self.ny, self.nx = _segment_grid(kf)
        for page in pages:
            _check_segment_count(page, kf, path)
        self.offsets = [np.asarray(p.dataoffsets, np.int64) for p in pages]
        self.counts = [np.asarray(p.databytecounts, np.int64) for p in pages]
        self.jpeg: dict[str, Any] = {}
        if kf.compression in (6, 7, 34892, 33007):
            self.jpeg = {"jpegtables": pages[0].jpegtables, "jpegheader": kf.jpegheader}
        self.memmaps: list[np.memmap | None] = []
        for page in pages:
            mm = None
            if isinstance(page, tifffile.TiffPage) and page.is_memmappable:
                dtype = np.dtype(page.parent.byteorder + kf.dtype.char)
                mm = np.memmap(path, dtype=dtype, mode="r", offset=int(page.dataoffsets[0]), shape=kf.shaped)
            self.memmaps.append(mm)
        self.is_mapped = all(m is not None for m in self.memmaps)

    def convert(self, samples: np.ndarray) -> U8:
        try:
            return to_rgb8(
                samples,
                self.photometric,  # type: ignore[arg-type]
                alpha=self.alpha,  # type: ignore[arg-type]
                colormap=self.colormap,
                display=self.display,
            )
        except ImageReadError as exc:  # _convert does not know the file
            raise type(exc)(f"{self.path}: {exc}", self.path) from exc


class TiffSource(ImageSource):
    """A TIFF read tile by tile (see the module docstring)."""

    def __init__(
        self, path: Path, max_pixels: float | None, tile_cache: TileLRU, display: Display | None = None
    ) -> None:
        try:
            self._tif = _open_tiff(path)
            series = self._tif.series[0]
            level_pages = [_level_pages(level) for level in series.levels]
        except Exception as exc:
            if hasattr(self, "_tif"):
                self._tif.close()
            raise ImageReadError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})", path) from exc
        try:
            kf = level_pages[0][0].keyframe
            check_pixels(path, int(kf.imagewidth), int(kf.imagelength), max_pixels)
            planes: list[_Plane] = []
            for i, pages in enumerate(level_pages):
                try:
                    planes.append(_Plane(pages, path, display))
                except Exception:
                    if i == 0:
                        raise
                    break  # keep the usable levels above an odd one
        except DeepBlockError:
            self._tif.close()
            raise
        except Exception as exc:  # tifffile and numpy raise anything on a damaged header
            self._tif.close()
            raise ImageReadError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})", path) from exc
        except BaseException:
            self._tif.close()
            raise
        super().__init__(path, [(p.width, p.height) for p in planes], "tiff")
        self._planes = planes
        self.mpp = tiff_mpp(level_pages[0][0])
        self._cache = tile_cache
        self.display = display
        self._display_key = "" if display is None else display.key
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._size = os.fstat(self._fd).st_size
        self._fd_lock = threading.Lock()

    def segment_bytes(self) -> int:
        """Decoded bytes of one tile or strip of the full-resolution level (0 when the
        level is memory-mapped: a window then reads only its own rows)."""
        plane = self._planes[0]
        if plane.is_mapped:
            return 0
        return plane.th * plane.tw * plane.contig * int(plane.kf.dtype.itemsize) * len(plane.pages)

    def streams_better(self) -> bool:
        """Whether libvips should stream this TIFF into a pyramid instead: one
        compressed strip (or tile) of more than :data:`STREAM_SEGMENT_BYTES`, which
        every window touching it would decode whole (a single-strip TIFF: all of it),
        no pyramid of its own, and 8- or 16-bit samples that are not a palette."""
        plane = self._planes[0]
        return (
            self.segment_bytes() > STREAM_SEGMENT_BYTES
            and len(self.levels) == 1
            and len(plane.pages) == 1
            and str(plane.kf.dtype) in ("uint8", "uint16")
            and plane.photometric != "palette"
        )

    def _pread(self, offset: int, n: int) -> bytes:
        if hasattr(os, "pread"):
            return os.pread(self._fd, n, offset)
        with self._fd_lock:  # platforms without pread
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, n)

    def _band_height(self, level: int) -> int:
        th = self._planes[level].th
        return max(th, (super()._band_height(level) // th) * th)

    def _read_band(self, level: int, y: int, h: int) -> U8:
        # an overview pass touches every tile once: bypass the LRU so it keeps its working set
        return self._read(level, 0, y, self.levels[level][0], h, use_cache=False)

    def _read(self, level: int, x: int, y: int, w: int, h: int, use_cache: bool = True) -> U8:
        plane = self._planes[level]
        if plane.is_mapped:
            return self._read_mapped(plane, x, y, w, h)
        tys = range(y // plane.th, (y + h - 1) // plane.th + 1)
        txs = range(x // plane.tw, (x + w - 1) // plane.tw + 1)
        keys = [(ty, tx) for ty in tys for tx in txs]
        tiles: dict[tuple[int, int], U8] = {}
        missing = []
        for key in keys:
            hit = self._cache.get((self.uid, self._display_key, level, *key)) if use_cache else None
            if hit is None:
                missing.append(key)
            else:
                tiles[key] = hit
        decode: Callable[[tuple[int, int]], U8] = lambda k: self._decode_tile(level, *k)  # noqa: E731
        if len(missing) > 1:
            decoded = list(_decode_pool().map(decode, missing))
        else:
            decoded = [decode(k) for k in missing]
        for key, tile in zip(missing, decoded):
            if use_cache:
                self._cache.put((self.uid, self._display_key, level, *key), tile)
            tiles[key] = tile
        if len(keys) == 1:
            ty, tx = keys[0]
            y0, x0 = y - ty * plane.th, x - tx * plane.tw
            return tiles[keys[0]][y0 : y0 + h, x0 : x0 + w].copy()
        out = np.empty((h, w, 3), np.uint8)
        for (ty, tx), tile in tiles.items():
            ty0, tx0 = ty * plane.th, tx * plane.tw
            ya, yb = max(y, ty0), min(y + h, ty0 + tile.shape[0])
            xa, xb = max(x, tx0), min(x + w, tx0 + tile.shape[1])
            out[ya - y : yb - y, xa - x : xb - x] = tile[ya - ty0 : yb - ty0, xa - tx0 : xb - tx0]
        return out

    def _mapped_samples(self, plane: _Plane, ys: slice, xs: slice) -> np.ndarray:
        parts = []
        for mm in plane.memmaps:
            assert mm is not None  # only mapped planes come here
            block = np.asarray(mm[:, 0, ys, xs, :])  # [S,h,w,C]
            parts.append(np.moveaxis(block, 0, 2).reshape(block.shape[1], block.shape[2], -1))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    def raw_samples(self, max_side: int) -> np.ndarray:
        """``(N, C)`` unconverted samples of a small overview, to measure a window on."""
        level = len(self.levels) - 1
        while level > 0 and max(self.levels[level]) < max_side:
            level -= 1  # the coarsest level still about max_side: enough samples, fewest read
        plane = self._planes[level]
        lw, lh = self.levels[level]
        if plane.is_mapped:
            step = max(1, math.ceil(max(lw, lh) / max_side))
            return strided(self._mapped_samples(plane, slice(0, lh, step), slice(0, lw, step)), max_side)
        tys = np.unique(np.linspace(0, plane.ny - 1, min(plane.ny, 8)).round().astype(int))
        txs = np.unique(np.linspace(0, plane.nx - 1, min(plane.nx, RAW_SAMPLE_TILES // len(tys))).round())
        side = max(1, max_side // max(len(tys), len(txs)))  # about max_side**2 samples in all
        parts = [
            strided(self._decode_samples(level, int(ty), int(tx)), side)
            for ty in tys
            for tx in txs.astype(int)
        ]
        return np.concatenate(parts, axis=0)

    def _read_mapped(self, plane: _Plane, x: int, y: int, w: int, h: int) -> U8:
        samples = self._mapped_samples(plane, slice(y, y + h), slice(x, x + w))
        try:
            return plane.convert(samples)
        except Exception as exc:
            raise ImageReadError(f"{self.path}: cannot read window x={x} y={y} ({exc})", self.path) from exc

    def _decode_tile(self, level: int, ty: int, tx: int) -> U8:
        """Decode one tile (or strip) of every page and sample plane into 8-bit RGB."""
        return self._planes[level].convert(self._decode_samples(level, ty, tx))

    def _decode_samples(self, level: int, ty: int, tx: int) -> np.ndarray:
        """The raw ``(th, tw, C)`` samples of one tile (or strip) of every page and sample plane."""
        plane = self._planes[level]
        kind = "tile" if plane.kf.is_tiled else "strip"
        where = f"{kind} (row {ty}, column {tx}) of level {level}"
        th = min(plane.th, plane.height - ty * plane.th)
        tw = min(plane.tw, plane.width - tx * plane.tw)
        parts: list[np.ndarray] = []
        for p, page in enumerate(plane.pages):
            for s in range(plane.separate):
                i = (s * plane.ny + ty) * plane.nx + tx
                off, n = int(plane.offsets[p][i]), int(plane.counts[p][i])
                if n == 0 or off == 0:  # a sparse (never written) segment reads as zeros
                    parts.append(np.zeros((th, tw, plane.contig), plane.kf.dtype))
                    continue
                if off < 0 or n < 0 or off + n > self._size:  # checked before reading n bytes
                    raise ImageReadError(
                        f"{self.path}: {where} is damaged: it claims bytes {off}..{off + n} but the "
                        f"file has {self._size} (truncated file?)",
                        self.path,
                    )
                data = self._pread(off, n)
                if len(data) < n:
                    raise ImageReadError(
                        f"{self.path}: {where} is damaged: it ends at byte {off + n} but the file "
                        f"has fewer bytes (truncated file?)",
                        self.path,
                    )
                try:
                    arr, _, shape = page.keyframe.decode(data, i, **plane.jpeg)
                    arr = np.asarray(arr).reshape(shape)[0]  # [th, tw, C]
                except Exception as exc:
                    raise ImageReadError(
                        f"{self.path}: {where} is damaged and cannot be decoded "
                        f"({_compression_name(plane.kf)}: {type(exc).__name__}: {exc})",
                        self.path,
                    ) from exc
                if arr.shape[0] < th or arr.shape[1] < tw:
                    raise ImageReadError(
                        f"{self.path}: {where} decodes to a wrong shape {arr.shape}", self.path
                    )
                parts.append(arr[:th, :tw])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            super().close()
            self._cache.discard(self.uid)
            for plane in self._planes:
                plane.memmaps = []
            self._tif.close()
            os.close(self._fd)
