"""Large PNG/JPEG streamed by libvips into a pyramidal TIFF cache, read back by ``_tiff``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepblock_nb.errors import DecompressionBombError, ImageReadError, WindowError
from deepblock_nb.io import _raster, _vips
from deepblock_nb.io._base import _fit
from deepblock_nb.io._raster import pillow_rgb
from deepblock_nb.io.images import open_image, probe_image

pyvips = pytest.importorskip("pyvips")

W, H = 6000, 5000
WINDOWS = [(0, 0, 512, 512), (1234, 777, 700, 600), (5488, 4488, 512, 512), (2999, 0, 3, 5000)]


def _photo(w: int, h: int) -> np.ndarray:
    """Smooth gradients with noisy rows: compressible, yet every window differs."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x // 7 + y // 5) % 256, (x * y // 1000) % 256, ((x - y) // 3) % 256], -1).astype(
        np.uint8
    )
    rgb[::97] = np.random.default_rng(0).integers(0, 256, rgb[::97].shape, dtype=np.uint8)
    return rgb


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """A 6,000 x 5,000 PNG and JPEG with their full Pillow decode."""
    folder = tmp_path_factory.mktemp("large")
    rgb = _photo(W, H)
    out = {}
    for fmt, name in (("png", "big.png"), ("jpeg", "big.jpg")):
        path = folder / name
        Image.fromarray(rgb).save(path, quality=90) if fmt == "jpeg" else Image.fromarray(rgb).save(path)
        with Image.open(path) as im:
            out[fmt] = (path, pillow_rgb(im))
    return out


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_large_image_reads_through_a_cached_pyramid(large, tmp_path, fmt) -> None:
    path, full = large[fmt]
    cache = tmp_path / "cache"
    with open_image(path, cache_dir=cache) as src:
        assert isinstance(src, _vips.PyramidSource)
        assert len(src.levels) >= 4 and src.levels[1] == (W // 2, H // 2)  # a pyramid
        for x, y, w, h in WINDOWS:
            got = src.read_region(x, y, w, h).astype(np.int16)
            want = full[y : y + h, x : x + w].astype(np.int16)
            if fmt == "png":
                np.testing.assert_array_equal(got, want)
            else:  # libvips' and Pillow's JPEG decoders, then the cache's JPEG tiles
                assert np.abs(got - want).mean() < 2, (x, y)
        # level 2 is a 4x reduction of the same picture
        small = src.read_region(100, 100, 64, 64, level=2).astype(np.float32)
        box = full[400:656, 400:656].reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
        assert np.abs(small - box).mean() < 3
        ov = src.overview(700)
        assert ov.shape == (*_fit(W, H, 700)[::-1], 3)
        want_ov = np.asarray(Image.fromarray(full).resize(ov.shape[1::-1], Image.Resampling.BOX))
        assert np.abs(ov.astype(np.float32) - want_ov).mean() < 4  # the same picture, reduced
        big = src.overview(2500)  # above the decoded overview's side: from the pyramid's levels
        assert big.shape == (*_fit(W, H, 2500)[::-1], 3)
        level1 = Image.fromarray(src.read_region(0, 0, *src.levels[1], level=1))
        np.testing.assert_array_equal(big, np.asarray(level1.resize(big.shape[1::-1], Image.Resampling.BOX)))
    files = sorted(cache.iterdir(), key=lambda f: f.suffix)
    assert [f.suffix for f in files] == [".npy", ".tif"], files  # the overview and the pyramid, no temporary
    before = files[1].stat()
    with open_image(path, cache_dir=cache) as src:  # reused: not built again
        np.testing.assert_array_equal(
            src.read_region(0, 0, 8, 8), open_image(path, cache).read_region(0, 0, 8, 8)
        )
    after = files[1].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(cache.iterdir(), key=lambda f: f.suffix) == files


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_the_overview_shows_before_the_pyramid_is_built(large, tmp_path, fmt) -> None:
    """One streamed decode gives the overview; no pyramid is built for it, and the overview is
    the same once the pyramid exists and from a source opened again (kept in the cache)."""
    path, full = large[fmt]
    cache = tmp_path / "cache"
    with open_image(path, cache_dir=cache) as src:
        first = src.overview(1000)
        assert src._tiff is None and not list(cache.glob("*.tif"))  # no pyramid yet
        want = np.asarray(Image.fromarray(full).resize(first.shape[1::-1], Image.Resampling.BOX))
        assert np.abs(first.astype(np.float32) - want).mean() < 4
        src.read_region(0, 0, 8, 8)  # builds the pyramid
        np.testing.assert_array_equal(src.overview(1000), first)
    with open_image(path, cache_dir=cache) as again:
        np.testing.assert_array_equal(again.overview(1000), first)
    with open_image(path) as uncached:  # no cache folder: decoded the same way, kept by the source
        np.testing.assert_array_equal(uncached.overview(1000), first)
        assert uncached.overview(500).shape == (*_fit(W, H, 500)[::-1], 3)
        with pytest.raises(WindowError, match="max_side must be >= 1"):
            uncached.overview(0)
        assert uncached._tiff is None  # refused without building anything


def test_edited_source_gets_a_new_cache_entry(tmp_path) -> None:
    rgb = _photo(4200, 4000)
    path = tmp_path / "edit.png"
    Image.fromarray(rgb).save(path)
    cache = tmp_path / "cache"
    with open_image(path, cache_dir=cache) as src:
        np.testing.assert_array_equal(src.read_region(10, 10, 4, 4), rgb[10:14, 10:14])
    rgb[10:14, 10:14] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    with open_image(path, cache_dir=cache) as src:
        np.testing.assert_array_equal(src.read_region(10, 10, 4, 4), rgb[10:14, 10:14])
    assert len(list(cache.glob("edit-*.pyramid.tif"))) == 2


def test_truncated_large_jpeg_raises_naming_the_file(large, tmp_path) -> None:
    data = large["jpeg"][0].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated") as info:  # refused at open
        open_image(cut, cache_dir=cache)
    assert info.value.path == cut
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written kept


def test_undecodable_large_png_raises_naming_the_file(large, tmp_path) -> None:
    """A PNG whose end is intact but whose data is damaged fails on the decode, nothing kept."""
    data = bytearray(large["png"][0].read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 4096] = bytes(4096)
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with open_image(bad, cache_dir=cache) as src:
        assert isinstance(src, _vips.PyramidSource)
        for read in (lambda: src.read_region(0, 0, 16, 16), lambda: src.overview(500)):
            with pytest.raises(ImageReadError, match=r"bad\.png: cannot decode the PNG") as info:
                read()
            assert info.value.path == bad
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written kept


def test_without_cache_dir_the_pyramid_is_a_temporary_file(large) -> None:
    path, full = large["png"]
    src = open_image(path)
    np.testing.assert_array_equal(src.read_region(300, 200, 50, 40), full[200:240, 300:350])
    temp = src._temp  # type: ignore[attr-defined]
    assert temp is not None and temp.exists()
    src.close()
    assert not temp.exists()


def _modes(tmp_path: Path) -> list[tuple[Path, float]]:
    """Small files of every colour layout ``_rgb8`` converts, and the mean error allowed."""
    rgb = _photo(300, 200)
    a = rgb[..., 0]
    grey16 = (rgb[..., 1].astype(np.uint16) * 257 + 13).astype(np.uint16)
    files = {
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, a])),
        "la.png": Image.fromarray(np.dstack([rgb[..., 2], a])).convert("LA"),
        "l.png": Image.fromarray(rgb[..., 1]),
        "grey16.png": Image.fromarray(grey16),
        "palette.png": Image.fromarray(rgb).quantize(64),
        "anim.gif": Image.fromarray(rgb).quantize(64),
        "l.jpg": Image.fromarray(rgb[..., 1]),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
    }
    out = []
    for name, im in files.items():
        path = tmp_path / name
        if name == "palette.png":
            im.save(path, transparency=5)
        else:
            im.save(path, **({"quality": 95} if name.endswith(".jpg") else {}))
        out.append((path, 1.5 if name.endswith(".jpg") else 0.0))
    rgb16 = (rgb.astype(np.uint16) * 257 + 7).astype(">u2")  # 16-bit RGB PNG through imagecodecs
    import imagecodecs

    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb16.astype(np.uint16)))
    out.append((tmp_path / "rgb16.png", 0.0))
    return out


