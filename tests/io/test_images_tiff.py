"""Large-image behaviour: tiled/stripped/mapped TIFFs, pyramids, tile LRU, derived caches."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from deepblock_nb.errors import ArgumentError, ArgumentTypeError
from deepblock_nb.io import images
from deepblock_nb.io._lru import TileLRU, shared_tile_cache
from deepblock_nb.io._tiff import TiffSource
from deepblock_nb.io.images import open_image, probe_image


@pytest.fixture
def big_rgb(rgb_pattern) -> np.ndarray:
    return rgb_pattern(300, 200)


def _edge_windows(w: int, h: int) -> list[tuple[int, int, int, int]]:
    return [
        (0, 0, w, h),
        (w - 1, h - 1, 1, 1),
        (w - 50, h - 40, 50, 40),
        (31, 31, 2, 2),
        (63, 0, 2, h),
        (0, 127, w, 3),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tile": (64, 64), "compression": "zlib", "bigtiff": True},
        {"tile": (32, 48), "compression": "lzw", "predictor": True},
        {"tile": (64, 64), "compression": "zstd"},
        {"rowsperstrip": 16, "compression": "zlib"},
        {"rowsperstrip": 16},
        {},
    ],
    ids=[
        "tiled-bigtiff-deflate",
        "tiled-lzw-predictor",
        "tiled-zstd",
        "stripped-deflate",
        "stripped-raw",
        "contiguous",
    ],
)
def test_tiff_layouts_read_exactly(tmp_path, big_rgb, kwargs) -> None:
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb", **kwargs)
    h, w = big_rgb.shape[:2]
    with open_image(path) as src:
        for x, y, ww, hh in _edge_windows(w, h):
            np.testing.assert_array_equal(src.read_region(x, y, ww, hh), big_rgb[y : y + hh, x : x + ww])


def test_bigtiff_flag_and_tiles(tmp_path, big_rgb) -> None:
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb", tile=(64, 64), compression="zlib", bigtiff=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and tif.pages.first.is_tiled


def test_window_decodes_only_touched_tiles(tmp_path, big_rgb) -> None:
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb", tile=(64, 64), compression="zlib")
    lru = TileLRU(10**9)
    with open_image(path, cache_bytes=10**9) as src:
        assert isinstance(src, TiffSource)
        src._cache = lru
        src.read_region(70, 70, 50, 50)  # inside tile (row 1, column 1)
        assert len(lru) == 1
        src.read_region(60, 60, 10, 10)  # crosses into 4 tiles, one already decoded
        assert len(lru) == 4 and lru.hits == 1


def test_uncompressed_contiguous_is_memory_mapped(tmp_path, big_rgb) -> None:
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb")
    with open_image(path) as src:
        assert isinstance(src, TiffSource) and src._planes[0].is_mapped
        np.testing.assert_array_equal(src.read_region(299, 0, 1, 200), big_rgb[:, 299:300])


def test_ome_pyramid_levels_and_overview(tmp_path, big_rgb, ome_pyramid) -> None:
    path = tmp_path / "pyr.ome.tif"
    levels = ome_pyramid(path, big_rgb)
    info = probe_image(path)
    assert info.levels == ((300, 200), (150, 100), (75, 50))
    with open_image(path) as src:
        assert src.levels == [(300, 200), (150, 100), (75, 50)]
        for lv, arr in enumerate(levels):
            h, w = arr.shape[:2]
            np.testing.assert_array_equal(src.read_region(0, 0, w, h, level=lv), arr)
            np.testing.assert_array_equal(
                src.read_region(w - 3, h - 2, 3, 2, level=lv), arr[h - 2 :, w - 3 :]
            )
        with pytest.raises(images.WindowError, match="level 1"):
            src.read_region(140, 0, 20, 10, level=1)
        with pytest.raises(images.WindowError, match="level 3"):
            src.read_region(0, 0, 1, 1, level=3)


def test_overview_comes_from_the_smallest_sufficient_level(tmp_path, big_rgb, ome_pyramid) -> None:
    path = tmp_path / "marked.ome.tif"
    levels = ome_pyramid(path, big_rgb, marker_levels=True)
    with open_image(path) as src:
        ov = src.overview(60)  # level 2 (75 x 50) is the smallest >= 60 px
        assert ov.shape == (40, 60, 3)
        assert (ov == levels[2][0, 0]).all()
        ov = src.overview(120)  # level 1 (150 x 100)
        assert ov.shape == (80, 120, 3) and (ov == levels[1][0, 0]).all()
        assert src.overview(300).shape == (200, 300, 3)


def test_overview_of_a_large_level_is_sampled_in_bands(tmp_path, monkeypatch, big_rgb) -> None:
    from deepblock_nb.io import _base

    monkeypatch.setattr(_base, "OVERVIEW_DIRECT_PIXELS", 100)  # force the bounded path
    monkeypatch.setattr(_base, "OVERVIEW_BAND_BYTES", 300 * 3 * 10)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb", tile=(16, 16), compression="zlib")
    with open_image(path) as src:
        ov = src.overview(50)
    assert ov.shape == (33, 50, 3)
    xs = ((np.arange(50) + 0.5) * 300 / 50).astype(int)
    ys = ((np.arange(33) + 0.5) * 200 / 33).astype(int)
    np.testing.assert_array_equal(ov, big_rgb[ys][:, xs])


def test_tile_lru_is_bounded_and_shared(tmp_path, big_rgb) -> None:
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, big_rgb[:192, :288], photometric="rgb", tile=(16, 16), compression="zlib")
    tile_bytes = 16 * 16 * 3
    images.clear_tile_cache()
    old = shared_tile_cache.max_bytes
    try:
        images.set_tile_cache_bytes(5 * tile_bytes)
        with open_image(path) as a, open_image(path) as b:
            a.read_region(0, 0, 288, 192)
            assert shared_tile_cache.nbytes <= 5 * tile_bytes and len(shared_tile_cache) == 5
            b.read_region(0, 0, 16, 16)
            assert len(shared_tile_cache) == 5
        assert len(shared_tile_cache) == 0  # closing a source drops its tiles
    finally:
        images.set_tile_cache_bytes(old)


def test_lru_evicts_least_recent() -> None:
    lru = TileLRU(3 * 8)
    for k in "abc":
        lru.put(("s", k), np.zeros(8, np.uint8))
    assert lru.get(("s", "a")) is not None  # refresh a
    lru.put(("s", "d"), np.zeros(8, np.uint8))
    assert lru.get(("s", "b")) is None and lru.get(("s", "a")) is not None
    lru.put(("s", "huge"), np.zeros(100, np.uint8))  # over budget: not kept
    assert lru.get(("s", "huge")) is None and lru.nbytes == 24
    with pytest.raises(ArgumentError):
        lru.max_bytes = -1
    with pytest.raises(ArgumentError):
        lru.max_bytes = 1.5
    with pytest.raises(ArgumentTypeError):
        lru.max_bytes = "1 GB"  # type: ignore[assignment]
    with pytest.raises(ArgumentError):
        TileLRU(-5)


@pytest.mark.skipif(sys.platform == "win32", reason="needs sparse files")
def test_probe_of_a_huge_tiff_reads_headers_only(tmp_path) -> None:
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, shape=(40_000, 40_000, 3), dtype=np.uint8, bigtiff=True, photometric="rgb")
    assert path.stat().st_size > 4.5e9
    if path.stat().st_blocks * 512 > 1e8:
        pytest.skip("the file system does not keep the empty 4.8 GB file sparse")
    t0 = time.perf_counter()
    info = probe_image(path)
    assert time.perf_counter() - t0 < 0.5
    assert (info.width, info.height) == (40_000, 40_000)
    with open_image(path) as src:
        t0 = time.perf_counter()
        assert (src.read_region(20_000, 30_000, 100, 100) == 0).all()
        assert time.perf_counter() - t0 < 0.5


def test_cache_dir_holds_derived_pixels(tmp_path, rgb_pattern) -> None:
    rgb = rgb_pattern(120, 80)
    src_path = tmp_path / "img.png"
    Image.fromarray(rgb).save(src_path)
    before = (src_path.read_bytes(), os.stat(src_path).st_mtime_ns)
    cache = tmp_path / "cache"
    with open_image(src_path, cache_dir=cache) as src:
        np.testing.assert_array_equal(src.read_region(100, 70, 20, 10), rgb[70:80, 100:120])
    files = list(cache.glob("*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), rgb)
    # a second open reads the cache, not the PNG: prove it by marking the cached pixels
    marked = rgb.copy()
    marked[0, 0] = (1, 2, 3)
    np.save(files[0], marked)
    with open_image(src_path, cache_dir=cache) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 1, 1), [[[1, 2, 3]]])
    files[0].unlink()  # deletable: rebuilt on demand
    with open_image(src_path, cache_dir=cache) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 120, 80), rgb)
    assert len(list(cache.glob("*.npy"))) == 1
    assert (src_path.read_bytes(), os.stat(src_path).st_mtime_ns) == before


def test_large_decoded_image_spills_to_a_temporary_map(tmp_path, monkeypatch, rgb_pattern) -> None:
    from deepblock_nb.io import _raster

    monkeypatch.setattr(_raster, "IN_MEMORY_MAX_BYTES", 1000)
    rgb = rgb_pattern(60, 40)
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    src = open_image(path)
    np.testing.assert_array_equal(src.read_region(5, 5, 50, 30), rgb[5:35, 5:55])
    temp = src._temp  # type: ignore[attr-defined]
    assert temp is not None and temp.exists() and isinstance(src._pixels, np.memmap)  # type: ignore[attr-defined]
    src.close()
    assert not temp.exists()


def test_overview_of_large_tiff_is_cached_under_cache_dir(tmp_path, monkeypatch, big_rgb) -> None:
    from deepblock_nb.io import _base

    monkeypatch.setattr(_base, "OVERVIEW_DIRECT_PIXELS", 100)
    monkeypatch.setattr(_base, "OVERVIEW_CACHE_SIDE", 60)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, big_rgb, photometric="rgb", tile=(16, 16), compression="zlib")
    cache = tmp_path / "cache"
    with open_image(path, cache_dir=cache) as src:
        ov = src.overview(30)
    assert ov.shape == (20, 30, 3)
    (stored,) = cache.glob("*.overview60.npy")
    assert np.load(stored).shape == (40, 60, 3)
    np.save(stored, np.zeros((40, 60, 3), np.uint8))  # a later overview reads the stored one
    with open_image(path, cache_dir=cache) as src:
        assert (src.overview(30) == 0).all()
        assert src.overview(100).shape == (66, 100, 3)  # larger than the stored one: sampled afresh


def test_ome_channel_pages_make_rgb(tmp_path, big_rgb) -> None:
    path = tmp_path / "cyx.ome.tif"
    tifffile.imwrite(
        path, np.moveaxis(big_rgb, 2, 0), photometric="minisblack", ome=True, metadata={"axes": "CYX"}
    )
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3 and tif.series[0].axes == "CYX"
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read_region(10, 20, 50, 60), big_rgb[20:80, 10:60])


@pytest.mark.parametrize("subifds", [True, False], ids=["subifds", "reduced-pages"])
def test_plain_tiff_pyramids(tmp_path, big_rgb, subifds) -> None:
    path = tmp_path / "pyr.tif"
    levels = [big_rgb, big_rgb[::2, ::2].copy(), big_rgb[::4, ::4].copy()]
    opts = {"tile": (32, 32), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], subifds=2 if subifds else None, **opts)  # type: ignore[arg-type]
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **opts)  # type: ignore[arg-type]
    with open_image(path) as src:
        assert src.levels == [(300, 200), (150, 100), (75, 50)]
        np.testing.assert_array_equal(src.read_region(70, 40, 5, 10, level=2), levels[2][40:50, 70:75])


def test_first_page_of_a_stack(tmp_path, big_rgb) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([big_rgb, 255 - big_rgb]), photometric="rgb")
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 300, 200), big_rgb)
