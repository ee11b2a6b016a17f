"""Display settings: which bands of an image are shown, and the intensity window
that maps its samples to 8 bits. One setting feeds the viewer, training and
prediction alike (every reader applies it inside its conversion, ``_convert``).

Two records:

- ``DisplaySetting``: what a person chose: ``bands`` (1 or 3 band indices, or None
  for the default) and ``window`` (``"auto"``, or ``(lo, hi)`` pairs in sample
  units: one for every shown band, or one per shown band). Stored per image.
- ``Display``: the effective setting a reader applies: concrete bands (or None:
  the file's own colour rules) and concrete windows (or None: the data type's
  range, as 8-bit images have always been read).

Rules of ``resolve`` (the one home of the defaults):

- 8-bit samples (``uint8``, ``int8``, booleans) and palette images: no window, and
  unless bands are chosen, the file's colour rules unchanged (bit-identical to
  reading without any setting).
- Wider samples (``uint16``, ``int16``, ``uint32``, floats, ...) with ``"auto"``:
  the window of each band is its ``AUTO_PERCENTILES`` (0.5 % and 99.5 %) measured
  on the raw samples of a small overview (``SAMPLE_SIDE`` pixels a side: a pyramid
  level, a strided read, or a spread of tiles; never the whole image). A file that
  names its colours (RGB, CMYK) keeps them with one common window over its colour
  bands (so colours keep their balance); a greyscale file of 3 or more bands shows
  bands 0, 1, 2 as RGB; with fewer, band 0 as grey.
- Chosen bands: 3 are shown as red, green, blue; 1 as grey. Their ``"auto"``
  windows are the measured windows of those bands.
- A window maps ``lo -> 0`` and ``hi -> 255`` linearly, clipped; NaN reads as 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import DisplayError

__all__ = [
    "AUTO_PERCENTILES",
    "SAMPLE_SIDE",
    "Display",
    "DisplaySetting",
    "SampleStats",
    "colour_of",
    "is_wide",
    "measure_windows",
    "parse_setting",
    "resolve",
]

Window = tuple[float, float]
Colour = Literal["grey", "rgb", "palette", "cmyk"]

#: percentiles of the raw samples that become an "auto" window's lo and hi
AUTO_PERCENTILES = (0.5, 99.5)
#: longest side (pixels) of the overview whose raw samples an "auto" window is measured on
SAMPLE_SIDE = 1024


def _pair(value: Any, what: str) -> Window:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DisplayError(f"{what} must be a pair (lo, hi) of numbers, not {value!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DisplayError(f"{what} ({lo}, {hi}) must be finite numbers")
    if not lo < hi:
        raise DisplayError(f"{what} ({lo}, {hi}) needs lo < hi")
    return (lo, hi)


def _bands(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError as exc:
        raise DisplayError(f"bands must be a tuple of 1 or 3 band indices, not {value!r}") from exc
    if len(items) not in (1, 3):
        raise DisplayError(f"bands must be 1 band (grey) or 3 bands (red, green, blue), got {len(items)}")
    for b in items:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0:
            raise DisplayError(f"band indices are integers >= 0, not {b!r}")
    return tuple(int(b) for b in items)


def _windows(value: Any) -> tuple[Window, ...] | Literal["auto"]:
    if value is None or (isinstance(value, str) and value == "auto"):
        return "auto"
    if isinstance(value, str):
        raise DisplayError(f"window is 'auto', (lo, hi) or a list of (lo, hi) per band, not {value!r}")
    try:
        items = list(value)
    except TypeError as exc:
        raise DisplayError(
            f"window is 'auto', (lo, hi) or a list of (lo, hi) per band, not {value!r}"
        ) from exc
    if len(items) == 2 and all(isinstance(v, (int, float, np.number)) for v in items):
        return (_pair(items, "window"),)
    if not items:
        raise DisplayError("window is an empty list; give (lo, hi) or 'auto'")
    return tuple(_pair(v, f"window of shown band {i}") for i, v in enumerate(items))


@dataclass(frozen=True)
class DisplaySetting:
    """A person's choice for one image (see module rules); the default is all "auto"."""

    bands: tuple[int, ...] | None = None
    window: tuple[Window, ...] | Literal["auto"] = "auto"

    @property
    def is_auto(self) -> bool:
        return self.bands is None and self.window == "auto"

    def to_json(self) -> str | None:
        """JSON text for the store; None for the default ("auto")."""
        if self.is_auto:
            return None
        window = self.window if self.window == "auto" else [list(w) for w in self.window]
        return json.dumps({"bands": None if self.bands is None else list(self.bands), "window": window})

    @classmethod
    def from_json(cls, text: str | None) -> DisplaySetting:
        if text is None:
            return cls()
        d = json.loads(text)
        return cls(_bands(d.get("bands")), _windows(d.get("window")))


def parse_setting(bands: Any = None, window: Any = None) -> DisplaySetting:
    """A ``DisplaySetting`` from user input, checked for form (not yet against an image).

    ``bands``: None, one index or a sequence of 1 or 3; ``window``: None or "auto",
    ``(lo, hi)``, or a sequence of ``(lo, hi)`` pairs. Raises ``DisplayError``.
    """
    return DisplaySetting(_bands(bands), _windows(window))


