"""Whole-slide images through OpenSlide: an Aperio SVS written here with tifffile (the
layout OpenSlide's aperio driver reads: a tiled level 0 whose ImageDescription starts
with "Aperio", a stripped thumbnail, then tiled reduced levels), read by real
OpenSlide; microns per pixel into the project; and the dispatch without the extra."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import deepblock_nb as dbn
from deepblock_nb.errors import DependencyError, FormatDependencyError, ImageReadError, UnsupportedFormatError
from deepblock_nb.io._slide import SlideSource
from deepblock_nb.io._tiff import TiffSource
from deepblock_nb.io.images import SLIDE, detect_format, open_image, probe_image

openslide = pytest.importorskip("openslide")

LEVELS = ((512, 384), (256, 192), (128, 96))  # downsamples 1, 2, 4: whole level-0 pixels
TILE = 64
DESCRIPTION = (
    "Aperio Image Library v12.0.15 \r\n512x384 [0,0 512x384] (64x64) -> 512x384 "
    "|AppMag = 40|StripeWidth = 2040|ScanScope ID = SS1234|Filename = test|MPP = 0.2500"
)


def level_pixels(i: int, w: int, h: int) -> np.ndarray:
    """A distinct pattern per level, so a read from the wrong level cannot match."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [(x * (3 + i) + y) % 256, (y * (5 + i) + 2 * x) % 256, (x + y + 60 * i) % 256], axis=-1
    ).astype(np.uint8)


