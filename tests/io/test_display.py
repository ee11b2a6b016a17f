"""Display settings in the readers: auto windows for wide samples, band choice, the
window formula, 8-bit images unchanged, and caches that never mix two settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from deepblock_nb.errors import DisplayError
from deepblock_nb.io import _raster, _tiff
from deepblock_nb.io._lru import TileLRU
from deepblock_nb.io.display import (
    Display,
    DisplaySetting,
    SampleStats,
    measure_windows,
    parse_setting,
    resolve,
)
from deepblock_nb.io.images import measure_samples, open_image

H, W = 240, 320


def twelve_bit(h: int = H, w: int = W) -> np.ndarray:
    """A 12-bit image in uint16 (0..4095): a gradient plus bright blobs and noise."""
    y, x = np.mgrid[0:h, 0:w]
    img = 400 + (x * 2500 / w) + (y * 600 / h)
    img += 800 * np.exp(-((x - w * 0.3) ** 2 + (y - h * 0.4) ** 2) / 300.0)
    img += np.random.default_rng(0).normal(0, 20, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def spread(rgb: np.ndarray) -> float:
    """The 5th to 95th percentile spread of a rendered channel, in 8-bit levels."""
    lo, hi = np.percentile(rgb[..., 0], [5, 95])
    return float(hi - lo)


def windowed(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The documented formula, written independently of the readers."""
    out = (v.astype(np.float64) - lo) * 255.0 / (hi - lo)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    img = twelve_bit()
    out = {
        "tiled.tif": tmp_path / "tiled.tif",
        "strips.tif": tmp_path / "strips.tif",
        "deflate.tif": tmp_path / "deflate.tif",
        "grey16.png": tmp_path / "grey16.png",
    }
    tifffile.imwrite(out["tiled.tif"], img, tile=(64, 64), compression="zlib")
    tifffile.imwrite(out["strips.tif"], img)  # uncompressed: memory-mapped
    tifffile.imwrite(out["deflate.tif"], img, rowsperstrip=16, compression="zlib")
    Image.fromarray(img).save(out["grey16.png"])
    return out


@pytest.mark.parametrize("name", ["tiled.tif", "strips.tif", "deflate.tif", "grey16.png"])
def test_a_12_bit_image_gets_contrast_by_default(files: dict[str, Path], name: str) -> None:
    path = files[name]
    with open_image(path) as src:  # the data type's range: v >> 8, nearly black
        assert spread(src.overview(256)) < 16
    stats = measure_samples(path)
    assert stats.dtype == "uint16" and stats.bands == 1 and stats.colour == "grey"
    display = resolve(stats)
    assert display.bands is None and display.window is not None and len(display.window) == 1
    lo, hi = display.window[0]
    assert 0 < lo < 800 and 2800 < hi <= 4095  # robust percentiles of the samples, not the type range
    with open_image(path, display="auto") as src:
        ov = src.overview(256)
        assert spread(ov) > 100
        region = src.read_region(10, 20, 50, 40)
    want = windowed(twelve_bit()[20:60, 10:60], lo, hi)
    assert np.array_equal(region[..., 0], want) and np.array_equal(region[..., 2], want)


def test_all_readers_give_the_same_pixels_for_one_setting(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    display = Display(None, ((500.0, 3500.0),))
    reads = {}
    for name, path in files.items():
        with open_image(path, display=display) as src:
            reads[name] = src.read_region(0, 0, W, H)
    pytest.importorskip("pyvips")
    monkeypatch.setattr(_raster, "STREAM_MIN_PIXELS", 1)  # a 16-bit PNG streamed by libvips
    with open_image(files["grey16.png"], cache_dir=tmp_path / "cache", display=display) as src:
        assert type(src).__name__ == "PyramidSource"
        reads["vips"] = src.read_region(0, 0, W, H)
        stats_vips = measure_samples(files["grey16.png"], tmp_path / "cache")
    want = windowed(twelve_bit(), 500, 3500)
    for name, got in reads.items():
        assert np.array_equal(got[..., 1], want), name
    assert stats_vips.windows is not None
    assert abs(stats_vips.windows[0][0] - measure_samples(files["tiled.tif"]).windows[0][0]) < 60  # type: ignore[index]


def test_float_samples_get_an_auto_window(tmp_path: Path) -> None:
    y, x = np.mgrid[0:H, 0:W]
    f = (x * 1250.0 / W - 50.0 + 30 * np.sin(y / 9.0)).astype(np.float32)  # -80 .. 1230
    f[5, 5] = np.nan  # a missing sample reads as 0 and does not move the window
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, f, tile=(64, 64))
    with open_image(path) as src:  # floats taken as 0..1: almost all white
        assert spread(src.overview(256)) < 16
    stats = measure_samples(path)
    assert stats.dtype == "float32"
    (lo, hi) = resolve(stats).window[0]  # type: ignore[index]
    assert -80 <= lo < 0 and 1100 < hi <= 1230
    with open_image(path, display="auto") as src:
        assert spread(src.overview(256)) > 100
        assert src.read_region(5, 5, 1, 1)[0, 0, 0] == 0


