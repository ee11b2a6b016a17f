"""Objects cut by tile seams: context margins and the centre rule (``ml.predict``, ``ml.merge``).

The detector here sees only whole objects: it reports a bright square only when
the square lies wholly inside its input, not touching the input's border. Without
context such a detector cannot find an object that a seam cuts; with the margin
it finds every object once, in its centre's tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.ml.checkpoints import LoadedModel
from deepblock_nb.ml.merge import merge_tiles
from deepblock_nb.ml.predict import context_margin, plan_tiles, predict_image, run_tiles, tile_side
from tests.ml.rect_scene import best_iou, match

SIDE = 768  # a 3 x 3 grid of 256 px tiles
TILE = 256
BOX_SIZE = 50.0  # the largest objects of the scene
BACKGROUND = 0.1


class WholeSquareDetector(torch.nn.Module):
    """Bright squares by thresholding, reported only when wholly inside the input.

    torchvision's detection contract in eval mode: a list of ``(3, H, W)`` float
    tensors in [0, 1] in, a list of dicts of ``boxes`` (xyxy input pixels),
    ``labels`` and ``scores`` out. A square is an axis-aligned block of bright
    green (> 0.5); its class is 1 when red exceeds blue, else 2; its score is its
    green value. A square touching the input's border is not reported at all.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[tuple[int, int]] = []  # (w, h) of every input seen

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self._detect(t) for t in images]

    def _detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb = image.detach().cpu().numpy()  # (3, H, W)
        _, h, w = rgb.shape
        self.inputs.append((w, h))
        bright = rgb[1] > 0.5  # [H,W]
        up = np.zeros_like(bright)
        up[1:] = bright[:-1]
        left = np.zeros_like(bright)
        left[:, 1:] = bright[:, :-1]
        boxes, labels, scores = [], [], []
        for y, x in zip(*np.nonzero(bright & ~up & ~left)):  # top-left corners
            x2 = x + int(np.argmin(np.r_[bright[y, x:], False]))
            y2 = y + int(np.argmin(np.r_[bright[y:, x], False]))
            if x == 0 or y == 0 or x2 == w or y2 == h:
                continue  # touches the border: not a whole object
            r, g, b = rgb[:, y, x]
            boxes.append([x, y, x2, y2])
            labels.append(1 if r > b else 2)
            scores.append(g)
        return {
            "boxes": torch.tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32),
        }


