"""Box conversions, areas, overlaps, clipping, NMS and merging (numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.core.boxes import (
    box_area,
    box_ioa,
    box_ios,
    box_iou,
    clip_boxes,
    valid_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from deepblock_nb.errors import ArgumentError, ArgumentTypeError

EMPTY = np.zeros((0, 4))


@pytest.mark.parametrize(
    ("xywh", "xyxy"),
    [
        (EMPTY, EMPTY),
        ([[0, 0, 1, 1]], [[0, 0, 1, 1]]),
        ([[10, 20, 5, 7], [0.5, 1.5, 2, 3]], [[10, 20, 15, 27], [0.5, 1.5, 2.5, 4.5]]),
    ],
)
def test_xywh_round_trip(xywh, xyxy) -> None:
    np.testing.assert_allclose(xywh_to_xyxy(xywh), np.reshape(xyxy, (-1, 4)))
    np.testing.assert_allclose(xyxy_to_xywh(xyxy), np.reshape(xywh, (-1, 4)))


def test_shape_errors() -> None:
    with pytest.raises(ArgumentError, match=r"\(N, 4\)"):
        box_iou(np.zeros((2, 3)), EMPTY)
    with pytest.raises(ArgumentError, match=r"\(N, 4\)"):
        xywh_to_xyxy([1, 2, 3, 4])


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: box_area([[0, 0, 1]]), ArgumentError),  # a row of 3
        (lambda: box_area([[0, 0, 1, 1], [0, 0, 1]]), ArgumentError),  # ragged rows
        (lambda: box_area([["a", 0, 1, 1]]), ArgumentError),  # text
        (lambda: box_area([[{}, 0, 1, 1]]), ArgumentTypeError),  # not a number at all
        (lambda: clip_boxes([[0, 0, 1, 1]], (10,)), ArgumentError),  # image_wh of one number
        (lambda: clip_boxes([[0, 0, 1, 1]], None), ArgumentError),  # no image_wh
        (lambda: valid_boxes([[0, 0, 1, 1]], ("w", "h")), ArgumentError),
    ],
)
def test_bad_arguments_raise_our_errors(call, error) -> None:
    """Bad input is a DeepBlockError, still a ValueError / TypeError for older callers."""
    with pytest.raises(error):
        call()


def test_area_and_validity() -> None:
    b = np.array([[0, 0, 10, 5], [3, 3, 3, 8], [5, 5, 1, 1], [0, 0, np.nan, 1], [-1, 0, 2, 2]], float)
    np.testing.assert_allclose(box_area(b)[:3], [50, 0, 0])
    np.testing.assert_array_equal(valid_boxes(b), [True, False, False, False, True])
    np.testing.assert_array_equal(valid_boxes(b, image_wh=(10, 10)), [True, False, False, False, False])
    assert valid_boxes(EMPTY).shape == (0,)


def test_iou_known_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 1, 1]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [10, 0, 20, 10]], float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0, 0.0])  # touching boxes: 0
    np.testing.assert_allclose(iou[1], [0.0, 0.01, 0.0, 0.0])
    np.testing.assert_allclose(box_ios(a, b)[1], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(box_ioa(b, a)[:, 1], [0.0, 0.01, 0.0, 0.0])


def test_overlaps_with_empty_and_degenerate_inputs() -> None:
    assert box_iou(EMPTY, EMPTY).shape == (0, 0)
    assert box_iou(np.ones((3, 4)) * [0, 0, 1, 1], EMPTY).shape == (3, 0)
    zero = np.array([[1, 1, 1, 1]], float)
    assert box_iou(zero, zero)[0, 0] == 0.0 and box_ios(zero, zero)[0, 0] == 0.0


def test_clip_boxes_does_not_modify_input() -> None:
    b = np.array([[-5, -5, 5, 5], [8, 8, 20, 20]], float)
    out = clip_boxes(b, (10, 9))
    np.testing.assert_allclose(out, [[0, 0, 5, 5], [8, 8, 10, 9]])
    assert b[0, 0] == -5
    assert clip_boxes(EMPTY, (1, 1)).shape == (0, 4)