def _four_band(path: Path) -> np.ndarray:
    base = twelve_bit()
    bands = np.stack([base, base // 2, 4095 - base, np.full_like(base, 100)], axis=-1)
    bands[:, W // 2 :, 3] = 3000  # band 3: dark left half, bright right half
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig", tile=(64, 64))
    return bands


def test_four_bands_default_and_chosen(tmp_path: Path) -> None:
    path = tmp_path / "four.tif"
    bands = _four_band(path)
    stats = measure_samples(path)
    assert stats.bands == 4 and stats.windows is not None and len(stats.windows) == 4
    default = resolve(stats)
    assert default.bands == (0, 1, 2)
    with open_image(path, display=default) as src:
        rgb = src.read_region(0, 0, W, H)
    for c in range(3):
        assert np.array_equal(rgb[..., c], windowed(bands[..., c], *stats.windows[c]))
    chosen = resolve(stats, parse_setting((3, 2, 1)))
    with open_image(path, display=chosen) as src:
        rgb = src.read_region(0, 0, W, H)
    assert (rgb[:, : W // 2, 0] == 0).all() and (rgb[:, W // 2 :, 0] == 255).all()  # band 3 is red
    assert np.array_equal(rgb[..., 1], windowed(bands[..., 2], *stats.windows[2]))
    grey = resolve(stats, parse_setting((3,), (0, 6000)))
    with open_image(path, display=grey) as src:
        rgb = src.read_region(0, 0, W, H)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb[0, 0, 0] == windowed(np.array(100), 0, 6000) and rgb[0, -1, 0] == 128  # 3000/6000


def test_rgb_files_keep_their_colours_with_one_common_window(tmp_path: Path) -> None:
    base = twelve_bit()
    rgb16 = np.stack([base, base // 2, base // 4], axis=-1)
    path = tmp_path / "rgb16.png"
    import imagecodecs

    path.write_bytes(imagecodecs.png_encode(rgb16))  # Pillow itself reads such a PNG as 8-bit
    stats = measure_samples(path)
    assert stats.dtype == "uint16" and stats.colour == "rgb"
    display = resolve(stats)
    assert display.bands is None and display.window is not None and len(display.window) == 1
    with open_image(path, display=display) as src:
        got = src.read_region(0, 0, W, H)
    assert np.array_equal(got, windowed(rgb16, *display.window[0]))


@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff", "grey_png", "rgba_png"])
def test_8_bit_images_are_bit_identical_to_a_plain_decode(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = tmp_path / f"x.{kind}"
    if kind in ("png", "jpeg"):
        Image.fromarray(arr).save(path, format=kind.upper())
    elif kind == "grey_png":
        Image.fromarray(arr[..., 0]).save(path, format="PNG")
    elif kind == "rgba_png":
        Image.fromarray(np.dstack([arr, arr[..., :1]])).save(path, format="PNG")
    else:
        tifffile.imwrite(path, arr, tile=(64, 64))
    stats = measure_samples(path)
    assert stats.windows is None and resolve(stats) == Display()
    with Image.open(path) as im:
        if kind == "rgba_png":  # composited on white, as every reader does
            a = np.asarray(im).astype(np.uint16)
            want = ((a[..., :3] * a[..., 3:] + 255 * (255 - a[..., 3:]) + 127) // 255).astype(np.uint8)
        else:
            want = np.asarray(im.convert("RGB"))
    with open_image(path, display="auto", cache_dir=tmp_path / "cache") as src:
        assert src.display is None
        got = src.read_region(0, 0, W, H)
    assert np.array_equal(got, want)


def test_tiles_of_two_settings_never_mix_in_a_shared_lru(files: dict[str, Path]) -> None:
    lru = TileLRU(64 * 2**20)
    path = files["tiled.tif"]
    a = _tiff.TiffSource(path, None, lru, Display(None, ((0.0, 4095.0),)))
    b = _tiff.TiffSource(path, None, lru, Display(None, ((1000.0, 2000.0),)))
    first = a.read_region(0, 0, 64, 64)
    keys = list(lru._items)
    assert keys and all(a.display.key in k for k in keys)  # type: ignore[union-attr]
    second = b.read_region(0, 0, 64, 64)
    assert not np.array_equal(first, second)
    assert np.array_equal(second[..., 0], windowed(twelve_bit()[:64, :64], 1000, 2000))
    a.close()
    b.close()


def test_cache_files_are_named_by_the_setting(files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = files["grey16.png"]
    reads = []
    for display in (None, Display(None, ((0.0, 4095.0),)), Display(None, ((1000.0, 2000.0),))):
        with open_image(path, cache_dir=cache, display=display) as src:
            reads.append(src.read_region(0, 0, W, H))
    assert len({p.name for p in cache.iterdir()}) == 3  # one decoded cache file per setting
    with open_image(path, cache_dir=cache, display=Display(None, ((1000.0, 2000.0),))) as src:
        assert np.array_equal(src.read_region(0, 0, W, H), reads[2])  # served from its own file
    assert not np.array_equal(reads[1], reads[2])


def test_auto_window_reads_a_small_overview_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window is measured on a pyramid level or a spread of tiles, never every tile."""
    big = np.tile(twelve_bit(256, 256), (8, 8))  # 2048 x 2048 in 64-px tiles: 1024 tiles
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, big, tile=(64, 64), compression="zlib")
    pyr = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(pyr) as tif:
        tif.write(big, tile=(64, 64), compression="zlib", subifds=1)
        tif.write(big[::4, ::4], tile=(64, 64), compression="zlib", subfiletype=1)
    decoded: list[tuple[int, int, int]] = []
    real = _tiff.TiffSource._decode_samples

    def spy(self: _tiff.TiffSource, level: int, ty: int, tx: int) -> np.ndarray:
        decoded.append((level, ty, tx))
        return real(self, level, ty, tx)

    monkeypatch.setattr(_tiff.TiffSource, "_decode_samples", spy)
    monkeypatch.setattr("deepblock_nb.io.images.SAMPLE_SIDE", 256)
    flat_stats = measure_samples(flat)
    assert 0 < len(decoded) <= _tiff.RAW_SAMPLE_TILES
    decoded.clear()
    pyr_stats = measure_samples(pyr)
    assert decoded and {lv for lv, _, _ in decoded} == {1}  # the reduced level only
    for stats in (flat_stats, pyr_stats):
        lo, hi = stats.windows[0]  # type: ignore[index]
        assert 200 < lo < 800 and 2800 < hi < 4095


@pytest.mark.parametrize(
    ("bands", "window", "message"),
    [
        ((0, 1), None, "1 band"),
        ((5,), None, "band 5 does not exist"),
        (None, (10, 10), "lo < hi"),
        (None, (float("nan"), 10), "finite"),
        (None, [(0, 1), (0, 2)], "2 windows for 1 shown"),
        ((-1,), None, ">= 0"),
        (None, "bright", "auto"),
    ],
)
def test_bad_settings_are_refused(bands: object, window: object, message: str) -> None:
    stats = SampleStats("uint16", 1, "grey", ((0.0, 10.0),))
    with pytest.raises(DisplayError, match=message):
        resolve(stats, parse_setting(bands, window))


def test_settings_round_trip_and_measure_edge_cases() -> None:
    for setting in (
        DisplaySetting(),
        parse_setting((3, 2, 1), [(0, 1), (2, 3), (4, 5)]),
        parse_setting(2, (1, 9)),
    ):
        assert DisplaySetting.from_json(setting.to_json()) == setting
    assert DisplaySetting().to_json() is None
    assert measure_windows(np.zeros((0, 2))) == ((0.0, 1.0), (0.0, 1.0))  # empty: no samples
    assert measure_windows(np.full((5, 1), 7.0)) == ((7.0, 8.0),)  # a flat band
    assert Display().key == "" and Display(None, ((0.0, 1.0),)).key != Display(None, ((0.0, 2.0),)).key
