"""The Labeler's read-only predictions layer: drawn dashed at the project's threshold,
following prediction and threshold events, never selected or edited."""

from __future__ import annotations

from typing import Any

import numpy as np

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler
from deepblock_nb.widgets._predlayer import PREDICTION_DASH
from deepblock_nb.widgets._viewport import convert
from tests.widgets.conftest import mouse, seed_predictions, settled, wait_until


def test_predictions_layer_draws_dashed_at_the_threshold_and_cannot_be_selected(
    wproject: dbn.Project,
) -> None:
    lab = Labeler(wproject, split="train")
    rec = lab.image
    before = wproject.annotations(rec)
    # a corner of the image no annotation covers
    free = np.array([[rec.width - 60, rec.height - 60, rec.width - 10, rec.height - 10]], float)
    assert not len(before) or not (
        (before.xyxy[:, 0] < free[0, 2]) & (before.xyxy[:, 2] > free[0, 0])
        & (before.xyxy[:, 1] < free[0, 3]) & (before.xyxy[:, 3] > free[0, 1])
    ).any()  # fmt: skip
    boxes = np.concatenate([free, [[5, 5, 40, 40], [50, 5, 90, 45]]])
    cats = [c.id for c in wproject.categories]
    wproject.threshold = 0.5
    seed_predictions(wproject, rec, boxes, [cats[0], cats[1 % len(cats)], cats[0]], [0.9, 0.3, 0.6])
    settled()
    assert lab.predictions_layer.shown == 0  # off by default
    dashes: list[list[float]] = []
    layer: Any = lab.view.canvas[1]
    original = layer.set_line_dash
    layer.set_line_dash = lambda d: (dashes.append(list(d)), original(d))[1]
    lab.predictions_layer.checkbox.value = True
    assert lab.predictions_layer.shown == 2  # 0.9 and 0.6 at threshold 0.5
    assert list(PREDICTION_DASH) in dashes and dashes[-1] == []  # dashed, then solid again
    wproject.threshold = 0.2  # from a cell, or the Predict panel's slider
    assert wait_until(lambda: lab.predictions_layer.shown == 3)
    seed_predictions(wproject, rec, boxes[:1], [cats[0]], [0.95])  # a new prediction run
    assert wait_until(lambda: lab.predictions_layer.shown == 1)
    # a click on the predicted box in select mode selects nothing, edits nothing
    lab.mode.value = "select"
    cx, cy = convert(lab.view.viewport, free[0, :2] + 25, "view")
    mouse(lab.view.canvas, "mouse_down", float(cx), float(cy))
    mouse(lab.view.canvas, "mouse_up", float(cx), float(cy))
    assert lab.selected is None
    after = wproject.annotations(rec)
    assert after.ids.tolist() == before.ids.tolist()
    np.testing.assert_array_equal(after.xyxy, before.xyxy)
    lab.predictions_layer.checkbox.value = False
    assert lab.predictions_layer.shown == 0
    lab.close()
