"""Tiled prediction on a generated 6000 x 6000 image with a detector that reads pixels."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.errors import ImageReadError
from deepblock_nb.io.images import open_image
from deepblock_nb.ml.predict import (
    PredictionStopped,
    auto_windows,
    plan_tiles,
    predict_image,
    run_tiles,
    widen_windows,
)
from tests.ml.rect_scene import StubModel, best_iou, make_scene, match, write_tiff

SIZE = 6000


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Detections]:
    """A tiled TIFF of 6000 x 6000 with about 1100 objects, many across the 500 px seams."""
    rgb, truth = make_scene(SIZE, SIZE, 500, np.random.default_rng(7), big=12)
    path = write_tiff(tmp_path_factory.mktemp("scene") / "scene.tif", rgb)
    return path, truth


def _check_found_once(truth: Detections, pred: Detections) -> None:
    hits = match(truth, pred)
    assert (hits == 0).sum() == 0, f"{(hits == 0).sum()} objects missed"
    assert (hits > 1).sum() == 0, f"{(hits > 1).sum()} objects found twice"
    assert len(pred) == len(truth)  # nothing else: no split parts, no duplicates
    assert best_iou(truth, pred).min() > 0.99


def _seam_objects(truth: Detections, tile: int) -> np.ndarray:
    x1, y1, x2, y2 = truth.xyxy.T
    return (np.floor(x1 / tile) != np.floor((x2 - 1) / tile)) | (
        np.floor(y1 / tile) != np.floor((y2 - 1) / tile)
    )


@pytest.mark.parametrize(("overlap", "accurate"), [(0.0, False), (0.1, False), (0.0, True)])
def test_every_object_found_once_across_seams(
    scene: tuple[Path, Detections], overlap: float, accurate: bool
) -> None:
    path, truth = scene
    assert _seam_objects(truth, 500).sum() > 300  # the scene really tests the seams
    model = StubModel()
    windows = tile_windows((SIZE, SIZE), 12, 12, overlap)
    with open_image(path) as src:
        t0 = time.perf_counter()
        pred = predict_image(model, src, windows, batch_size=8, accurate=accurate)
        seconds = time.perf_counter() - t0
    _check_found_once(truth, pred)
    # classes and scores come through, boxes in image pixels
    order = np.lexsort(truth.xyxy.T[::-1])
    got = np.lexsort(pred.xyxy.T[::-1])
    assert np.array_equal(pred.xyxy[got], truth.xyxy[order])
    assert np.array_equal(pred.class_id[got], truth.class_id[order])
    assert pred.confidence is not None and truth.confidence is not None
    assert np.allclose(pred.confidence[got], truth.confidence[order], atol=1e-6)
    print(f"6000x6000, overlap {overlap}, accurate {accurate}: {seconds:.2f} s")


def test_automatic_grid_and_bounded_batches(scene: tuple[Path, Detections]) -> None:
    path, truth = scene
    model = StubModel(tile_size=700)
    with open_image(path) as src:
        pred = predict_image(model, src, None, batch_size=5)
    _check_found_once(truth, pred)
    calls, pixels = model.model.calls, model.model.pixels
    assert max(calls) <= 5
    # the model never saw more than one batch of tiles of at most the input size
    assert max(pixels) <= 5 * 700 * 700
    # one call per tile of the plan: cores small enough that core and context fit 700 px
    # (the old grid had 700 px tiles without context)
    assert sum(calls) == len(plan_tiles((SIZE, SIZE), model))


@pytest.mark.parametrize("prefetch", [0, 2])  # read in the calling thread / a reader thread
def test_progress_and_stop_within_one_batch(scene: tuple[Path, Detections], prefetch: int) -> None:
    path, _ = scene
    model = StubModel()
    windows = tile_windows((SIZE, SIZE), 12, 12)
    seen: list[tuple[int, int]] = []
    with open_image(path) as src:
        det, tiles = run_tiles(
            model,
            src,
            windows[:20],
            batch_size=6,
            prefetch=prefetch,
            on_progress=lambda d, t: seen.append((d, t)),
        )
        assert seen == [(6, 20), (12, 20), (18, 20), (20, 20)]
        assert len(det) == len(tiles) and set(tiles.tolist()) <= set(range(20))
        calls = len(model.model.calls)
        done: list[int] = []
        with pytest.raises(PredictionStopped):
            predict_image(
                model,
                src,
                windows,
                batch_size=4,
                prefetch=prefetch,
                should_stop=lambda: len(done) >= 2,
                on_progress=lambda d, t: done.append(d),
            )
    assert done == [4, 8]
    assert len(model.model.calls) - calls == 2  # stopped before the next batch
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "deepblock-tile-reader"]


class _FailingSource:
    """A real image source that loses its file half way (a disk error, a truncated file)."""

    def __init__(self, path: Path, fail_at: int) -> None:
        self._src = open_image(path)
        self.width, self.height = self._src.width, self._src.height
        self.reads = 0
        self._fail_at = fail_at

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        self.reads += 1
        if self.reads > self._fail_at:
            raise ImageReadError(f"scene.tif: cannot read the tile at x={x} y={y}", "scene.tif")
        return self._src.read_region(x, y, w, h, level)

    def overview(self, max_side: int) -> np.ndarray:
        return self._src.overview(max_side)


@pytest.mark.parametrize("prefetch", [0, 1])
def test_read_error_reaches_the_caller(scene: tuple[Path, Detections], prefetch: int) -> None:
    path, _ = scene
    src = _FailingSource(path, fail_at=10)
    with pytest.raises(ImageReadError, match="scene.tif"):
        predict_image(StubModel(), src, tile_windows((SIZE, SIZE), 12, 12), batch_size=4, prefetch=prefetch)
    assert src.reads <= 10 + 4 * 3  # the reader stopped soon after
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "deepblock-tile-reader"]


def test_score_floor(scene: tuple[Path, Detections]) -> None:
    path, truth = scene
    with open_image(path) as src:
        pred = predict_image(StubModel(), src, tile_windows((SIZE, SIZE), 12, 12), score_floor=0.5)
    assert truth.confidence is not None and pred.confidence is not None
    assert pred.confidence.min() >= 0.5
    assert len(pred) == (truth.confidence >= 0.5 - 1e-9).sum()


# the context margin is now in pixels (it was a fraction of the tile, ACCURATE_OVERLAP)
@pytest.mark.parametrize(
    ("image_wh", "tile", "margin"),
    [
        ((1, 1), 500, 0),
        ((6000, 6000), 500, 0),
        ((1000, 333), 512, 77),
        ((5, 900), 64, 16),
        ((700, 90), 500, 63),
    ],
)
def test_auto_windows_partition_the_image_and_fit_the_input_with_their_margin(
    image_wh: tuple[int, int], tile: int, margin: int
) -> None:
    cores = auto_windows(image_wh, tile, margin)
    win = widen_windows(cores, image_wh, margin)
    assert win[:, 2:].max() <= tile  # core and context stay within the model's input size
    count = np.zeros(image_wh[::-1], np.int64)
    for x, y, w, h in cores:
        count[y : y + h, x : x + w] += 1
    assert (count == 1).all()  # the cores partition the image
    if max(image_wh) <= tile:
        assert len(cores) == 1  # no seams where one tile holds the image


def test_widen_windows() -> None:
    win = widen_windows([[0, 0, 100, 100], [100, 0, 100, 100]], (200, 100), 15)
    assert win.tolist() == [[0, 0, 115, 100], [85, 0, 115, 100]]
    assert widen_windows(np.zeros((0, 4)), (10, 10), 10).shape == (0, 4)


class _CountingSource:
    """A real image source that records the largest window read."""

    def __init__(self, path: Path) -> None:
        self._src = open_image(path)
        self.width, self.height, self.levels = self._src.width, self._src.height, self._src.levels
        self.largest = 0
        self.level_reads: list[int] = []

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        self.largest = max(self.largest, w * h)
        self.level_reads.append(level)
        return self._src.read_region(x, y, w, h, level)

    def overview(self, max_side: int) -> np.ndarray:
        return self._src.overview(max_side)


def test_huge_grid_tiles_are_read_reduced_in_bands(scene: tuple[Path, Detections]) -> None:
    path, truth = scene
    src = _CountingSource(path)
    model = StubModel()  # tile size 500: windows over 2048 px are reduced
    pred = predict_image(model, src, tile_windows((SIZE, SIZE), 2, 2), batch_size=2)
    assert max(model.model.pixels) <= 2 * 2048 * 2048
    assert src.largest * 3 <= 32 * 2**20 + 3 * 3000  # one band, never a whole 3000 x 3000 window
    # boxes are mapped back from the reduced tiles: big objects land where they are
    big = truth[(truth.xyxy[:, 2] - truth.xyxy[:, 0]) > 150]
    assert len(big) >= 5
    assert best_iou(big, pred).min() > 0.95


def test_read_window_uses_a_pyramid_level(tmp_path: Path) -> None:
    import tifffile

    from deepblock_nb.ml.predict import read_window

    rng = np.random.default_rng(0)
    full = np.kron(rng.integers(0, 256, (75, 100, 3), dtype=np.uint8), np.ones((40, 40, 1), np.uint8))
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(full, tile=(256, 256), photometric="rgb", subifds=1)
        tif.write(full[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    src = _CountingSource(path)
    if len(src.levels) < 2:
        pytest.skip("this reader does not expose the TIFF's SubIFD pyramid")
    out = read_window(src, (800, 400, 3200, 2400), 1200)  # 2.67x smaller: level 1 (2x) is used
    assert out.shape == (900, 1200, 3)
    assert set(src.level_reads) == {1}
    from PIL import Image

    window = Image.fromarray(full[400:2800, 800:4000])
    expected = np.asarray(window.resize((1200, 900), Image.Resampling.BOX)).astype(int)
    assert np.median(np.abs(out.astype(int) - expected)) < 2
