"""Tiny image files of every supported format, written by the real libraries.

Each sample comes with its expected 8-bit RGB pixels, computed independently of
the readers under test: from the source array by the documented conversion rules
for lossless formats, or from a whole-image decode by Pillow/tifffile for lossy ones.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

W, H = 37, 23  # odd sizes so tiles and strips do not divide the image


@dataclass
class Sample:
    path: Path
    expected: np.ndarray  # (H, W, 3) uint8
    fmt: str
    tolerance: int = 0  # max absolute difference allowed (lossy round trips)


def pattern_rgb(w: int = W, h: int = H) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7 + y) % 256, (y * 11 + 3 * x) % 256, (x * y + 40) % 256], axis=-1).astype(np.uint8)


def white_composite(rgb: np.ndarray, a: np.ndarray) -> np.ndarray:
    a16 = a[..., None].astype(np.uint16)
    return ((rgb.astype(np.uint16) * a16 + 255 * (255 - a16) + 127) // 255).astype(np.uint8)


def grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def _png_bytes(arr: np.ndarray) -> bytes:
    return bytes(imagecodecs.png_encode(arr))


def build_samples(root: Path) -> dict[str, Sample]:
    rgb = pattern_rgb()
    g8 = rgb[..., 0].copy()
    g16 = (rgb[..., 0].astype(np.uint16) << 8) | rgb[..., 1]
    alpha = ((np.arange(W)[None, :] * 255) // (W - 1) * np.ones((H, 1), int)).astype(np.uint8)
    rgba = np.dstack([rgb, alpha])
    pal_idx = (rgb[..., 0] % 16).astype(np.uint8)
    palette = (np.arange(16)[:, None] * np.array([16, 5, 9]) % 256).astype(np.uint8)  # (16, 3)
    s: dict[str, Sample] = {}

    def add(name: str, fmt: str, expected: np.ndarray, write: Callable[[Path], object], tol: int = 0) -> None:
        path = root / name
        write(path)
        s[name] = Sample(path, expected, fmt, tol)

    # --- PNG family
    add("rgb.png", "png", rgb, lambda p: Image.fromarray(rgb).save(p))
    add("grey.png", "png", grey3(g8), lambda p: Image.fromarray(g8).save(p))
    add("grey16.png", "png", grey3((g16 >> 8).astype(np.uint8)), lambda p: Image.fromarray(g16).save(p))
    add("rgba.png", "png", white_composite(rgb, alpha), lambda p: Image.fromarray(rgba).save(p))
    add(
        "la.png",
        "png",
        white_composite(grey3(g8), alpha),
        lambda p: Image.fromarray(np.dstack([g8, alpha])).save(p),
    )

    def write_palette(p: Path, transparency: bool = False) -> None:
        im = Image.fromarray(pal_idx, mode="P")
        im.putpalette(palette.reshape(-1).tolist())
        im.save(p, transparency=0) if transparency else im.save(p)

    add("palette.png", "png", palette[pal_idx], write_palette)
    pal_t = palette[pal_idx].copy()
    pal_t[pal_idx == 0] = 255  # index 0 transparent -> white
    add("palette_transparent.png", "png", pal_t, lambda p: write_palette(p, True))
    rgb16 = (rgb.astype(np.uint16) << 8) | 0x5A  # high byte == rgb
    add("rgb16.png", "png", rgb, lambda p: p.write_bytes(_png_bytes(rgb16)))
    frame2 = 255 - rgb
    add(
        "anim.png",
        "png",
        rgb,
        lambda p: Image.fromarray(rgb).save(p, save_all=True, append_images=[Image.fromarray(frame2)]),
    )
    # --- JPEG (lossy: expected from Pillow's full decode)
    for name, arr in (("rgb.jpg", rgb), ("grey.jpg", g8)):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        (root / name).write_bytes(buf.getvalue())
        dec = np.asarray(Image.open(root / name).convert("RGB"))
        s[name] = Sample(root / name, dec, "jpeg")
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(root / "cmyk.jpg", quality=95)
    s["cmyk.jpg"] = Sample(
        root / "cmyk.jpg", np.asarray(Image.open(root / "cmyk.jpg").convert("RGB")), "jpeg"
    )
    # --- GIF (first frame), BMP, ICO (largest), JPEG 2000, WebP
    gif_frames = [Image.fromarray(palette[pal_idx]), Image.fromarray(255 - palette[pal_idx])]
    gif_frames[0].save(root / "anim.gif", save_all=True, append_images=gif_frames[1:])
    s["anim.gif"] = Sample(root / "anim.gif", np.asarray(Image.open(root / "anim.gif").convert("RGB")), "gif")
    add("rgb24.bmp", "bmp", rgb, lambda p: Image.fromarray(rgb).save(p))
    add("palette.bmp", "bmp", palette[pal_idx], write_palette)
    add("topdown.bmp", "bmp", rgb, lambda p: p.write_bytes(_bmp_topdown(rgb)))
    add("bgrx32.bmp", "bmp", rgb, lambda p: p.write_bytes(_bmp32(rgb)))
    big_icon = pattern_rgb(48, 48)
    Image.fromarray(big_icon).save(root / "icon.ico", sizes=[(16, 16), (32, 32), (48, 48)])
    s["icon.ico"] = Sample(root / "icon.ico", big_icon, "ico")
    add("rgb.jp2", "jp2", rgb, lambda p: Image.fromarray(rgb).save(p, "JPEG2000"))
    add("rgb.webp", "webp", rgb, lambda p: Image.fromarray(rgb).save(p, "WEBP", lossless=True))
    # --- SVG: left half red, right half blue on a 40 x 20 viewBox, drawn at 80 x 40
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40" viewBox="0 0 40 20">'
        '<rect x="0" y="0" width="20" height="20" fill="#ff0000"/>'
        '<rect x="20" y="0" width="20" height="20" fill="#0000ff"/></svg>'
    )
    exp_svg = np.zeros((40, 80, 3), np.uint8)
    exp_svg[:, :40] = (255, 0, 0)
    exp_svg[:, 40:] = (0, 0, 255)
    add("shapes.svg", "svg", exp_svg, lambda p: p.write_text(svg))

    # --- TIFF family
    def tif(name: str, data: np.ndarray, expected: np.ndarray, **kw: object) -> None:
        add(name, "tiff", expected, lambda p: tifffile.imwrite(p, data, **kw))  # type: ignore[arg-type]

    tif("tiled_deflate.tif", rgb, rgb, tile=(16, 16), compression="zlib", photometric="rgb")
    tif("tiled_bigtiff.tif", rgb, rgb, tile=(16, 16), compression="zlib", photometric="rgb", bigtiff=True)
    tif("stripped_lzw.tif", rgb, rgb, rowsperstrip=5, compression="lzw", photometric="rgb")
    tif("stripped_raw.tif", rgb, rgb, rowsperstrip=7, photometric="rgb")
    tif("contiguous_raw.tif", rgb, rgb, photometric="rgb")
    tif("tiled_raw.tif", rgb, rgb, tile=(16, 16), photometric="rgb")
    tif("planar.tif", np.moveaxis(rgb, 2, 0), rgb, tile=(16, 16), planarconfig="separate", photometric="rgb")
    tif("planar_strips.tif", np.moveaxis(rgb, 2, 0), rgb, planarconfig="separate", photometric="rgb")
    tif("rgb16.tif", rgb16, rgb, tile=(16, 16), compression="zstd", photometric="rgb")
    tif("grey.tif", g8, grey3(g8), photometric="minisblack", compression="lzw", predictor=True)
    tif(
        "grey16_big_endian.tif",
        g16,
        grey3((g16 >> 8).astype(np.uint8)),
        byteorder=">",
        photometric="minisblack",
    )
    tif("miniswhite.tif", g8, grey3(255 - g8), photometric="miniswhite")
    gf = g8.astype(np.float32) / 255
    tif("float.tif", gf, grey3(g8), photometric="minisblack", tile=(16, 16))
    cmap16 = palette.T.astype(np.uint16) * 257  # (3, 16) TIFF colormap
    cmap_full = np.zeros((3, 256), np.uint16)
    cmap_full[:, :16] = cmap16
    tif("palette.tif", pal_idx, palette[pal_idx], photometric="palette", colormap=cmap_full)
    tif("rgba.tif", rgba, white_composite(rgb, alpha), photometric="rgb", extrasamples=["unassalpha"])
    cmyk_arr = np.asarray(cmyk)
    exp_cmyk = (
        ((255 - cmyk_arr[..., :3].astype(np.uint16)) * (255 - cmyk_arr[..., 3:4].astype(np.uint16)) + 127)
        // 255
    ).astype(np.uint8)
    tif("cmyk.tif", cmyk_arr, exp_cmyk, photometric="separated", tile=(16, 16))
    tif(
        "webp_tiles.tif",
        rgb,
        rgb,
        tile=(16, 16),
        compression="webp",
        compressionargs={"level": 100, "lossless": True},
        photometric="rgb",
    )
    tif(
        "jp2k_tiles.tif",
        rgb,
        rgb,
        tile=(16, 16),
        compression="jpeg2000",
        compressionargs={"level": 0, "reversible": True},
        photometric="rgb",
    )
    tifffile.imwrite(root / "jpeg_tiles.tif", rgb, tile=(16, 16), compression="jpeg", photometric="rgb")
    s["jpeg_tiles.tif"] = Sample(root / "jpeg_tiles.tif", tifffile.imread(root / "jpeg_tiles.tif"), "tiff")
    return s


def _bmp_topdown(rgb: np.ndarray) -> bytes:
    """An uncompressed 24-bit BMP with a negative height (rows stored top-down)."""
    h, w, _ = rgb.shape
    stride = (w * 3 + 3) // 4 * 4
    rows = np.zeros((h, stride), np.uint8)
    rows[:, : w * 3] = rgb[..., ::-1].reshape(h, -1)
    pixels = rows.tobytes()
    import struct

    dib = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + len(dib) + len(pixels), 0, 0, 14 + len(dib))
    return head + dib + pixels


def _bmp32(rgb: np.ndarray) -> bytes:
    """An uncompressed 32-bit BI_RGB BMP (BGRX, bottom-up)."""
    import struct

    h, w, _ = rgb.shape
    bgrx = np.dstack([rgb[..., ::-1], np.full((h, w), 7, np.uint8)])[::-1]
    pixels = bgrx.tobytes()
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 32, 0, len(pixels), 2835, 2835, 0, 0)
    head = struct.pack("<2sIHHI", b"BM", 14 + len(dib) + len(pixels), 0, 0, 14 + len(dib))
    return head + dib + pixels


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    return build_samples(tmp_path_factory.mktemp("images"))


def write_ome_pyramid(path: Path, base: np.ndarray, marker_levels: bool = False) -> list[np.ndarray]:
    """An OME-TIFF with two SubIFD levels; returns the arrays of all three levels.

    With ``marker_levels`` the reduced levels are flat colours instead of
    downsampled copies, so a test can tell which level a read came from.
    """
    levels = [base, base[::2, ::2].copy(), base[::4, ::4].copy()]
    if marker_levels:
        levels[1] = np.full_like(levels[1], (10, 200, 30))
        levels[2] = np.full_like(levels[2], (250, 20, 90))
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        opts: dict[str, Any] = {"tile": (16, 16), "compression": "zlib", "photometric": "rgb"}
        tw.write(levels[0], subifds=2, **opts)
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **opts)
    return levels


@pytest.fixture
def ome_pyramid() -> Callable[..., list[np.ndarray]]:
    return write_ome_pyramid


@pytest.fixture
def rgb_pattern() -> Callable[..., np.ndarray]:
    return pattern_rgb