@dataclass(frozen=True)
class Display:
    """The effective setting a reader applies (``_convert.to_rgb8``).

    Attributes:
        bands: indices (into the samples of one pixel) shown as RGB (3) or grey (1);
            None: the file's own colour rules (grey, RGB, CMYK, alpha).
        window: ``(lo, hi)`` in sample units, one for all shown bands or one per
            shown band; None: the data type's range.
    """

    bands: tuple[int, ...] | None = None
    window: tuple[Window, ...] | None = None

    @property
    def is_default(self) -> bool:
        return self.bands is None and self.window is None

    @property
    def key(self) -> str:
        """A short text naming this setting in cache keys and file names; "" for the default."""
        if self.is_default:
            return ""
        h = hashlib.blake2b(repr((self.bands, self.window)).encode(), digest_size=6).hexdigest()
        return f"-d{h}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "bands": None if self.bands is None else list(self.bands),
            "window": None if self.window is None else [list(w) for w in self.window],
        }


@dataclass(frozen=True)
class SampleStats:
    """What the defaults need to know of an image: its sample type, bands, colour
    kind and, for wide samples, the measured window of each band (image order)."""

    dtype: str
    bands: int
    colour: Colour
    windows: tuple[Window, ...] | None = None

    def to_json(self) -> str:
        w = None if self.windows is None else [list(p) for p in self.windows]
        return json.dumps({"dtype": self.dtype, "bands": self.bands, "colour": self.colour, "windows": w})

    @classmethod
    def from_json(cls, text: str) -> SampleStats:
        d = json.loads(text)
        w = d.get("windows")
        return cls(
            str(d["dtype"]),
            int(d["bands"]),
            d["colour"],
            None if w is None else tuple((float(a), float(b)) for a, b in w),
        )


def is_wide(dtype: str | np.dtype[Any]) -> bool:
    """Whether samples of ``dtype`` are wider than 8 bits (and so get an "auto" window)."""
    dt = np.dtype(dtype)
    return dt != np.bool_ and dt.itemsize > 1


def colour_of(mode: str) -> Colour:
    """The colour kind of an ``ImageInfo.mode``: ``"RGB"``/``"RGBA"`` -> rgb, ``"P"``, ``"CMYK"``, else grey."""
    if mode.startswith("RGB"):
        return "rgb"
    if mode.startswith("P"):
        return "palette"
    if mode.startswith("CMYK"):
        return "cmyk"
    return "grey"


def measure_windows(samples: npt.NDArray[Any]) -> tuple[Window, ...]:
    """Per band ``AUTO_PERCENTILES`` of ``(N, C)`` samples (non-finite ones ignored).

    A band without finite samples gets ``(0, 1)``; a flat band ``(v, v + 1)``.
    """
    flat = np.asarray(samples).reshape(-1, samples.shape[-1] if samples.ndim > 1 else 1)
    out = []
    for c in range(flat.shape[1]):
        v = flat[:, c].astype(np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            out.append((0.0, 1.0))
            continue
        lo, hi = (float(p) for p in np.percentile(v, AUTO_PERCENTILES))
        out.append((lo, hi) if hi > lo else (lo, lo + 1.0))
    return tuple(out)


def _colour_count(stats: SampleStats) -> int:
    return {"grey": 1, "rgb": min(3, stats.bands), "cmyk": 4, "palette": 1}[stats.colour]


def resolve(stats: SampleStats, setting: DisplaySetting = DisplaySetting()) -> Display:
    """The effective ``Display`` of an image (module rules).

    Raises:
        DisplayError: a band the image lacks, a palette image given a setting, or
            a number of windows that is neither 1 nor the number of shown bands.
    """
    wide = is_wide(stats.dtype)
    bands = setting.bands
    if stats.colour == "palette":
        if not setting.is_auto:
            raise DisplayError("a palette image takes its colours from its colour map: no bands or window")
        return Display()
    if bands is not None:
        missing = [b for b in bands if b >= stats.bands]
        if missing:
            raise DisplayError(
                f"band {missing[0]} does not exist: the image has {stats.bands} band"
                f"{'s' if stats.bands != 1 else ''} (0..{stats.bands - 1})"
            )
    elif wide and stats.colour == "grey" and stats.bands >= 3:
        bands = (0, 1, 2)
    shown = len(bands) if bands is not None else _colour_count(stats)
    if setting.window != "auto":
        if len(setting.window) not in (1, shown):
            raise DisplayError(f"{len(setting.window)} windows for {shown} shown bands: give 1 or {shown}")
        return Display(bands, tuple(setting.window))
    if not wide:
        return Display(bands, None)
    if stats.windows is None or len(stats.windows) < stats.bands:
        raise DisplayError("the auto window has not been measured for this image")
    per = stats.windows
    if bands is not None:
        return Display(bands, tuple(per[b] for b in bands))
    colour = per[:shown]
    if stats.colour == "rgb":  # one common window keeps the file's colour balance
        return Display(None, ((min(w[0] for w in colour), max(w[1] for w in colour)),))
    return Display(None, tuple(colour))


def strided(samples: npt.NDArray[Any], max_side: int) -> npt.NDArray[Any]:
    """``(H, W[, C])`` samples strided to at most ``max_side`` a side, as ``(N, C)``."""
    arr = samples if samples.ndim == 3 else samples[..., None]
    step = max(1, math.ceil(max(arr.shape[:2]) / max(1, max_side)))
    small = arr[::step, ::step]
    return np.ascontiguousarray(small).reshape(-1, arr.shape[2])