def smooth_pixels(i: int, w: int, h: int) -> np.ndarray:
    """Slowly varying colours (JPEG keeps them within a few levels)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [64 + (x * 128) // w, 64 + (y * 128) // h, np.full_like(x, 100 + 40 * i)], axis=-1
    ).astype(np.uint8)


def write_svs(path: Path, compression: str = "zlib", smooth: bool = False) -> list[np.ndarray]:
    """An Aperio SVS: level 0 tiled, a stripped thumbnail page, then the reduced levels."""
    make = smooth_pixels if smooth else level_pixels
    levels = [make(i, w, h) for i, (w, h) in enumerate(LEVELS)]
    opts: dict[str, Any] = {"photometric": "rgb", "metadata": None}
    if compression == "jpeg":
        opts["compressionargs"] = {"level": 95}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(TILE, TILE), compression=compression, description=DESCRIPTION, **opts)
        tw.write(make(9, 64, 48), description="Aperio Image Library v12.0.15 \r\n64x48 thumbnail", **opts)
        for lv in levels[1:]:
            tw.write(lv, tile=(TILE, TILE), compression=compression, description=DESCRIPTION, **opts)
    return levels


@pytest.fixture
def svs(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path / "slide.svs"
    return path, write_svs(path)


class LevelSpy:
    """Wraps an OpenSlide object and records the level of every ``read_region``."""

    def __init__(self, slide: Any) -> None:
        self._slide = slide
        self.levels: list[int] = []

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Any:
        self.levels.append(level)
        return self._slide.read_region(location, level, size)

    def close(self) -> None:
        self._slide.close()


def test_openslide_reads_the_written_file_as_aperio(svs) -> None:
    path, _ = svs
    assert openslide.OpenSlide.detect_format(str(path)) == "aperio"
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.level_dimensions == LEVELS
        assert slide.properties["openslide.mpp-x"] == "0.25"


def test_a_slide_opens_through_the_slide_reader_with_its_pyramid(svs) -> None:
    path, written = svs
    info = probe_image(path)
    assert (info.width, info.height, info.format, info.levels) == (512, 384, "aperio", LEVELS)
    assert info.mpp == (0.25, 0.25)
    with open_image(path) as src:
        assert isinstance(src, SlideSource)
        assert src.levels == list(LEVELS) and src.format == "aperio" and src.mpp == (0.25, 0.25)
        assert np.array_equal(src.read_region(0, 0, 512, 384), written[0])
        for level, (x, y, w, h) in [(0, (61, 70, 130, 67)), (0, (511, 383, 1, 1)), (1, (37, 29, 150, 101)),
                                    (1, (255, 191, 1, 1)), (2, (5, 9, 123, 87)), (2, (0, 0, 128, 96))]:  # fmt: skip
            got = src.read_region(x, y, w, h, level)
            assert np.array_equal(got, written[level][y : y + h, x : x + w]), (level, x, y, w, h)


def test_jpeg_tiles_read_within_jpeg_error(tmp_path: Path) -> None:
    path = tmp_path / "jpeg.svs"
    written = write_svs(path, compression="jpeg", smooth=True)
    with open_image(path) as src:
        assert isinstance(src, SlideSource)
        for level, (x, y, w, h) in [(0, (100, 50, 200, 150)), (2, (3, 4, 100, 80))]:
            got = src.read_region(x, y, w, h, level).astype(int)
            exp = written[level][y : y + h, x : x + w].astype(int)
            assert np.abs(got - exp).max() <= 12, level
            assert np.abs(got - exp).mean() < 2


def test_overview_reads_only_the_coarsest_adequate_level(svs) -> None:
    path, written = svs
    with open_image(path) as src:
        spy = LevelSpy(src._slide)  # type: ignore[attr-defined]
        src._slide = spy  # type: ignore[attr-defined]
        small = src.overview(100)
        assert small.shape == (75, 100, 3) and spy.levels == [2]  # 128 x 96 is the smallest >= 100
        spy.levels.clear()
        assert src.overview(200).shape == (150, 200, 3) and spy.levels == [1]
        spy.levels.clear()
        assert np.array_equal(src.overview(512), written[0]) and spy.levels == [0]


def test_transparent_areas_are_white(svs) -> None:
    path, _ = svs

    class Transparent(LevelSpy):
        def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Any:
            im = super().read_region(location, level, size)
            a = np.asarray(im).copy()
            a[:, : size[0] // 2, 3] = 0  # left half never scanned
            from PIL import Image

            return Image.fromarray(a, "RGBA")

    with open_image(path) as src:
        src._slide = Transparent(src._slide)  # type: ignore[attr-defined]
        out = src.read_region(10, 10, 40, 20)
    assert (out[:, :20] == 255).all() and not (out[:, 20:] == 255).all()


def test_reads_from_several_threads_then_close(svs) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path, written = svs
    src = open_image(path)
    windows = [(x, y, 64, 48) for x in range(0, 448, 32) for y in range(0, 336, 48)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda w: src.read_region(*w), windows))
    for (x, y, w, h), out in zip(windows, got):
        assert np.array_equal(out, written[0][y : y + h, x : x + w])
    src.close()
    with pytest.raises(dbn.WindowError, match="closed"):
        src.read_region(0, 0, 1, 1)


def test_the_project_keeps_microns_per_pixel_and_reads_the_slide(tmp_path: Path, svs) -> None:
    path, written = svs
    project = dbn.Project.create(tmp_path / "p", categories=["cell"])
    try:
        rec = project.add_image(path)
        assert (rec.width, rec.height, rec.format, rec.mpp) == (512, 384, "aperio", (0.25, 0.25))
        project.set_grid(rec, 2, 3)
        tiles = project.tiles(rec)
        assert len(tiles) == 6
        with project.open_image(rec) as src:
            assert isinstance(src, SlideSource)
            for x, y, w, h in tiles:
                assert np.array_equal(src.read_region(x, y, w, h), written[0][y : y + h, x : x + w])
    finally:
        project.close()
    again = dbn.Project.open(tmp_path / "p")
    try:
        assert again.image("slide.svs").mpp == (0.25, 0.25)
    finally:
        again.close()


def test_a_plain_tiled_tiff_stays_with_tifffile_and_keeps_its_resolution(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(
        path,
        level_pixels(0, 128, 96),
        tile=(TILE, TILE),
        photometric="rgb",
        resolution=(40000, 20000),
        resolutionunit="CENTIMETER",
    )
    assert openslide.OpenSlide.detect_format(str(path)) == "generic-tiff"
    info = probe_image(path)
    assert info.format == "tiff" and info.mpp == pytest.approx((0.25, 0.5))
    with open_image(path) as src:
        assert isinstance(src, TiffSource) and src.mpp == pytest.approx((0.25, 0.5))
    inch = tmp_path / "inch.tif"
    tifffile.imwrite(
        inch, level_pixels(0, 16, 16), photometric="rgb", resolution=(2540, 2540), resolutionunit="INCH"
    )
    assert probe_image(inch).mpp == pytest.approx((10.0, 10.0))
    none = tmp_path / "none.tif"
    tifffile.imwrite(
        none, level_pixels(0, 16, 16), photometric="rgb", resolution=(5, 5), resolutionunit="NONE"
    )
    assert probe_image(none).mpp is None


def mrxs(tmp_path: Path) -> Path:
    """A MIRAX index file (INI text); its data folder is missing, as in a half-copied slide."""
    path = tmp_path / "scan.mrxs"
    path.write_text("[GENERAL]\nSLIDE_VERSION = 01.02\nSLIDE_ID = x\n")
    return path


def test_a_damaged_mrxs_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = mrxs(tmp_path)
    assert detect_format(path) == SLIDE
    with pytest.raises(ImageReadError, match="scan.mrxs") as info:
        probe_image(path)
    assert not isinstance(info.value, DependencyError)


def test_without_openslide_an_mrxs_names_the_extra_and_an_svs_opens_with_tifffile(
    tmp_path: Path, svs, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "openslide", None)  # ``import openslide`` now fails
    path = mrxs(tmp_path)
    for call in (probe_image, open_image):
        with pytest.raises(
            FormatDependencyError, match=r"scan\.mrxs.*pip install deepblock-nb\[slides\]"
        ) as info:
            call(path)
        assert isinstance(info.value, UnsupportedFormatError) and isinstance(info.value, ImportError)
    svs_path, written = svs
    info2 = probe_image(svs_path)
    # read as a TIFF, MPP from the Aperio description
    assert (info2.format, info2.levels, info2.mpp) == ("tiff", LEVELS, (0.25, 0.25))
    with open_image(svs_path) as src:
        assert isinstance(src, TiffSource) and src.levels == list(LEVELS)
        assert np.array_equal(src.read_region(5, 7, 100, 80, 1), written[1][7:87, 5:105])
    project = dbn.Project.create(tmp_path / "p", categories=["cell"])
    try:
        with pytest.raises(FormatDependencyError, match="deepblock-nb"):
            project.add_image(path, copy=False)
        assert project.images() == []
    finally:
        project.close()


def test_a_multi_file_slide_is_referenced_not_copied(tmp_path: Path, monkeypatch) -> None:
    """A MIRAX slide's pixels lie in a folder beside the .mrxs: copying the index alone
    would leave an unreadable image, so only copy=False is accepted."""
    from deepblock_nb.io.images import ImageInfo
    from deepblock_nb.store import files

    path = mrxs(tmp_path)
    info = ImageInfo(100, 80, "mirax", "RGBA", "uint8", 4, ((100, 80), (50, 40)), (0.5, 0.5))
    monkeypatch.setattr(files, "probe_image", lambda p: info)  # no real MIRAX data folder here
    project = dbn.Project.create(tmp_path / "p", categories=["cell"])
    try:
        with pytest.raises(dbn.PathError, match=r"scan\.mrxs.*copy=False"):
            project.add_image(path)
        assert project.images() == [] and list((tmp_path / "p" / "images").iterdir()) == []
        rec = project.add_image(path, copy=False)
        assert (rec.format, rec.mpp, rec.copied, rec.path) == ("mirax", (0.5, 0.5), False, path.resolve())
    finally:
        project.close()
