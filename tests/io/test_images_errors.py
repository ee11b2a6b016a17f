"""Bad input: missing, empty, not an image, truncated, bombs, bad windows, damaged tiles."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from deepblock_nb.errors import DecompressionBombError, DeepBlockError, ImageReadError, UnsupportedFormatError
from deepblock_nb.io import images
from deepblock_nb.io.images import WindowError, open_image, probe_image


@pytest.mark.parametrize("fn", [probe_image, open_image])
def test_missing_file(tmp_path, fn) -> None:
    with pytest.raises(ImageReadError, match="no such file") as info:
        fn(tmp_path / "nope.png")
    assert info.value.path == tmp_path / "nope.png"


@pytest.mark.parametrize("fn", [probe_image, open_image])
def test_empty_file(tmp_path, fn) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        fn(path)


def test_directory_is_not_an_image(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="not a file"):
        probe_image(tmp_path)


@pytest.mark.parametrize("fn", [probe_image, open_image])
def test_text_named_png(tmp_path, fn) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        fn(path)


def test_truncated_files_fail_at_probe(samples, tmp_path) -> None:
    for name in [
        "rgb.png",
        "rgb.jpg",
        "anim.gif",
        "rgb24.bmp",
        "icon.ico",
        "rgb.jp2",
        "rgb.webp",
        "tiled_deflate.tif",
        "stripped_raw.tif",
        "shapes.svg",
    ]:
        data = samples[name].path.read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(ImageReadError, match=f"cut_{name}") as info:
            probe_image(cut)
        assert not isinstance(info.value, UnsupportedFormatError), name


@pytest.mark.parametrize("name", ["rgb.png", "rgb.jpg", "anim.gif", "rgb24.bmp", "icon.ico", "rgb.webp"])
def test_truncated_files_fail_at_open(samples, tmp_path, name) -> None:
    """open_image refuses a visibly cut file at once, naming it, not on a later read."""
    data = samples[name].path.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match=f"cut_{name}"):
        open_image(cut)


def test_damaged_png_data_fails_on_decode(samples, tmp_path) -> None:
    """A PNG whose end is intact but whose pixel data is damaged fails on its first read."""
    data = bytearray(samples["rgb.png"].path.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = bytes(64)
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with open_image(bad) as src, pytest.raises(ImageReadError, match=r"bad\.png"):
        src.read_region(0, 0, src.width, src.height)


def test_not_a_valid_tiff_header(tmp_path) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 60)
    with pytest.raises(ImageReadError, match=r"bad\.tif"):
        probe_image(path)
    with pytest.raises(ImageReadError, match=r"bad\.tif"):
        open_image(path)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but holds one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fn", [probe_image, open_image])
def test_decompression_bomb_png_header(tmp_path, fn) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(100_000, 100_000))
    with pytest.raises(DecompressionBombError, match=r"bomb\.png"):
        fn(path)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's guard stays on


def test_decompression_bomb_limit_of_our_readers(samples, monkeypatch) -> None:
    path = samples["tiled_deflate.tif"].path
    with pytest.raises(DecompressionBombError, match="851"):
        probe_image(path, max_pixels=800)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(DecompressionBombError, match="MAX_PIXELS"):
        open_image(path)
    with pytest.raises(DecompressionBombError):
        probe_image(samples["shapes.svg"].path)


def test_decompression_bomb_tiff_header(tmp_path) -> None:
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(
        path, np.zeros((64, 64, 3), np.uint8), tile=(16, 16), photometric="rgb", compression="zlib"
    )
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(300_000)
        tif.pages.first.tags["ImageLength"].overwrite(300_000)
    for fn in (probe_image, open_image):
        with pytest.raises(DecompressionBombError, match=r"bomb\.tif: the header claims 300000 x 300000"):
            fn(path)


def test_svg_bomb(tmp_path) -> None:
    path = tmp_path / "huge.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="900000" height="900000"></svg>')
    with pytest.raises(DecompressionBombError, match=r"huge\.svg"):
        probe_image(path)


@pytest.mark.parametrize(
    "window",
    [(-1, 0, 5, 5), (0, -1, 5, 5), (33, 0, 5, 5), (0, 19, 5, 5), (37, 0, 1, 1), (0, 23, 1, 1), (0, 0, 38, 1),
     (0, 0, 0, 5), (0, 0, 5, 0), (0, 0, -3, 5)],
)  # fmt: skip
@pytest.mark.parametrize("name", ["tiled_deflate.tif", "rgb.png", "rgb24.bmp"])
def test_window_not_inside_image(samples, name, window) -> None:
    with open_image(samples[name].path) as src:
        with pytest.raises(WindowError, match="37 x 23|empty") as info:
            src.read_region(*window)
        assert isinstance(info.value, ValueError) and isinstance(info.value, DeepBlockError)
        assert str(window[0]) in str(info.value)


def test_window_must_be_whole_pixels(samples) -> None:
    with open_image(samples["rgb.png"].path) as src:
        with pytest.raises(WindowError, match="whole pixels"):
            src.read_region(0.5, 0, 2, 2)  # type: ignore[arg-type]
        with pytest.raises(WindowError, match="integers"):
            src.read_region("a", 0, 2, 2)  # type: ignore[arg-type]
        assert src.read_region(np.int64(1), 1.0, np.int32(2), 2).shape == (2, 2, 3)  # type: ignore[arg-type]


def test_reading_after_close_raises(samples) -> None:
    src = open_image(samples["tiled_deflate.tif"].path)
    src.close()
    with pytest.raises(WindowError, match="closed"):
        src.read_region(0, 0, 1, 1)


def _tiled_tif(path, rgb_pattern) -> np.ndarray:
    rgb = rgb_pattern(64, 64)
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(16, 16), compression="zlib")
    return rgb


def test_truncated_tiled_tiff_damaged_tile_raises_others_read(tmp_path, rgb_pattern) -> None:
    path = tmp_path / "cut.tif"
    rgb = _tiled_tif(path, rgb_pattern)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        offsets, counts = page.dataoffsets, page.databytecounts
        assert page.offset < offsets[0]  # the IFD precedes the pixel data, so a cut spares it
    last = int(np.argmax(offsets))
    data = path.read_bytes()
    cut_at = offsets[last] + counts[last] // 2  # inside the tile stored last in the file
    path.write_bytes(data[:cut_at])
    with pytest.raises(ImageReadError, match=r"cut\.tif: truncated TIFF"):
        probe_image(path)
    ty, tx = divmod(last, 4)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 16, 16), rgb[:16, :16])
        with pytest.raises(ImageReadError, match=rf"cut\.tif: tile \(row {ty}, column {tx}\) of level 0"):
            src.read_region(tx * 16 + 2, ty * 16 + 2, 4, 4)
        # the window next to it still reads
        ny, nx = (ty, tx - 1) if tx else (ty - 1, tx)
        np.testing.assert_array_equal(
            src.read_region(nx * 16, ny * 16, 16, 16), rgb[ny * 16 : ny * 16 + 16, nx * 16 : nx * 16 + 16]
        )


def test_corrupt_tile_raises_naming_it(tmp_path, rgb_pattern) -> None:
    path = tmp_path / "corrupt.tif"
    rgb = _tiled_tif(path, rgb_pattern)
    with tifffile.TiffFile(path) as tif:
        off, n = tif.pages[0].dataoffsets[5], tif.pages[0].databytecounts[5]
    data = bytearray(path.read_bytes())
    data[off : off + n] = b"\x13" * n
    path.write_bytes(bytes(data))
    probe_image(path)  # structure intact: the damage shows only when the tile is decoded
    with open_image(path) as src:
        with pytest.raises(
            ImageReadError, match=r"corrupt\.tif: tile \(row 1, column 1\) of level 0 is damaged"
        ):
            src.read_region(10, 10, 20, 20)
        np.testing.assert_array_equal(src.read_region(32, 32, 32, 32), rgb[32:, 32:])


def test_unsupported_tiff_compression(tmp_path, rgb_pattern) -> None:
    path = tmp_path / "thunder.tif"
    _tiled_tif(path, rgb_pattern)
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages.first.tags["Compression"].overwrite(32809)  # ThunderScan
    for fn in (probe_image, open_image):
        with pytest.raises(UnsupportedFormatError, match=r"thunder\.tif: .*THUNDERSCAN"):
            fn(path)


def test_unsupported_container(tmp_path) -> None:
    path = tmp_path / "movie.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40)
    with pytest.raises(UnsupportedFormatError, match=r"movie\.mp4"):
        probe_image(path)


def test_probe_never_decodes_a_huge_png_header(tmp_path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(_png_claiming(9000, 9000))  # 81 Mpx: under Pillow's limit
    info = probe_image(path)
    assert (info.width, info.height) == (9000, 9000)
