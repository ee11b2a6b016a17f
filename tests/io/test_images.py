"""Every format: probe sizes, windows equal to a full decode, overviews, conversions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from deepblock_nb.io.images import SUPPORTED_FORMATS, ImageSource, open_image, probe_image

NAMES = [
    "rgb.png", "grey.png", "grey16.png", "rgba.png", "la.png", "palette.png", "palette_transparent.png",
    "rgb16.png", "anim.png", "rgb.jpg", "grey.jpg", "cmyk.jpg", "anim.gif", "rgb24.bmp", "palette.bmp",
    "topdown.bmp", "bgrx32.bmp", "icon.ico", "rgb.jp2", "rgb.webp", "shapes.svg",
    "tiled_deflate.tif", "tiled_bigtiff.tif", "stripped_lzw.tif", "stripped_raw.tif", "contiguous_raw.tif",
    "tiled_raw.tif", "planar.tif", "planar_strips.tif", "rgb16.tif", "grey.tif", "grey16_big_endian.tif",
    "miniswhite.tif", "float.tif", "palette.tif", "rgba.tif", "cmyk.tif", "webp_tiles.tif",
    "jp2k_tiles.tif", "jpeg_tiles.tif",
]  # fmt: skip


def windows(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """The whole image, corners, right/bottom edges, 1-pixel windows and an interior window."""
    return [
        (0, 0, w, h),
        (0, 0, 1, 1),
        (w - 1, h - 1, 1, 1),
        (w - 1, 0, 1, h),
        (0, h - 1, w, 1),
        (w // 2, h // 3, w - w // 2, h - h // 3),  # touches the right and bottom edges
        (3, 2, max(1, w // 2), max(1, h // 2)),
        (w // 3, h // 2, 1, 1),
    ]


def test_samples_cover_every_format(samples) -> None:
    assert {s.fmt for s in samples.values()} == set(SUPPORTED_FORMATS) - {"j2k"}
    assert set(NAMES) == set(samples)


@pytest.mark.parametrize("name", NAMES)
def test_probe_reads_headers(samples, name: str) -> None:
    sample = samples[name]
    info = probe_image(sample.path)
    h, w = sample.expected.shape[:2]
    assert (info.width, info.height, info.format) == (w, h, sample.fmt)
    assert info.levels[0] == (w, h)
    assert info.bands >= 1 and info.dtype


@pytest.mark.parametrize("name", NAMES)
def test_read_region_equals_full_decode(samples, name: str) -> None:
    sample = samples[name]
    exp = sample.expected
    h, w = exp.shape[:2]
    with open_image(sample.path) as src:
        assert isinstance(src, ImageSource)
        assert (src.width, src.height) == (w, h)
        assert src.levels[0] == (w, h)
        for x, y, ww, hh in windows(w, h):
            got = src.read_region(x, y, ww, hh)
            assert got.shape == (hh, ww, 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(
                got, exp[y : y + hh, x : x + ww], err_msg=f"{name} {(x, y, ww, hh)}"
            )


@pytest.mark.parametrize("name", NAMES)
def test_overview_keeps_aspect_and_content(samples, name: str) -> None:
    sample = samples[name]
    h, w = sample.expected.shape[:2]
    with open_image(sample.path) as src:
        ov = src.overview(16)
        assert max(ov.shape[:2]) <= 16 and ov.dtype == np.uint8 and ov.shape[2] == 3
        assert abs(ov.shape[1] / ov.shape[0] - w / h) < 0.15 * w / h
        ref = np.asarray(Image.fromarray(sample.expected).resize(ov.shape[1::-1], Image.Resampling.BOX))
        # mean colour close to the reference: catches wrong channels, wrong frame, black output
        assert np.abs(ov.astype(float).mean((0, 1)) - ref.astype(float).mean((0, 1))).max() < 12
        np.testing.assert_array_equal(src.overview(10_000), sample.expected)  # never upscales


@pytest.mark.parametrize(
    ("name", "expected_mode"),
    [("grey16.png", "I;16"), ("rgba.png", "RGBA"), ("palette.png", "P"), ("cmyk.jpg", "CMYK"),
     ("rgb16.tif", "RGB"), ("grey.tif", "L"), ("rgba.tif", "RGBA"), ("palette.tif", "P"), ("cmyk.tif", "CMYK")],
)  # fmt: skip
def test_probe_reports_stored_layout(samples, name: str, expected_mode: str) -> None:
    assert probe_image(samples[name].path).mode == expected_mode


def test_probe_dtype_of_16bit(samples) -> None:
    assert probe_image(samples["rgb16.tif"].path).dtype == "uint16"
    assert probe_image(samples["grey16_big_endian.tif"].path).dtype == "uint16"
    assert probe_image(samples["grey16.png"].path).dtype == "uint16"


def test_jpeg_overview_uses_draft_without_full_decode(samples) -> None:
    sample = samples["rgb.jpg"]
    with open_image(sample.path) as src:
        ov = src.overview(8)
        assert max(ov.shape[:2]) <= 8
        assert src._pixels is None  # type: ignore[attr-defined]
        src.read_region(0, 0, 2, 2)
        assert src._pixels is not None  # type: ignore[attr-defined]


def test_jp2_overview_by_reduce(tmp_path) -> None:
    y, x = np.mgrid[0:240, 0:400]
    big = np.stack([x * 255 // 399, y * 255 // 239, (x + y) * 255 // 638], axis=-1).astype(np.uint8)
    path = tmp_path / "big.jp2"
    Image.fromarray(big).save(path, "JPEG2000")
    with open_image(path) as src:
        ov = src.overview(50)
        assert ov.shape == (30, 50, 3)
        assert src._pixels is None  # type: ignore[attr-defined]
        ref = np.asarray(Image.fromarray(big).resize((50, 30), Image.Resampling.BOX)).astype(int)
        assert np.abs(ov.astype(int) - ref).max() < 12


def test_svg_size_from_viewbox_only(tmp_path) -> None:
    path = tmp_path / "box.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 30 12"><rect width="30" height="12" fill="#00ff00"/></svg>'
    )
    info = probe_image(path)
    assert (info.width, info.height) == (30, 12)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read_region(29, 11, 1, 1), [[[0, 255, 0]]])


def test_svg_units_and_transparent_background(tmp_path) -> None:
    path = tmp_path / "inch.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="0.5in" height="24px"><rect width="4" height="4" fill="red"/></svg>'
    )
    with open_image(path) as src:
        assert (src.width, src.height) == (48, 24)
        np.testing.assert_array_equal(src.read_region(40, 20, 1, 1), [[[255, 255, 255]]])  # empty -> white


def test_format_is_detected_from_content_not_name(samples, tmp_path) -> None:
    misnamed = tmp_path / "actually_png.jpg"
    misnamed.write_bytes(samples["rgb.png"].path.read_bytes())
    assert probe_image(misnamed).format == "png"
    with open_image(misnamed) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 5, 5), samples["rgb.png"].expected[:5, :5])


@pytest.mark.parametrize("name", ["tiled_deflate.tif", "rgb.png", "rgb24.bmp"])
def test_threads_read_concurrently(samples, name: str) -> None:
    sample = samples[name]
    exp = sample.expected
    h, w = exp.shape[:2]
    errors: list[BaseException] = []
    with open_image(sample.path, cache_bytes=4096) as src:

        def worker(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(200):
                    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
                    ww, hh = int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))
                    got = src.read_region(x, y, ww, hh)
                    if not np.array_equal(got, exp[y : y + hh, x : x + ww]):
                        raise AssertionError(f"window {(x, y, ww, hh)} differs")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