class ArraySource:
    """An in-memory image (``(H, W, 3)`` uint8) as prediction reads images."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.height, self.width = rgb.shape[:2]

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        return self.rgb[y : y + h, x : x + w]

    def overview(self, max_side: int) -> np.ndarray:
        step = -(-max(self.width, self.height) // max_side)
        return np.ascontiguousarray(self.rgb[::step, ::step])


def _model(box_size: float | None = BOX_SIZE) -> LoadedModel:
    return LoadedModel(WholeSquareDetector(), [1, 2], TILE, "custom", torch.device("cpu"), box_size=box_size)


def _paint(xyxy: list[tuple[int, int, int, int]], side: int = SIDE) -> tuple[np.ndarray, Detections]:
    """A dark image with squares of distinct brightness, and their truth boxes."""
    rgb = np.full((side, side, 3), round(BACKGROUND * 255), np.uint8)
    n = len(xyxy)
    green = np.linspace(140, 250, max(n, 1)).round().astype(np.uint8)[:n]
    cls = np.where(np.arange(n) % 2 == 0, 1, 2)
    for (x1, y1, x2, y2), g, c in zip(xyxy, green, cls):
        rgb[y1:y2, x1:x2] = (200, g, 100) if c == 1 else (100, g, 200)
    truth = Detections(np.asarray(xyxy, np.float64).reshape(-1, 4), cls, green / 255.0)
    return rgb, truth


def _seam_scene() -> tuple[np.ndarray, Detections, np.ndarray]:
    """Squares across the seams of a 3 x 3 grid, on its crossings and inside its tiles.

    Returns the image, the truth and ``(N,)`` whether each object is cut by a seam.
    """
    boxes: list[tuple[int, int, int, int]] = []
    for s in (256, 512):
        for k, t in enumerate((60, 150, 330, 420, 600, 690)):
            size = (20, 34, 50, 27, 44, 38)[k]
            a = s - size // 2 + (k % 3 - 1) * (size // 3)  # left, centred, right of the seam
            boxes.append((a, t, a + size, t + size))  # across a vertical seam
            boxes.append((t, a, t + size, a + size))  # across a horizontal seam
    for cx, cy in ((256, 256), (512, 256), (256, 512), (512, 512)):
        boxes.append((cx - 20, cy - 30, cx + 20, cy + 10))  # on a crossing of four tiles
    boxes.append((236, 190, 276, 220))  # centre exactly on the seam x = 256: the right-hand core's
    boxes.append((259, 560, 289, 590))  # 3 px right of a seam: whole in one core
    boxes.append((470, 740, 510, 760))  # 2 px left of a seam
    for x, y in ((100, 100), (380, 100), (620, 380), (100, 620), (380, 380)):
        boxes.append((x, y, x + 45, y + 45))  # inside tiles
    rgb, truth = _paint(boxes)
    x1, y1, x2, y2 = truth.xyxy.T
    cut = (np.floor(x1 / TILE) != np.floor((x2 - 1) / TILE)) | (
        np.floor(y1 / TILE) != np.floor((y2 - 1) / TILE)
    )
    return rgb, truth, cut


def _assert_found_once(truth: Detections, pred: Detections) -> None:
    hits = match(truth, pred)
    assert (hits == 0).sum() == 0, f"{(hits == 0).sum()} objects missed: {truth.xyxy[hits == 0].tolist()}"
    assert (hits > 1).sum() == 0, f"{(hits > 1).sum()} objects found twice"
    assert len(pred) == len(truth)
    assert best_iou(truth, pred).min() > 0.999


def test_the_scene_needs_context() -> None:
    """Without context the detector misses every cut object: the scene tests the seams."""
    rgb, truth, cut = _seam_scene()
    assert cut.sum() >= 28 and (~cut).sum() >= 7
    model = _model()
    cores = tile_windows((SIDE, SIDE), 3, 3)
    det, tiles = run_tiles(model, ArraySource(rgb), cores)
    pred = merge_tiles(det, tiles, cores)
    hits = match(truth, pred)
    assert (hits[cut] == 0).all() and (hits[~cut] == 1).all()


@pytest.mark.parametrize("accurate", [False, True])
@pytest.mark.parametrize("box_size", [BOX_SIZE, None])  # margin from the boxes, or from the input size
def test_a_seam_straddling_object_in_a_no_overlap_grid_is_found_once(
    accurate: bool, box_size: float | None
) -> None:
    rgb, truth, _ = _seam_scene()
    detector = WholeSquareDetector()
    model = LoadedModel(detector, [1, 2], TILE, "custom", torch.device("cpu"), box_size=box_size)
    grid = tile_windows((SIDE, SIDE), 3, 3)  # the user's grid, no overlap
    pred = predict_image(model, ArraySource(rgb), grid, accurate=accurate)
    _assert_found_once(truth, pred)
    assert np.array_equal(
        pred.class_id[np.lexsort(pred.xyxy.T[::-1])], truth.class_id[np.lexsort(truth.xyxy.T[::-1])]
    )
    assert pred.confidence is not None and truth.confidence is not None
    assert np.allclose(np.sort(pred.confidence), np.sort(truth.confidence))  # both passes agree
    # the tiles were read with context: 9 windows wider than their 256 px cores
    n_passes = 2 if accurate else 1
    seen = detector.inputs
    assert len(seen) == 9 * n_passes + (1 if accurate and box_size is None else 0)
    assert max(w for w, _ in seen) > TILE


@pytest.mark.parametrize("accurate", [False, True])
@pytest.mark.parametrize(("rows", "cols", "overlap"), [(3, 3, 0.2), (4, 5, 0.0), (2, 2, 0.1)])
def test_grids_that_do_not_match_the_scene_and_grids_with_overlap(
    accurate: bool, rows: int, cols: int, overlap: float
) -> None:
    rgb, truth, _ = _seam_scene()
    pred = predict_image(
        _model(), ArraySource(rgb), tile_windows((SIDE, SIDE), rows, cols, overlap), accurate=accurate
    )
    _assert_found_once(truth, pred)


@pytest.mark.parametrize("accurate", [False, True])
def test_automatic_grid(accurate: bool) -> None:
    rgb, truth, _ = _seam_scene()
    model = _model()
    plan = plan_tiles((SIDE, SIDE), model, None, accurate=accurate)
    assert len(plan) > 1 and plan.windows[:, 2:].max() <= TILE  # core and context fit the input
    pred = predict_image(model, ArraySource(rgb), None, accurate=accurate)
    _assert_found_once(truth, pred)


@pytest.mark.parametrize("accurate", [False, True])
def test_empty_image_and_one_tile(accurate: bool) -> None:
    empty = np.full((SIDE, SIDE, 3), round(BACKGROUND * 255), np.uint8)
    pred = predict_image(_model(), ArraySource(empty), tile_windows((SIDE, SIDE), 3, 3), accurate=accurate)
    assert len(pred) == 0 and pred.confidence is not None
    rgb, truth, _ = _seam_scene()
    pred = predict_image(_model(), ArraySource(rgb), tile_windows((SIDE, SIDE), 1, 1), accurate=accurate)
    _assert_found_once(truth, pred)
    small = np.full((1, 1, 3), 255, np.uint8)  # a 1-pixel image: one tile, no margin to take
    assert len(predict_image(_model(), ArraySource(small), None, accurate=accurate)) == 0


def test_margin_rule() -> None:
    assert context_margin(_model(50.0)) == 30  # 0.6 of the labelled box size
    assert context_margin(_model(50.0), accurate=True) == 50
    assert context_margin(_model(None)) == 32  # 1/8 of the input size without one
    assert context_margin(_model(500.0), core_side=256) == 128  # at most half a core
    plan = plan_tiles((SIDE, SIDE), _model(), tile_windows((SIDE, SIDE), 3, 3, 0.2))
    # the user's overlap (51 px) is wider than the margin (30 px): it is kept; cores partition
    assert plan.margin == 30 and plan.windows[4].tolist() == [205, 205, 358, 358]
    assert plan.cores.tolist() == tile_windows((SIDE, SIDE), 3, 3).tolist()
    # a model that magnifies its inputs: its input side in image pixels
    assert tile_side(_Magnifying()) == 256 and context_margin(_Magnifying()) == 32


@dataclass
class _Magnifying:
    """A model whose 512-px input shows 256 image pixels (``input_scale`` 2)."""

    model: torch.nn.Module = field(default_factory=WholeSquareDetector)
    category_ids: list[int] = field(default_factory=lambda: [1, 2])
    tile_size: int = 512
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    input_scale: float = 2.0


def test_objects_larger_than_the_margin() -> None:
    """Documented behaviour of objects larger than twice the margin (30 px here).

    Such an object is found when its centre's tile holds it whole (a 150 px object
    inside a 256 px tile). Across a seam no window holds it whole, so a detector that
    reports only whole objects cannot find it in tiles (a detector that reports the
    parts it sees is joined across tiles: tests/ml/test_predict.py). An object
    larger than a tile comes from "More accurate"'s full-image pass, which runs when
    the model may know such objects (its box size is unknown or at least a tile).
    """
    inside, across, huge = (60, 60, 210, 210), (437, 60, 587, 210), (297, 387, 657, 717)
    rgb, truth = _paint([inside, across, huge])
    grid = tile_windows((SIDE, SIDE), 3, 3)
    plain = predict_image(_model(), ArraySource(rgb), grid)
    assert match(truth, plain).tolist() == [1, 0, 0] and len(plain) == 1
    accurate = predict_image(_model(None), ArraySource(rgb), grid, accurate=True)
    assert match(truth, accurate).tolist() == [1, 0, 1] and len(accurate) == 2
    # a model that knows its objects are smaller than a tile skips the full-image pass
    assert len(predict_image(_model(), ArraySource(rgb), grid, accurate=True)) == 1


def test_windows_are_read_at_least_as_large_as_the_model_input() -> None:
    """A window smaller than the model's input (small cores, or a grid's border tiles)
    is grown about its centre with real context, inside the image; the cores, and so
    the keep rule, stay as they were."""
    from deepblock_nb.ml.predict import at_least

    model = _Magnifying()  # input side 256 image pixels
    for wh, rows, cols in (((600, 420), 3, 4), ((1000, 700), 4, 5), ((300, 200), 2, 2)):
        grid = tile_windows(wh, rows, cols)
        plan = plan_tiles(wh, model, grid)
        w = plan.windows
        assert plan.cores.tolist() == grid.tolist()
        assert (w[:, 2:] >= np.minimum(256, np.array(wh))).all()  # the input side, or the whole image
        assert (w[:, :2] >= 0).all() and (w[:, :2] + w[:, 2:] <= np.array(wh)).all()
        assert (w[:, :2] <= plan.cores[:, :2]).all()  # each window still holds its core
        assert (w[:, :2] + w[:, 2:] >= plan.cores[:, :2] + plan.cores[:, 2:]).all()
    image = (1000, 1000)
    assert at_least([[400, 400, 50, 40]], image, 256).tolist() == [[297, 292, 256, 256]]  # about the centre
    assert at_least([[100, 100, 50, 40]], image, 256).tolist() == [[0, 0, 256, 256]]  # shifted inside
    assert at_least([[950, 960, 50, 40]], image, 256).tolist() == [[744, 744, 256, 256]]
    assert at_least([[10, 10, 300, 300]], image, 256).tolist() == [[10, 10, 300, 300]]  # large enough
    assert at_least([[0, 0, 100, 60]], (200, 100), 256).tolist() == [[0, 0, 200, 100]]  # the whole image
