"""Grid windows cover the image exactly; boxes clip to tiles and shift back."""

from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.core.tiling import boxes_to_image, clip_boxes_to_window, suggest_grid, tile_windows
from deepblock_nb.errors import ArgumentError, ArgumentTypeError, DeepBlockError


def coverage(image_wh: tuple[int, int], windows: np.ndarray) -> np.ndarray:
    w, h = image_wh
    count = np.zeros((h, w), np.int64)
    for x, y, ww, hh in windows:
        count[y : y + hh, x : x + ww] += 1
    return count


@pytest.mark.parametrize(
    ("image_wh", "rows", "cols"),
    [((1, 1), 1, 1), ((1, 7), 7, 1), ((10, 10), 3, 3), ((37, 23), 4, 5), ((100, 30), 1, 1), ((5, 5), 5, 5),
     ((1001, 999), 2, 3)],
)  # fmt: skip
def test_windows_partition_image_without_overlap(image_wh, rows, cols) -> None:
    win = tile_windows(image_wh, rows, cols)
    assert win.shape == (rows * cols, 4) and win.dtype == np.int64
    assert (win[:, 2:] >= 1).all()
    np.testing.assert_array_equal(coverage(image_wh, win), 1)
    # row-major: y non-decreasing, x increasing within a row
    grid = win.reshape(rows, cols, 4)
    assert (np.diff(grid[..., 0], axis=1) > 0).all() and (np.diff(grid[..., 1], axis=0) > 0).all()
    # tile sizes differ by at most one pixel
    assert np.ptp(win[:, 2]) <= 1 and np.ptp(win[:, 3]) <= 1


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.25, 0.49])
@pytest.mark.parametrize(("image_wh", "rows", "cols"), [((100, 60), 3, 4), ((1, 1), 1, 1), ((37, 23), 2, 2)])
def test_overlapping_windows_stay_inside_and_cover(image_wh, rows, cols, overlap) -> None:
    w, h = image_wh
    win = tile_windows(image_wh, rows, cols, overlap)
    assert (win[:, 0] >= 0).all() and (win[:, 1] >= 0).all()
    assert (win[:, 0] + win[:, 2] <= w).all() and (win[:, 1] + win[:, 3] <= h).all()
    assert (coverage(image_wh, win) >= 1).all()
    base = tile_windows(image_wh, rows, cols)
    assert (win[:, 2] >= base[:, 2]).all() and (win[:, 3] >= base[:, 3]).all()


def test_overlap_is_a_fraction_of_a_tile() -> None:
    win = tile_windows((100, 100), 1, 2, overlap=0.2)  # tiles of 50 px grow by 10 px
    np.testing.assert_array_equal(win, [[0, 0, 60, 100], [40, 0, 60, 100]])


@pytest.mark.parametrize(
    ("args", "match"),
    [(((10, 10), 0, 1), "rows and cols"), (((10, 10), 1, -2), "rows and cols"), (((10, 10), 1.5, 1), "rows and cols"),
     (((10, 10), 11, 1), "under 1 pixel"), (((10, 10), 1, 1, 0.5), "overlap"), (((10, 10), 1, 1, -0.1), "overlap"),
     (((0, 10), 1, 1), "at least 1"), (((10,), 1, 1), "width, height")],
)  # fmt: skip
def test_tile_windows_validates(args, match) -> None:
    with pytest.raises(ArgumentError, match=match):
        tile_windows(*args)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: tile_windows((10, 10), float("inf"), 1), ArgumentError),
        (lambda: tile_windows((10, 10), float("nan"), 1), ArgumentError),
        (lambda: tile_windows((10, 10), "2", 1), ArgumentTypeError),
        (lambda: tile_windows((10, 10), None, 1), ArgumentTypeError),
        (lambda: tile_windows((10, 10), 1, 1, "0.1"), ArgumentTypeError),
        (lambda: tile_windows((10, 10), 1, 1, float("nan")), ArgumentError),
        (lambda: tile_windows(10, 1, 1), ArgumentError),
        (lambda: tile_windows((10.5, 10), 1, 1), ArgumentError),
        (lambda: tile_windows(("10", 10), 1, 1), ArgumentTypeError),
        (lambda: suggest_grid((10, 10), float("inf")), ArgumentError),
        (lambda: suggest_grid((10, 10), None), ArgumentTypeError),
        (lambda: clip_boxes_to_window([[0, 0, 1, 1]], (0, 0, 10)), ArgumentError),
        (lambda: clip_boxes_to_window([[0, 0, 1, 1]], (0, 0, float("nan"), 10)), ArgumentError),
        (lambda: clip_boxes_to_window([[0, 0, 1, 1]], None), ArgumentError),
        (lambda: clip_boxes_to_window([["x", 0, 1, 1]], (0, 0, 10, 10)), ArgumentError),
        (lambda: clip_boxes_to_window([[0, 0, 1, 1]], (0, 0, 10, 10), "half"), ArgumentTypeError),
        (lambda: boxes_to_image([[0, 0, 1]], (0, 0, 10, 10)), ArgumentError),
    ],
)
def test_bad_arguments_raise_our_errors(call, error) -> None:
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, DeepBlockError)


