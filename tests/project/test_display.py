"""``project.set_display`` / ``project.display``: one setting read identically by the
viewer, training and prediction; bad input refused; the schema-4 -> 5 migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.errors import DeepBlockError, DisplayError
from deepblock_nb.io.display import Display, DisplaySetting
from tests.io.test_display import H, W, spread, twelve_bit, windowed


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = dbn.Project.create(tmp_path / "proj", categories=["blob"])
    yield p
    p.close()


def _tiff12(path: Path) -> Path:
    tifffile.imwrite(path, twelve_bit(), tile=(64, 64), compression="zlib")
    return path


def _png12(path: Path) -> Path:
    Image.fromarray(twelve_bit()).save(path)
    return path


def _four(path: Path) -> np.ndarray:
    base = twelve_bit()
    bands = np.stack([base, base // 2, 4095 - base, np.full_like(base, 100)], axis=-1)
    bands[:, W // 2 :, 3] = 3000  # band 3: dark left half, bright right half
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig", tile=(64, 64))
    return bands


def _events(project: dbn.Project) -> list[tuple[str, list[Any]]]:
    seen: list[tuple[str, list[Any]]] = []
    project.on("images", lambda topic, action, images: seen.append((action, images)))
    return seen


@pytest.mark.parametrize("writer", [_tiff12, _png12])
def test_the_default_gives_a_12_bit_image_contrast(project: dbn.Project, tmp_path: Path, writer: Any) -> None:
    rec = project.add_image(writer(tmp_path / ("x.tif" if writer is _tiff12 else "x.png")))
    assert rec.display == DisplaySetting()  # "auto"
    with dbn.open_image(rec.path) as src:  # today's conversion: the high byte
        assert spread(src.overview(256)) < 16
    with project.open_image(rec) as src:
        assert spread(src.overview(256)) > 100
    display = project.display(rec)
    assert display.bands is None and display.window is not None
    lo, hi = display.window[0]
    with project.open_image(rec) as src:
        assert np.array_equal(src.read_region(0, 0, W, H)[..., 0], windowed(twelve_bit(), lo, hi))


def test_the_auto_window_is_measured_once_and_kept(
    project: dbn.Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepblock_nb.project import _images

    calls: list[Path] = []
    real = _images.measure_samples

    def counting(path: Path, *args: Any) -> Any:
        calls.append(path)
        return real(path, *args)

    monkeypatch.setattr(_images, "measure_samples", counting)
    rec = project.add_image(_tiff12(tmp_path / "x.tif"))
    assert calls == []  # adding never reads pixels
    first = project.display(rec)
    with project.open_image(rec):
        pass
    assert project.display(rec) == first and len(calls) == 1
    again = dbn.Project.open(project.path)
    try:
        assert again.display(rec.id) == first and len(calls) == 1  # stored in the project
    finally:
        again.close()


def test_bands_of_a_4_band_image(project: dbn.Project, tmp_path: Path) -> None:
    bands = _four(tmp_path / "four.tif")
    rec = project.add_image(tmp_path / "four.tif")
    seen = _events(project)
    assert project.display(rec).bands == (0, 1, 2)
    with project.open_image(rec) as src:
        rgb = src.read_region(0, 0, W, H)
    windows = project.display(rec).window
    assert windows is not None
    for c in range(3):
        assert np.array_equal(rgb[..., c], windowed(bands[..., c], *windows[c]))

    new = project.set_display(rec, bands=(3, 2, 1))
    assert new.display.bands == (3, 2, 1) and seen == [("display", [new])]
    with project.open_image(rec) as src:
        rgb = src.read_region(0, 0, W, H)
    assert (rgb[:, : W // 2, 0] == 0).all() and (rgb[:, W // 2 :, 0] == 255).all()  # band 3 is red
    assert rgb[:, : W // 2, 1:].std() > 10  # bands 2 and 1 are green and blue

    project.set_display(rec, bands=(3,), window=(0, 6000))
    with project.open_image(rec) as src:
        rgb = src.read_region(0, 0, W, H)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()  # grey
    assert rgb[0, 0, 0] == 4 and rgb[0, -1, 0] == 128  # 100 and 3000 of 0..6000

    project.set_display(rec, bands=(0, 1, 2), window=[(0, 4095), (0, 2047), (0, 4095)])
    with project.open_image(rec) as src:
        rgb = src.read_region(0, 0, W, H)
    assert np.array_equal(rgb[..., 1], windowed(bands[..., 1], 0, 2047))
    project.set_display(rec, window="auto")  # back to the default
    assert project.image(rec).display == DisplaySetting() and project.display(rec).bands == (0, 1, 2)


def test_train_predict_and_view_read_the_same_pixels(project: dbn.Project, tmp_path: Path) -> None:
    from deepblock_nb.ml.data import TileDataset
    from deepblock_nb.ml.predict import read_window
    from deepblock_nb.project._prediction import STREAM_CACHE_BYTES

    _four(tmp_path / "four.tif")
    rec = project.add_image(tmp_path / "four.tif")
    project.set_grid(rec, 2, 2)
    project.add_box(rec, "blob", [10, 10, 40, 40])
    project.set_reviewed(rec)
    project.set_display(rec, bands=(3, 0, 2), window=[(50, 3500), (300, 3000), (0, 4095)])
    items = project._training._tile_items("train", [c.id for c in project.categories])
    assert len(items) == 4 and all(it.display == project.display(rec) for it in items)
    ds = TileDataset(items, [c.id for c in project.categories], cache_dir=project.path / "cache")
    try:
        for i, it in enumerate(items):
            x, y, w, h = it.window
            trained = (ds[i][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            with project.open_image(rec) as viewer:
                viewed = viewer.read_region(x, y, w, h)
            with project.open_image(rec, cache_bytes=STREAM_CACHE_BYTES) as source:  # as prediction opens it
                predicted = read_window(source, it.window, max(w, h))
            assert np.array_equal(trained, viewed) and np.array_equal(predicted, viewed)
    finally:
        ds.close()
    assert (viewed[..., 0] == 218).all()  # the last tile, right of the middle: band 3 at 3000 of 50..3500


@pytest.mark.parametrize("writer", [_tiff12, _png12])
def test_a_new_setting_is_never_served_from_the_old_caches(
    project: dbn.Project, tmp_path: Path, writer: Any
) -> None:
    rec = project.add_image(writer(tmp_path / ("x.tif" if writer is _tiff12 else "x.png")))
    with project.open_image(rec) as src:
        before = src.read_region(0, 0, 64, 64)  # now in the shared LRU (and cache/ for the PNG)
    project.set_display(rec, window=(1000, 2000))
    with project.open_image(rec) as src:
        after = src.read_region(0, 0, 64, 64)
        overview = src.overview(128)
    assert not np.array_equal(before, after)
    assert np.array_equal(after[..., 0], windowed(twelve_bit()[:64, :64], 1000, 2000))
    assert spread(overview) > 100
    project.set_display(rec, window="auto")
    with project.open_image(rec) as src:
        assert np.array_equal(src.read_region(0, 0, 64, 64), before)


def test_8_bit_images_read_as_before(project: dbn.Project, tmp_path: Path) -> None:
    arr = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    rec = project.add_image(tmp_path / "rgb.png")
    assert project.display(rec) == Display()
    with project.open_image(rec) as src, Image.open(rec.path) as im:
        assert np.array_equal(src.read_region(0, 0, W, H), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize(
    ("bands", "window", "problem"),
    [
        ((4,), None, "band 4 does not exist"),
        ((0, 1, 7), None, "band 7 does not exist"),
        (None, (100, 100), "lo < hi"),
        (None, (300, 20), "lo < hi"),
        (None, (float("nan"), 1000), "finite"),
        (None, (0, float("inf")), "finite"),
        ((0, 1), None, "1 band"),
        ((0, 1, 2), [(0, 1), (0, 2)], "2 windows for 3"),
    ],
)
def test_bad_settings_change_nothing(
    project: dbn.Project, tmp_path: Path, bands: Any, window: Any, problem: str
) -> None:
    _four(tmp_path / "four.tif")
    rec = project.set_display(project.add_image(tmp_path / "four.tif"), bands=(3, 2, 1))
    before = project.display(rec)
    seen = _events(project)
    with pytest.raises(DisplayError, match=problem) as info:
        project.set_display(rec, bands=bands, window=window)
    assert "four.tif" in str(info.value) and isinstance(info.value, DeepBlockError)
    assert project.image(rec).display == rec.display and project.display(rec) == before and seen == []


def test_a_schema_4_project_opens_and_migrates(tmp_path: Path) -> None:
    from deepblock_nb.store.database import _statements
    from deepblock_nb.store.schema import MIGRATIONS, SCHEMA_VERSION

    folder = tmp_path / "old"
    (folder / "images").mkdir(parents=True)
    _tiff12(folder / "images" / "x.tif")
    cx = sqlite3.connect(folder / "project.db")
    for sql in MIGRATIONS[:4]:  # the path every schema-4 project was built by
        for statement in _statements(sql):
            cx.execute(statement)
    cx.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '4')")
    cx.execute(
        "INSERT INTO images(id, name, path, copied, hash, size, width, height, format, split, added, reviewed) "
        f"VALUES (1, 'x.tif', 'images/x.tif', 1, 'h', 1, {W}, {H}, 'tiff', 'train', 0, 5.0)"
    )
    cx.execute("INSERT INTO reviewed_tiles(image_id, x, y, w, h, reviewed) VALUES (1, 0, 0, 8, 8, 1.0)")
    cx.commit()
    cx.close()

    project = dbn.Project.open(folder)
    try:
        assert SCHEMA_VERSION == len(MIGRATIONS) and project.schema_version == SCHEMA_VERSION
        rec = project.image("x.tif")
        assert rec.reviewed and project.reviewed_tiles(rec) == [(0, 0, 8, 8)]  # schema 3 and 4 kept
        assert rec.display == DisplaySetting()  # NULL: auto
        with project.open_image(rec) as src:
            assert spread(src.overview(256)) > 100
        project.set_display(rec, window=(0, 4095))
    finally:
        project.close()
    again = dbn.Project.open(folder)
    try:
        assert again.image("x.tif").display == DisplaySetting(None, ((0.0, 4095.0),))
    finally:
        again.close()
