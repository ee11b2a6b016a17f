"""Whole-slide images through OpenSlide (the optional extra ``deepblock-nb[slides]``).

OpenSlide reads the vendor formats of pathology scanners: Aperio SVS, Hamamatsu
NDPI/VMS/VMU, Leica SCN, MIRAX MRXS (an index file with a folder of data files
beside it), Philips TIFF, Sakura SVSLIDE, Trestle, Ventana BIF, DICOM and Zeiss
CZI. Plain tiled TIFFs (OpenSlide's "generic-tiff") are left to our own tifffile
reader (``_tiff``), which reads them as well and knows more sample types.

- ``levels`` are the slide's pyramid (``level_dimensions``); ``overview`` and
  reduced reads choose a level through ``level_for`` like every other reader.
- A window asks OpenSlide for that region only: ``OpenSlide.read_region`` takes the
  top-left corner in level-0 pixels (our level pixels times the level's
  downsample, rounded) and returns straight (not premultiplied) RGBA, transparent
  where nothing was scanned; alpha is composited on white, as ``_convert`` does
  for every format. OpenSlide keeps its own small cache of decoded tiles.
- An ``openslide_t`` may be read from several threads at once without locking
  (OpenSlide's documented thread safety); only ``close`` must not overlap a read,
  so reads are counted and ``close`` waits for them.
- Microns per pixel come from ``openslide.mpp-x`` / ``openslide.mpp-y``.

``openslide`` is imported only when a slide is met; without it, ``vendor`` says
None (TIFF-based slides are then read by tifffile) and ``require`` raises
``FormatDependencyError`` for files only OpenSlide can read.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import DeepBlockError, FormatDependencyError, ImageReadError, WindowError
from deepblock_nb.io._base import ImageInfo, ImageSource, check_pixels
from deepblock_nb.io._convert import to_rgb8
from deepblock_nb.io.display import Display

__all__ = ["MULTI_FILE_SUFFIXES", "SLIDE_ONLY_SUFFIXES", "SlideSource", "probe_slide", "require", "vendor"]

U8 = npt.NDArray[np.uint8]

#: file name endings of slide formats that are not TIFF files (OpenSlide alone reads them)
SLIDE_ONLY_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")
#: slides whose pixels lie in other files beside the named one (a folder, or files it lists)
MULTI_FILE_SUFFIXES = (".mrxs", ".vms", ".vmu")
#: OpenSlide's name for a plain tiled TIFF, which ``_tiff`` reads instead
GENERIC_TIFF = "generic-tiff"
INSTALL_HINT = "pip install deepblock-nb[slides]"


def _openslide() -> ModuleType | None:
    """The ``openslide`` module, or None when the extra is not installed (or its
    library cannot load)."""
    try:
        import openslide
    except (ImportError, OSError):  # OSError: the shared library itself failed to load
        return None
    return openslide


def vendor(path: Path) -> str | None:
    """OpenSlide's format name for ``path`` (``"aperio"``, ``"mirax"``, ...), or None
    when it is not a slide OpenSlide recognises, when it is a plain tiled TIFF
    (``"generic-tiff"``), or when the extra is not installed. Reads headers only."""
    osl = _openslide()
    if osl is None:
        return None
    try:
        name = osl.OpenSlide.detect_format(str(path))
    except Exception:  # a damaged file: left to the other readers' messages
        return None
    if name is None or name == GENERIC_TIFF:
        return None
    return str(name)


def require(path: Path) -> str:
    """The vendor of a file that only OpenSlide can read (``SLIDE_ONLY_SUFFIXES``).

    Raises:
        FormatDependencyError: the slides extra is not installed.
        ImageReadError: OpenSlide is installed but does not recognise the file.
    """
    if _openslide() is None:
        raise FormatDependencyError(
            f"{path}: a whole-slide image ({path.suffix}) that only OpenSlide can read, and it is not "
            f"installed; install the slides extra: {INSTALL_HINT}",
            path,
        )
    name = vendor(path)
    if name is None:
        raise ImageReadError(
            f"{path}: not a whole-slide image OpenSlide can read (damaged or incomplete?)", path
        )
    return name


def _mpp(properties: Any) -> tuple[float, float] | None:
    """``(x, y)`` microns per pixel from OpenSlide's properties, or None when unknown."""
    try:
        mx = float(properties["openslide.mpp-x"])
        my = float(properties["openslide.mpp-y"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(mx) and math.isfinite(my) and mx > 0 and my > 0):
        return None
    return (mx, my)


def _open(path: Path) -> Any:
    osl = _openslide()
    if osl is None:  # callers check ``vendor`` first; a race with an uninstall lands here
        raise FormatDependencyError(f"{path}: OpenSlide is not installed; {INSTALL_HINT}", path)
    try:
        return osl.OpenSlide(str(path))
    except Exception as exc:  # OpenSlideError, OpenSlideUnsupportedFormatError, OSError
        raise ImageReadError(
            f"{path}: not a readable whole-slide image ({type(exc).__name__}: {exc})", path
        ) from exc


def _info(path: Path, slide: Any, name: str, max_pixels: float | None) -> ImageInfo:
    levels = tuple((int(w), int(h)) for w, h in slide.level_dimensions)
    if not levels or min(levels[0]) <= 0:
        raise ImageReadError(f"{path}: the slide has no image (empty level 0)", path)
    check_pixels(path, *levels[0], max_pixels)
    return ImageInfo(
        width=levels[0][0],
        height=levels[0][1],
        format=name,
        mode="RGBA",
        dtype="uint8",
        bands=4,
        levels=levels,
        mpp=_mpp(slide.properties),
    )


def probe_slide(path: Path, name: str, max_pixels: float | None) -> ImageInfo:
    """Size, pyramid and microns per pixel of a slide (headers only) whose OpenSlide
    format is ``name``."""
    slide = _open(path)
    try:
        return _info(path, slide, name, max_pixels)
    finally:
        slide.close()


class SlideSource(ImageSource):
    """A whole-slide image read region by region through OpenSlide (module docstring)."""

    def __init__(
        self, path: Path, name: str, max_pixels: float | None, display: Display | None = None
    ) -> None:
        self._slide = _open(path)
        try:
            info = _info(path, self._slide, name, max_pixels)
            self._downsamples = [float(d) for d in self._slide.level_downsamples]
        except BaseException:
            self._slide.close()
            raise
        super().__init__(path, list(info.levels), name)
        self.mpp = info.mpp
        self.display = display
        self._readers = 0
        self._idle = threading.Condition(self._lock)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> U8:
        with self._idle:
            if self._closed:
                raise WindowError(f"{self.path}: the image source is closed")
            self._readers += 1
        try:
            ds = self._downsamples[level]
            x0, y0 = round(x * ds), round(y * ds)  # OpenSlide takes the corner in level-0 pixels
            try:
                region = self._slide.read_region((x0, y0), level, (w, h))
                rgba = np.asarray(region.convert("RGBA") if region.mode != "RGBA" else region)
            except Exception as exc:  # OpenSlideError latches: every later read fails too
                raise ImageReadError(
                    f"{self.path}: cannot read window x={x} y={y} w={w} h={h} of level {level} "
                    f"({type(exc).__name__}: {exc})",
                    self.path,
                ) from exc
        finally:
            with self._idle:
                self._readers -= 1
                self._idle.notify_all()
        try:
            return to_rgb8(rgba, "rgb", alpha="straight", display=self.display)
        except DeepBlockError as exc:  # a display band the slide lacks: name the file
            raise type(exc)(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        with self._idle:
            if self._closed:
                return
            super().close()
            while self._readers:  # openslide_close must not overlap a read
                self._idle.wait()
            self._slide.close()