@pytest.mark.parametrize(
    ("image_wh", "tile", "expected"),
    [((1, 1), 1000, (1, 1)), ((1000, 1000), 1000, (1, 1)), ((1001, 999), 1000, (1, 2)),
     ((30000, 20000), 1000, (20, 30)), ((50, 10), 7, (2, 8))],
)  # fmt: skip
def test_suggest_grid(image_wh, tile, expected) -> None:
    rows, cols = suggest_grid(image_wh, tile)
    assert (rows, cols) == expected
    win = tile_windows(image_wh, rows, cols)
    assert win[:, 2].max() <= tile and win[:, 3].max() <= tile
    with pytest.raises(ArgumentError):
        suggest_grid(image_wh, 0)


WINDOW = (100, 50, 100, 100)  # x 100..200, y 50..150


@pytest.mark.parametrize(
    ("box", "kept", "local"),
    [
        ([120, 60, 140, 80], True, [20, 10, 40, 30]),  # fully inside
        ([100, 50, 200, 150], True, [0, 0, 100, 100]),  # exactly the window
        ([90, 60, 110, 80], True, [0, 10, 10, 30]),  # half inside across the left border: kept at 0.5
        ([89, 60, 110, 80], False, None),  # under half inside
        ([190, 140, 230, 180], False, None),  # a quarter inside the corner
        ([200, 60, 220, 80], False, None),  # touches the right border only
        ([50, 0, 100, 50], False, None),  # touches the top-left corner only
        ([120, 60, 120, 80], False, None),  # zero area
        ([140, 80, 120, 60], False, None),  # inverted
    ],
)
def test_clip_boxes_on_tile_borders(box, kept, local) -> None:
    out, idx = clip_boxes_to_window(np.array([box], dtype=float), WINDOW)
    assert (len(idx) == 1) == kept
    if kept:
        np.testing.assert_allclose(out, [local])
        np.testing.assert_array_equal(idx, [0])
        np.testing.assert_allclose(
            boxes_to_image(out, WINDOW), [np.clip(box, [100, 50, 100, 50], [200, 150, 200, 150])]
        )


def test_clip_boxes_min_visible_and_index() -> None:
    boxes = np.array([[0, 0, 10, 10], [95, 60, 105, 70], [150, 100, 160, 110], [98, 60, 108, 70]], float)
    out, idx = clip_boxes_to_window(boxes, WINDOW, min_visible=0.2)
    np.testing.assert_array_equal(idx, [1, 2, 3])
    np.testing.assert_allclose(out[0], [0, 10, 5, 20])
    out, idx = clip_boxes_to_window(boxes, WINDOW, min_visible=1.0)
    np.testing.assert_array_equal(idx, [2])
    with pytest.raises(ArgumentError, match="min_visible"):
        clip_boxes_to_window(boxes, WINDOW, min_visible=0)


def test_empty_inputs() -> None:
    out, idx = clip_boxes_to_window(np.zeros((0, 4)), WINDOW)
    assert out.shape == (0, 4) and idx.shape == (0,) and idx.dtype == np.int64
    assert boxes_to_image(np.zeros((0, 4)), WINDOW).shape == (0, 4)
    out, idx = clip_boxes_to_window([], (0, 0, 1, 1))
    assert out.shape == (0, 4)


def test_one_pixel_image_and_window() -> None:
    win = tile_windows((1, 1), 1, 1, overlap=0.4)
    np.testing.assert_array_equal(win, [[0, 0, 1, 1]])
    out, idx = clip_boxes_to_window(np.array([[0, 0, 1, 1], [0.5, 0.5, 2, 2]]), tuple(win[0]))
    np.testing.assert_array_equal(idx, [0])
    np.testing.assert_allclose(out, [[0, 0, 1, 1]])


def test_boxes_round_trip_through_every_tile() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 90, (50, 2))
    boxes = np.hstack([xy, xy + rng.uniform(1, 10, (50, 2))])
    seen = np.zeros(50, int)
    for win in tile_windows((100, 100), 3, 3, overlap=0.2):
        local, idx = clip_boxes_to_window(boxes, tuple(win), min_visible=1.0)
        np.testing.assert_allclose(boxes_to_image(local, tuple(win)), boxes[idx])
        seen[idx] += 1
    # 20 % overlap of 33-px tiles is 7 px per side, so any box under 7 px fits whole in some tile
    small = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) < 7
    assert (seen[small] >= 1).all()


def test_inputs_not_modified() -> None:
    boxes = np.array([[90.0, 60, 110, 80]])
    copy = boxes.copy()
    clip_boxes_to_window(boxes, WINDOW)
    boxes_to_image(boxes, WINDOW)
    np.testing.assert_array_equal(boxes, copy)
