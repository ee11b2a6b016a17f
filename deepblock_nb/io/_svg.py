"""SVG: size from the root element's attributes, pixels rasterised with resvg."""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from deepblock_nb.errors import ImageReadError

__all__ = ["render_svg", "svg_size"]

U8 = npt.NDArray[np.uint8]

# CSS absolute units in px at 96 dpi
_UNITS = {"": 1.0, "px": 1.0, "pt": 96 / 72, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4}
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z%]*)\s*$")


def _length(value: str | None) -> float | None:
    if value is None:
        return None
    m = _LENGTH.match(value)
    if not m or m.group(2) not in _UNITS:
        return None  # percentages and font-relative units fall back to the viewBox
    return float(m.group(1)) * _UNITS[m.group(2)]


def _root(path: Path) -> ET.Element:
    """The root element of the whole document (parsing all of it rejects truncated files)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})", path) from exc
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ImageReadError(f"{path}: truncated or invalid SVG ({exc})", path) from exc
    except LookupError as exc:  # <?xml encoding="..."?> names an encoding Python lacks
        raise ImageReadError(f"{path}: not a readable SVG file ({exc})", path) from exc


def svg_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` in pixels from ``width``/``height`` or else the ``viewBox``.

    Parses the whole document (cheap for SVG, and it rejects truncated files).
    """
    root = _root(path)
    if not root.tag.endswith("svg"):
        raise ImageReadError(f"{path}: the XML root is <{root.tag}>, not <svg>", path)
    w, h = _length(root.get("width")), _length(root.get("height"))
    box = root.get("viewBox")
    if box is not None:
        try:
            _, _, bw, bh = (float(v) for v in re.split(r"[\s,]+", box.strip()))
        except ValueError as exc:
            raise ImageReadError(f"{path}: bad SVG viewBox {box!r}", path) from exc
        if w is None and h is None:
            w, h = bw, bh
        elif w is None and h is not None and bh > 0:
            w = h * bw / bh
        elif h is None and w is not None and bw > 0:
            h = w * bh / bw
    w = 100.0 if w is None else w  # resvg's default for an SVG with no size at all
    h = 100.0 if h is None else h
    if not (math.isfinite(w) and math.isfinite(h)):
        raise ImageReadError(f"{path}: SVG size {w} x {h} is not a finite number of pixels", path)
    width, height = round(w), round(h)
    if width < 1 or height < 1:
        raise ImageReadError(f"{path}: SVG size {w} x {h} is under one pixel", path)
    return width, height


def _with_pixel_size(text: str, width: int, height: int) -> str:
    """The SVG text with its root ``width``/``height`` replaced by pixel values."""
    m = re.search(r"<svg\b[^>]*>", text)
    if m is None:
        return text
    tag = re.sub(r"\s(width|height)\s*=\s*(\"[^\"]*\"|'[^']*')", "", m.group(0))
    tag = tag[:4] + f' width="{width}" height="{height}"' + tag[4:]
    return text[: m.start()] + tag + text[m.end() :]


def render_svg(path: Path, width: int, height: int) -> U8:
    """Rasterise at ``width x height``, composited on white, as ``(H, W, 3)`` uint8."""
    import resvg_py

    try:
        try:
            png = resvg_py.svg_to_bytes(svg_path=str(path), width=width, height=height, background="white")
        except ValueError:  # resvg rejects some root units (in, cm, ...): give it pixels
            text = _with_pixel_size(path.read_text(encoding="utf-8", errors="replace"), width, height)
            png = resvg_py.svg_to_bytes(svg_string=text, width=width, height=height, background="white")
        with Image.open(io.BytesIO(bytes(png))) as im:
            rgb = np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot render SVG ({exc})", path) from exc
    if rgb.shape[:2] != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))
    return rgb