def test_conversion_matches_the_pillow_path(tmp_path, monkeypatch) -> None:
    modes = _modes(tmp_path)
    monkeypatch.setattr(_raster, "STREAM_MIN_PIXELS", 1)
    for path, tolerance in modes:
        with Image.open(path) as im:
            want = pillow_rgb(im).astype(np.int16)
        with open_image(path, cache_dir=tmp_path / "cache") as src:
            assert isinstance(src, _vips.PyramidSource), path.name
            got = src.read_region(0, 0, 300, 200).astype(np.int16)
        diff = np.abs(got - want).mean()
        assert diff <= tolerance, (path.name, diff)


def test_without_pyvips_the_pillow_path_is_used(large, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "pyvips", None)  # `import pyvips` now raises ImportError
    monkeypatch.setattr(_vips, "_tried", False)
    monkeypatch.setattr(_vips, "_module", None)
    path, full = large["png"]
    with caplog.at_level(logging.INFO, logger=_vips.__name__), open_image(path) as src:
        assert isinstance(src, _raster.DecodedSource)
        np.testing.assert_array_equal(src.read_region(1, 2, 3, 4), full[2:6, 1:4])
    assert [r.getMessage() for r in caplog.records if "pyvips is not available" in r.getMessage()]


_BUILD = """
import sys
from deepblock_nb.io.images import open_image
src = open_image(sys.argv[1], cache_dir=sys.argv[2])
assert type(src).__name__ == "PyramidSource"
src.read_region(6000, 6000, 256, 256)
src.overview(1024)
src.close()
# VmHWM starts afresh at exec; ru_maxrss would still hold the RSS of the forked test process
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(int(status) // 1024)
"""


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_building_the_cache_of_a_12000_square_jpeg_stays_under_400_mb(tmp_path) -> None:
    side = 12_000
    xy = pyvips.Image.xyz(side, side)
    noise = pyvips.Image.gaussnoise(side, side, sigma=20)
    im = ((xy[0] // 5 + xy[1] // 3) % 256).bandjoin([(xy[0] * 3 % 256), noise + 128]).cast("uchar")
    path = tmp_path / "huge.jpg"
    im.jpegsave(str(path), Q=90)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BUILD), str(path), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mb = int(run.stdout.split()[-1])
    print(f"peak RSS building the pyramid of a {side:,}^2 JPEG: {peak_mb} MB")
    assert peak_mb < 400
    assert len(list((tmp_path / "cache").glob("*.pyramid.tif"))) == 1


def test_an_image_above_pillows_pixel_limit_streams_through_libvips(tmp_path, monkeypatch) -> None:
    """Pillow refuses images above twice its MAX_IMAGE_PIXELS; those libvips streams in
    bounded memory are probed from their header by libvips and read (a 20,000^2 PNG is
    400 MP, past Pillow's 179 MP). Here both limits are lowered to keep the file small."""
    rgb = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(rgb).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow now refuses it as a bomb
    monkeypatch.setattr(_raster, "STREAM_MIN_PIXELS", 1)  # and it is "large": streamed
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    info = probe_image(path)
    assert (info.width, info.height, info.mode, info.dtype, info.bands) == (160, 120, "RGB", "uint8", 3)
    with open_image(path, cache_dir=tmp_path / "cache") as src:
        assert isinstance(src, _vips.PyramidSource)
        np.testing.assert_array_equal(src.read_region(0, 0, 160, 120), rgb)
    # a file claiming far more pixels than its bytes can hold stays refused, naming itself
    monkeypatch.setattr(_raster, "STREAM_MAX_RATIO", 0.5)  # (random pixels: about 1 here)
    with pytest.raises(DecompressionBombError, match=r"big\.png.*times its file size"):
        probe_image(path)


def test_a_single_strip_compressed_tiff_streams_through_libvips(tmp_path, monkeypatch) -> None:
    """Every window of a TIFF stored as one compressed strip would decode it whole: such
    a TIFF is streamed once into a pyramid; tiled and strip-by-rows TIFFs stay as they are."""
    import tifffile

    from deepblock_nb.io import _tiff
    from deepblock_nb.io._tiff import TiffSource

    rgb = _photo(640, 480)
    one = tmp_path / "one_strip.tif"
    tifffile.imwrite(one, rgb, compression="zlib", rowsperstrip=480)
    rows = tmp_path / "rows.tif"
    tifffile.imwrite(rows, rgb, compression="zlib", rowsperstrip=16)
    monkeypatch.setattr(_tiff, "STREAM_SEGMENT_BYTES", 100_000)  # 640 x 480 x 3 is 921,600 bytes
    with open_image(one, cache_dir=tmp_path / "cache") as src:
        assert isinstance(src, _vips.PyramidSource)
        for x, y, w, h in [(0, 0, 640, 480), (123, 45, 300, 200), (639, 479, 1, 1)]:
            np.testing.assert_array_equal(src.read_region(x, y, w, h), rgb[y : y + h, x : x + w])
    with open_image(rows) as src:
        assert isinstance(src, TiffSource)  # 16-row strips: a window decodes only its own
    sixteen = tmp_path / "sixteen.tif"
    tifffile.imwrite(sixteen, (rgb.astype(np.uint16) * 257), compression="zlib", rowsperstrip=480)
    with open_image(sixteen) as src:
        assert isinstance(src, _vips.PyramidSource)
        np.testing.assert_array_equal(src.read_region(10, 10, 50, 40), rgb[10:50, 10:60])  # high byte
