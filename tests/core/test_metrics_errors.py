"""errors(): false positives, missed boxes and confusions behind the report's counts."""

from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.metrics import CONFUSED, FALSE_POSITIVE, MISSED, EvaluationError, errors, evaluate

CATS = {1: "car", 2: "person"}


def _gt(boxes: list[list[float]], cls: list[int]) -> Detections:
    return Detections(np.asarray(boxes, float).reshape(-1, 4), np.asarray(cls, np.int64))


def _pred(boxes: list[list[float]], cls: list[int], score: list[float]) -> Detections:
    return Detections(
        np.asarray(boxes, float).reshape(-1, 4), np.asarray(cls, np.int64), np.asarray(score, float)
    )


def _rows(found):  # type: ignore[no-untyped-def]
    return [(r.image, r.kind, r.truth, r.predicted) for r in found.errors.itertuples()]


def test_each_kind_of_error() -> None:
    gt = [
        _gt([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 60, 60]], [1, 1, 2]),
        _gt([[0, 0, 50, 50]], [2]),
    ]
    pred = [
        _pred(
            [[0, 0, 10, 10], [100, 100, 110, 110], [20, 20, 30, 30], [40, 40, 60, 60]],
            [1, 1, 2, 2],
            [0.9, 0.7, 0.8, 0.6],
        ),
        _pred([[0, 0, 10, 10]], [2], [0.3]),  # below the threshold: not counted
    ]
    found = errors(gt, pred, threshold=0.5, categories=CATS)
    # the car at 20..30 is found by no car but by a person: a confusion; the car at 100 a false
    # positive; the person box of image 1 missed (its prediction scores 0.3)
    assert _rows(found) == [
        (0, CONFUSED, "car", "person"),
        (0, FALSE_POSITIVE, None, "car"),
        (1, MISSED, "person", None),
    ]
    rows = found.errors
    assert rows["score"].tolist()[:2] == [0.8, 0.7] and np.isnan(rows["score"].iloc[2])
    assert rows["iou"].iloc[0] == 1.0
    assert rows["truth_xyxy"].iloc[0] == pytest.approx((20, 20, 30, 30))
    assert rows["predicted_xyxy"].iloc[0] == pytest.approx((20, 20, 30, 30))
    assert rows["predicted_xyxy"].iloc[1] == pytest.approx((100, 100, 110, 110))
    assert rows["truth_xyxy"].iloc[1] is None and rows["predicted_xyxy"].iloc[2] is None
    assert rows["truth_xyxy"].iloc[2] == pytest.approx((0, 0, 50, 50)) and rows["area"].iloc[2] == 2500
    m = found.confusion
    assert list(m.index) == ["car", "person", "background"]
    assert list(m.columns) == ["car", "person", "missed"]
    assert m.to_numpy().tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]
    report = evaluate(gt, pred, threshold=0.5, categories=CATS)
    assert (found.tp, found.fp, found.fn) == (report.tp, report.fp, report.fn) == (2, 2, 2)


def test_a_box_its_own_category_found_makes_a_second_prediction_a_false_positive() -> None:
    gt = [_gt([[0, 0, 10, 10]], [1])]
    # the person overlaps the car fully, but the car was found: no confusion; the second car
    # prediction on the same box loses the one-to-one greedy match to the higher score
    pred = [_pred([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 10, 10]], [2, 1, 1], [0.95, 0.9, 0.8])]
    found = errors(gt, pred, threshold=0.5, categories=CATS)
    assert _rows(found) == [(0, FALSE_POSITIVE, None, "person"), (0, FALSE_POSITIVE, None, "car")]
    assert found.errors["score"].tolist() == [0.95, 0.8]
    assert found.confusion.loc["car", "car"] == 1 and found.confusion.loc["background"].sum() == 2


def test_confusions_are_one_to_one_by_score() -> None:
    gt = [_gt([[0, 0, 10, 10]], [1])]
    pred = [_pred([[0, 0, 10, 10], [0, 0, 10, 9]], [2, 2], [0.6, 0.9])]
    found = errors(gt, pred, threshold=0.5, categories=CATS)
    # the higher-scoring person takes the missed car, the other is a false positive
    assert _rows(found) == [(0, CONFUSED, "car", "person"), (0, FALSE_POSITIVE, None, "person")]
    assert found.errors["score"].tolist() == [0.9, 0.6]
    assert found.errors["iou"].iloc[0] == pytest.approx(0.9)


