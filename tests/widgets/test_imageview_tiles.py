"""ImageView paints from cached tiles: which tiles a view needs, cache hits, bytes per action.

A real 20,000 x 20,000 tiled pyramidal TIFF (written with tifffile in a temporary
folder) in a real Project; the widgets are real ipycanvas/ipywidgets ones on the
dummy comm, whose tile counters say what reached the browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets._imageview import ImageView
from deepblock_nb.widgets._tiles import OVERVIEW, tile_dest, tile_window, visible_tiles
from deepblock_nb.widgets._viewport import Viewport

SIDE = 20_000
BLOCK = 2_000  # full-resolution pixels per colour block of the big image
TIFF_TILE = 512


def block_rgb(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """The colour ``(..., 3)`` uint8 of blocks ``(bx, by)`` of the big image."""
    bx, by = np.broadcast_arrays(bx, by)
    return np.stack([bx * 25 + 5, by * 25 + 5, (bx + by) % 2 * 200 + 20], axis=-1).astype(np.uint8)


def write_big_tiff(path: Path, side: int = SIDE, levels: int = 5) -> Path:
    """A ``side``-square RGB pyramidal TIFF (halving levels) of ``BLOCK``-pixel colour blocks."""

    def tiles(n: int) -> Iterator[np.ndarray]:
        f = side / n  # full-resolution pixels per level pixel
        for y in range(0, n, TIFF_TILE):
            by = ((y + np.arange(TIFF_TILE)) * f // BLOCK).clip(0, side // BLOCK - 1).astype(np.int64)
            for x in range(0, n, TIFF_TILE):
                bx = ((x + np.arange(TIFF_TILE)) * f // BLOCK).clip(0, side // BLOCK - 1).astype(np.int64)
                yield block_rgb(bx[None, :], by[:, None])

    opts = dict(
        tile=(TIFF_TILE, TIFF_TILE), compression="zlib", compressionargs={"level": 1}, photometric="rgb"
    )
    sides = [side // 2**k for k in range(levels)]
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(tiles(side), shape=(side, side, 3), dtype=np.uint8, subifds=levels - 1, **opts)  # type: ignore[arg-type]
        for s in sides[1:]:
            tw.write(tiles(s), shape=(s, s, 3), dtype=np.uint8, subfiletype=1, **opts)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def big_project(tmp_path_factory: pytest.TempPathFactory) -> dbn.Project:
    root = tmp_path_factory.mktemp("tiles")
    t = time.perf_counter()
    path = write_big_tiff(root / "big.tif")
    print(f"wrote {path.stat().st_size / 1e6:.1f} MB pyramidal TIFF in {time.perf_counter() - t:.2f} s")
    project = dbn.Project.create(root / "proj", categories=["thing"])
    project.add_image(path, copy=False)
    return project


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((0, 0, 100, 100), [(0, 0)]),
        ((0, 0, 256, 256), [(0, 0)]),  # a window ending on a tile border needs no next tile
        ((255, 0, 257, 10), [(0, 0), (1, 0)]),
        ((-500, -500, -10, -10), []),  # outside the image
        ((900, 900, 2000, 2000), [(3, 3)]),  # clipped at the image's 1000-pixel edge
    ],
)
def test_visible_tiles(window: tuple[int, int, int, int], expected: list[tuple[int, int]]) -> None:
    x1, y1, x2, y2 = window
    vp = Viewport((1000, 1000), (x2 - x1, y2 - y1), 1.0, x1, y1)
    assert visible_tiles(vp, (1000, 1000), 256) == expected


def test_tile_dest_neighbours_share_edges_at_a_coarser_level() -> None:
    vp = Viewport((1001, 999), (640, 480), 0.73, 13.3, 7.9)
    lw, lh = (501, 500)  # a level of uneven size: half, rounded up
    a, b = tile_dest(vp, (lw, lh), 0, 0, 128), tile_dest(vp, (lw, lh), 1, 0, 128)
    assert a[0] + a[2] == b[0] and a[1] == b[1]
    last = tile_dest(vp, (lw, lh), 3, 3, 128)  # the edge tile ends on the image's edge
    assert abs(last[0] + last[2] - (1001 - 13.3) * 0.73) <= 0.5
    assert abs(last[1] + last[3] - (999 - 7.9) * 0.73) <= 0.5
    assert tile_window((lw, lh), 3, 3, 128) == (384, 384, 117, 116)
    with pytest.raises(ArgumentError):
        tile_window((lw, lh), 4, 0, 128)


def test_level_follows_level_for_and_tiles_are_cached(big_project: dbn.Project) -> None:
    view = ImageView(big_project, width=800, height=560, overview_side=1024)
    try:
        t = time.perf_counter()
        view.show(big_project.images()[0])
        tiles = view.tiles
        opened = time.perf_counter() - t
        assert tiles.last_level == OVERVIEW  # 800 px of a 20,000 px image: the 1,024 px overview
        after_open = tiles.bytes_sent
        steps = {"open": after_open}
        view.zoom(4.0)  # 0.112 canvas px per image px: pyramid level 3 (2,500 px)
        assert tiles.last_level == 3
        steps["zoom 1"] = tiles.bytes_sent - sum(steps.values())
        view.zoom(4.0)  # 0.448: level 1 (10,000 px)
        assert tiles.last_level == 1
        steps["zoom 2"] = tiles.bytes_sent - sum(steps.values())
        sent, hits = tiles.tiles_sent, tiles.hits
        view.pan_by(-400, -200)
        steps["pan"] = tiles.bytes_sent - sum(steps.values())
        first_pan_tiles = tiles.tiles_sent - sent
        view.pan_by(400, 200)
        steps["pan back"] = tiles.bytes_sent - sum(steps.values())
        print(f"opened in {opened:.2f} s; PNG bytes sent per action: {steps}; cache {len(tiles)} tiles")
        assert first_pan_tiles > 0
        assert steps["pan back"] == 0 and tiles.hits > hits  # every tile of the way back was cached
        # the view needs only its own tiles: at most (800/256 + 2) x (560/256 + 2) at any level
        n = len(visible_tiles(view.viewport, tiles.level_wh(1), tiles.tile))  # type: ignore[arg-type]
        assert n <= 5 * 5
        assert sum(steps.values()) < 3_000_000
    finally:
        view.close()


def test_tiles_hold_exact_pixels_the_cache_is_bounded_and_drags_read_no_file(
    big_project: dbn.Project,
) -> None:
    view = ImageView(big_project, width=200, height=150, overview_side=512, max_tiles=8)
    try:
        view.show(big_project.images()[0])
        view.set_viewport(Viewport((SIDE, SIDE), (200, 150), 1.0, 3_900.0, 5_900.0))  # level 0
        tiles = view.tiles
        assert tiles.last_level == 0
        # the tile holding full-resolution pixel (4,000, 6,000), a corner of four blocks
        key = (0, 4_000 // 256, 6_000 // 256)
        assert key in tiles.keys()
        px = tiles.pixels(key)
        x0, y0 = key[1] * 256, key[2] * 256
        assert (px[6_000 - y0 - 1, 4_000 - x0 - 1] == block_rgb(np.array(1), np.array(2))).all()
        assert (px[6_000 - y0, 4_000 - x0] == block_rgb(np.array(2), np.array(3))).all()
        for _ in range(8):  # walk away: the least recently drawn tiles go, the bound holds
            view.pan_by(-400, 0)
            assert len(tiles) <= 8
        assert key not in tiles.keys()
        # a drag far away reads nothing from the file: overview tiles only
        fine = {k for k in tiles.keys() if k[0] != OVERVIEW}
        view.set_viewport(Viewport((SIDE, SIDE), (200, 150), 1.0, 15_000.0, 15_000.0), fast=True)
        assert tiles.last_level == 0
        assert {k for k in tiles.keys() if k[0] != OVERVIEW} <= fine
        assert any(k[0] == OVERVIEW for k in tiles.keys())
    finally:
        view.close()


def _photo_like(rng: np.random.Generator, side: int) -> np.ndarray:
    """An ``(side, side, 3)`` uint8 texture with a photograph's statistics: a 1/f
    spectrum (structure at every scale, smooth colour) plus a little sensor noise, so
    that PNG compresses it poorly and JPEG well, as with real photographs."""
    f = np.fft.fftfreq(side)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    out = np.empty((side, side, 3))
    for c in range(3):
        spectrum = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))) / radius
        layer = np.real(np.fft.ifft2(spectrum))
        out[..., c] = (layer - layer.mean()) / (layer.std() + 1e-9)
    out = 120 + 35 * out + rng.normal(0, 2.5, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_photo_tiff(path: Path, side: int = SIDE, levels: int = 5) -> Path:
    """A ``side``-square pyramidal TIFF whose 512-px tiles are photograph-like textures
    (a pool of eight, mirrored and rotated so that neighbours differ)."""
    rng = np.random.default_rng(3)
    pool = [_photo_like(rng, TIFF_TILE) for _ in range(8)]

    def tiles(n: int) -> Iterator[np.ndarray]:
        k = 0
        for _y in range(0, n, TIFF_TILE):
            for _x in range(0, n, TIFF_TILE):
                t = pool[k % 8]
                yield np.ascontiguousarray(np.rot90(t, k // 8 % 4)[:, :: 1 - 2 * (k // 32 % 2)])
                k += 1

    opts = dict(
        tile=(TIFF_TILE, TIFF_TILE), compression="jpeg", compressionargs={"level": 95}, photometric="rgb"
    )
    sides = [side // 2**k for k in range(levels)]
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(tiles(side), shape=(side, side, 3), dtype=np.uint8, subifds=levels - 1, **opts)  # type: ignore[arg-type]
        for s in sides[1:]:
            tw.write(tiles(s), shape=(s, s, 3), dtype=np.uint8, subfiletype=1, **opts)  # type: ignore[arg-type]
    return path


def test_a_photographic_20000_image_opened_zoomed_twice_and_panned_sends_under_5_mb(
    tmp_path: Path,
) -> None:
    """Bytes per action on photograph-like content (the block image above compresses to
    nearly nothing): "auto" sends JPEG 92 where PNG would be more than twice as large."""
    t = time.perf_counter()
    path = write_photo_tiff(tmp_path / "photo.tif")
    made = time.perf_counter() - t
    project = dbn.Project.create(tmp_path / "proj", categories=["thing"])
    try:
        rec = project.add_image(path, copy=False)
        totals = {}
        for fmt in ("auto", "png"):
            view = ImageView(project, width=800, height=560, overview_side=1024, tile_format=fmt)
            try:
                steps: dict[str, int] = {}

                def step(name: str, act: Any, v: ImageView = view, s: dict[str, int] = steps) -> None:
                    before = v.tiles.bytes_sent
                    act()
                    s[name] = v.tiles.bytes_sent - before

                step("open", lambda v=view: v.show(rec))
                step("zoom 1", lambda v=view: v.zoom(4.0))
                step("zoom 2", lambda v=view: v.zoom(4.0))
                step("pan", lambda v=view: v.pan_by(-400, -200))
                step("pan back", lambda v=view: v.pan_by(400, 200))
                totals[fmt] = sum(steps.values())
                print(f"{fmt}: bytes per action {steps}, {totals[fmt] / 1e6:.2f} MB in all")
                assert steps["pan back"] == 0
            finally:
                view.close()
        print(f"(the 20,000^2 TIFF was written in {made:.1f} s)")
        assert totals["auto"] < 5_000_000, "open + two zooms + a pan must send under 5 MB"
        assert totals["auto"] < 0.6 * totals["png"], "photographs go as JPEG"
    finally:
        project.close()


def test_auto_tiles_keep_flat_content_lossless() -> None:
    from deepblock_nb.widgets._tiles import encode_tile

    flat = np.zeros((256, 256, 3), np.uint8)
    flat[:, 128:] = (200, 30, 30)
    data, kind = encode_tile(flat, "auto")
    assert kind == "png"
    photo, kind = encode_tile(_photo_like(np.random.default_rng(0), 256), "auto")
    assert kind == "jpeg" and len(photo) > len(data)
    with pytest.raises(dbn.DeepBlockError, match="tile format"):
        encode_tile(flat, "webp")
