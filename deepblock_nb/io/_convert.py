"""Conversion of decoded samples to 8-bit RGB.

Rules (the same for every format):

- Sample values are scaled by their data type's range: ``uint8`` as is,
  ``uint16`` keeps its high byte (``v >> 8``), wider unsigned integers keep their
  top 8 bits, signed integers are shifted to unsigned first, floats are taken as
  ``0..1`` (clipped) and booleans as 0/255.
- Greyscale (one sample) is repeated on three channels; "min is white" greyscale
  is inverted first.
- Palette images are expanded through their colour map (16-bit maps keep the high byte).
- CMYK: ``R = (255 - C) * (255 - K) / 255`` and likewise for G (M) and B (Y).
- An alpha sample is composited on white (straight or premultiplied alpha).
- Extra samples beyond colour and alpha are ignored.

A display setting (``display.Display``, per image; the rules of its defaults are
in ``deepblock_nb.io.display``) changes two things, and nothing for 8-bit images
by default:

- ``window``: the colour samples are mapped linearly ``lo -> 0, hi -> 255`` and
  clipped (rounded half up; NaN reads as 0) instead of by the data type's range;
  one ``(lo, hi)`` for every band or one per band. Alpha keeps its type's range.
- ``bands``: those samples (by index) are shown as RGB (3) or grey (1), windowed
  or by type range; photometric, alpha and palette rules then do not apply.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import ArgumentError, DisplayError, UnsupportedFormatError
from deepblock_nb.io.display import Display

__all__ = ["Photometric", "scale_to_uint8", "to_rgb8", "window_to_uint8"]

Photometric = Literal["grey", "grey_inverted", "rgb", "palette", "cmyk"]
AlphaKind = Literal["none", "straight", "premultiplied"]
U8 = npt.NDArray[np.uint8]


def scale_to_uint8(arr: npt.NDArray[np.generic]) -> U8:
    """Scale any numeric array to ``uint8`` by its data type's range (see module rules)."""
    dt = arr.dtype
    if dt == np.uint8:
        return arr  # type: ignore[return-value]
    if dt == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)  # type: ignore[no-any-return]
    if np.issubdtype(dt, np.unsignedinteger):
        return np.right_shift(arr, 8 * dt.itemsize - 8).astype(np.uint8)  # type: ignore[call-overload,no-any-return]
    if np.issubdtype(dt, np.signedinteger):
        bits = 8 * dt.itemsize
        shifted = arr.astype(np.int64) + (1 << (bits - 1))
        return (shifted >> (bits - 8)).astype(np.uint8)
    if np.issubdtype(dt, np.floating):
        out = np.clip(np.nan_to_num(arr.astype(np.float32, copy=False)), 0.0, 1.0) * 255.0
        return np.rint(out).astype(np.uint8)
    # a file can hold such samples (complex TIFF data): the reader adds the file name
    raise UnsupportedFormatError(f"cannot convert samples of type {dt} to 8-bit")


def window_to_uint8(arr: npt.NDArray[np.generic], window: tuple[tuple[float, float], ...]) -> U8:
    """``(..., C)`` samples mapped ``lo -> 0, hi -> 255`` and clipped: one window for
    every band, or the first ``C`` windows one per band."""
    nc = arr.shape[-1]
    pairs = window if len(window) == 1 else window[:nc]
    if len(pairs) not in (1, nc):
        raise DisplayError(f"{len(window)} windows for {nc} bands")
    lo = np.array([p[0] for p in pairs], np.float64)  # [1] or [C]
    hi = np.array([p[1] for p in pairs], np.float64)
    out = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo))  # [..., C]
    out = np.floor(np.clip(np.nan_to_num(out, nan=0.0), 0.0, 255.0) + 0.5)
    return out.astype(np.uint8)


def _composite_on_white(rgb: U8, alpha: U8, premultiplied: bool) -> U8:
    a = alpha[..., None].astype(np.uint16)  # [H,W,1]
    c = rgb.astype(np.uint16)
    if premultiplied:
        out = np.minimum(c + (255 - a), 255)
    else:
        out = (c * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def to_rgb8(
    arr: npt.NDArray[np.generic],
    photometric: Photometric,
    *,
    alpha: AlphaKind = "none",
    colormap: npt.NDArray[np.generic] | None = None,
    display: Display | None = None,
) -> U8:
    """Convert ``(H, W)`` or ``(H, W, C)`` samples to ``(H, W, 3)`` uint8 RGB.

    Args:
        arr: decoded samples; the last axis holds the samples of one pixel.
        photometric: how the colour samples are to be read.
        alpha: whether the sample after the colour samples is alpha, and which kind.
        colormap: ``(N, 3)`` palette for ``"palette"`` images (uint8 or uint16).
        display: bands and window (module rules); None or the default: none.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ArgumentError(f"expected (H, W) or (H, W, C) samples, got shape {arr.shape}")
    nc = arr.shape[2]
    window = None if display is None else display.window
    if display is not None and display.bands is not None:
        if max(display.bands) >= nc:
            raise DisplayError(f"band {max(display.bands)} does not exist: the image has {nc} bands")
        chosen = arr[..., list(display.bands)]
        v = scale_to_uint8(chosen) if window is None else window_to_uint8(chosen, window)
        return np.ascontiguousarray(np.repeat(v, 3, axis=2) if v.shape[2] == 1 else v)
    if photometric == "palette":
        if colormap is None:
            raise ArgumentError("a palette image needs a colour map")
        cmap = scale_to_uint8(np.asarray(colormap))
        idx = np.clip(arr[..., 0].astype(np.intp), 0, len(cmap) - 1)
        return cmap[idx]  # type: ignore[no-any-return]
    colour_n = {"grey": 1, "grey_inverted": 1, "rgb": 3, "cmyk": 4}[photometric]
    if nc < colour_n:
        if photometric == "rgb" and nc in (1, 2):
            photometric, colour_n = "grey", 1
        else:
            raise UnsupportedFormatError(f"{photometric} needs {colour_n} samples per pixel, got {nc}")
    take = colour_n + (1 if alpha != "none" and nc > colour_n else 0)
    if window is None:
        v = scale_to_uint8(arr[..., :take])
    else:
        v = window_to_uint8(arr[..., :colour_n], window)
        if take > colour_n:  # alpha keeps its data type's range
            v = np.concatenate([v, scale_to_uint8(arr[..., colour_n:take])], axis=2)
    if photometric in ("grey", "grey_inverted"):
        g = v[..., 0] if photometric == "grey" else 255 - v[..., 0]
        rgb = np.repeat(g[..., None], 3, axis=2)
    elif photometric == "rgb":
        rgb = np.ascontiguousarray(v[..., :3])
    else:  # cmyk
        k = 255 - v[..., 3:4].astype(np.uint16)  # [H,W,1]
        rgb = (((255 - v[..., :3].astype(np.uint16)) * k + 127) // 255).astype(np.uint8)
    if alpha != "none" and nc > colour_n:
        return _composite_on_white(rgb, v[..., colour_n], alpha == "premultiplied")
    return rgb