def test_an_overlap_under_the_iou_threshold_is_no_confusion() -> None:
    gt = [_gt([[0, 0, 10, 10]], [1])]
    pred = [_pred([[0, 0, 10, 4]], [2], [0.9])]  # IoU 0.4
    found = errors(gt, pred, threshold=0.5, categories=CATS)
    assert _rows(found) == [(0, FALSE_POSITIVE, None, "person"), (0, MISSED, "car", None)]
    assert _rows(errors(gt, pred, threshold=0.5, iou_threshold=0.3, categories=CATS)) == [
        (0, CONFUSED, "car", "person")
    ]


def test_missed_boxes_come_last_largest_first() -> None:
    gt = [_gt([[0, 0, 5, 5], [10, 10, 40, 40]], [1, 2]), _gt([[0, 0, 20, 20]], [1])]
    pred = [_pred([[100, 100, 101, 101]], [1], [0.51]), _pred([], [], [])]
    found = errors(gt, pred, threshold=0.5, categories=CATS)
    assert _rows(found) == [
        (0, FALSE_POSITIVE, None, "car"),
        (0, MISSED, "person", None),
        (1, MISSED, "car", None),
        (0, MISSED, "car", None),
    ]
    assert found.errors["area"].tolist()[1:] == [900, 400, 25]


@pytest.mark.parametrize("n_images", [0, 1])
def test_nothing_to_find(n_images: int) -> None:
    found = errors([_gt([], [])] * n_images, [_pred([], [], [])] * n_images, threshold=0.5, categories=CATS)
    assert found.errors.empty and list(found.errors.columns)[:4] == ["image", "kind", "truth", "predicted"]
    assert found.confusion.to_numpy().sum() == 0 and found.confusion.shape == (3, 3)


def test_the_counts_equal_the_reports_on_random_scenes() -> None:
    rng = np.random.default_rng(7)
    gt, pred = [], []
    for _ in range(12):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(5, 40, (n, 2))]
        gt.append(Detections(boxes, rng.integers(1, 4, n)))
        # jittered copies of the truth, some with another category, plus noise boxes
        m = int(rng.integers(0, 4))
        noise = rng.uniform(0, 200, (m, 2))
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        p_boxes = np.r_[jitter, np.c_[noise, noise + 20]]
        p_cls = np.r_[
            np.where(rng.random(n) < 0.7, gt[-1].class_id, rng.integers(1, 4, n)), rng.integers(1, 4, m)
        ]
        pred.append(Detections(p_boxes, p_cls.astype(np.int64), rng.random(n + m)))
    cats = {1: "a", 2: "b", 3: "c"}
    kinds_seen = set()
    for t in (0.0, 0.3, 0.5, 0.8):
        found = errors(gt, pred, threshold=t, categories=cats)
        report = evaluate(gt, pred, threshold=t, categories=cats)
        assert (found.tp, found.fp, found.fn) == (report.tp, report.fp, report.fn), t
        per_kind = found.errors["kind"].value_counts()
        assert per_kind.get(FALSE_POSITIVE, 0) + per_kind.get(CONFUSED, 0) == report.fp
        assert per_kind.get(MISSED, 0) + per_kind.get(CONFUSED, 0) == report.fn
        assert np.diag(found.confusion.to_numpy()[:3, :3]).tolist() == report.classes.tp.tolist()
        kinds_seen |= set(per_kind.index)
    assert kinds_seen == {FALSE_POSITIVE, CONFUSED, MISSED}
    # None: the best-F1 threshold, the report's headline
    best = evaluate(gt, pred, categories=cats)
    found = errors(gt, pred, categories=cats)
    assert found.threshold == best.threshold and (found.tp, found.fp, found.fn) == (best.tp, best.fp, best.fn)


def test_bad_input_is_refused() -> None:
    with pytest.raises(EvaluationError, match="predictions has 0"):
        errors([_gt([], [])], [])
    with pytest.raises(EvaluationError, match="threshold"):
        errors([_gt([], [])], [_pred([], [], [])], threshold=float("nan"))
