"""Precision, recall, F1 and counts at a confidence threshold: small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.metrics import EvaluationError, evaluate

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [50.0, 50.0, 70.0, 70.0]
FAR = [200.0, 200.0, 220.0, 220.0]


def dets(xyxy: object, class_id: object, confidence: object = None) -> Detections:
    """Detections from plain lists (boxes xyxy in pixels)."""
    return Detections(
        np.asarray(xyxy, dtype=float).reshape(-1, 4),
        np.asarray(class_id, dtype=np.int64),
        None if confidence is None else np.asarray(confidence, dtype=float),
    )


def one_image(
    gt_boxes: list[list[float]],
    gt_cls: list[int],
    boxes: list[list[float]],
    cls: list[int],
    scores: list[float],
) -> tuple[list[Detections], list[Detections]]:
    return [dets(gt_boxes, gt_cls)], [dets(boxes, cls, scores)]


def test_match_duplicate_and_false_positive() -> None:
    # two ground-truth boxes; an exact hit (0.9), a duplicate of it (0.8), a far box (0.3)
    gt, pred = one_image([BOX_A, BOX_B], [1, 1], [BOX_A, BOX_A, FAR], [1, 1, 1], [0.9, 0.8, 0.3])
    r = evaluate(gt, pred, threshold=0.5)
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)
    assert (r.precision, r.recall, r.f1) == (0.5, 0.5, 0.5)
    r = evaluate(gt, pred, threshold=0.85)
    assert (r.tp, r.fp, r.fn) == (1, 0, 1)
    assert (r.precision, r.recall) == (1.0, 0.5)
    assert r.f1 == pytest.approx(2 / 3)
    r = evaluate(gt, pred, threshold=0.0)
    assert (r.tp, r.fp, r.fn) == (1, 2, 1)
    assert r.f1 == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    # F1 at 0.9: 2/3; at 0.8: 1/2; at 0.3: 2/5 -> best at 0.9
    assert r.best_threshold == 0.9
    assert r.best_f1 == pytest.approx(2 / 3)


def test_score_equal_to_threshold_counts() -> None:
    gt, pred = one_image([BOX_A], [1], [BOX_A], [1], [0.5])
    assert evaluate(gt, pred, threshold=0.5).tp == 1
    assert evaluate(gt, pred, threshold=np.nextafter(0.5, 1)).tp == 0


@pytest.mark.parametrize(
    ("box", "tp"),
    [
        ([0.0, 0.0, 10.0, 20.0], 1),  # IoU 100/200 = 0.5 exactly: a match
        ([0.0, 0.0, 10.0, 21.0], 0),  # IoU 100/210 < 0.5
        ([10.0, 0.0, 20.0, 10.0], 0),  # touching: IoU 0
    ],
)
def test_iou_threshold_is_inclusive(box: list[float], tp: int) -> None:
    gt, pred = one_image([BOX_A], [1], [box], [1], [0.9])
    r = evaluate(gt, pred)
    assert (r.tp, r.fp, r.fn) == (tp, 1 - tp, 1 - tp)


def test_iou_threshold_parameter() -> None:
    # IoU 100/150 = 0.667: a match at 0.5 and 0.6, not at 0.7; COCO numbers unchanged
    gt, pred = one_image([BOX_A], [1], [[0.0, 0.0, 10.0, 15.0]], [1], [0.9])
    low, high = evaluate(gt, pred, iou_threshold=0.6), evaluate(gt, pred, iou_threshold=0.7)
    assert (low.tp, high.tp) == (1, 0)
    assert low.map == high.map
    loose = evaluate(gt, one_image([BOX_A], [1], [[0.0, 0.0, 10.0, 40.0]], [1], [0.9])[1], iou_threshold=0.2)
    assert loose.tp == 1  # IoU 0.25


def test_wrong_class_is_a_false_positive_and_a_miss() -> None:
    gt, pred = one_image([BOX_A, BOX_B], [1, 2], [BOX_A, BOX_B], [2, 2], [0.9, 0.6])
    r = evaluate(gt, pred, categories={1: "car", 2: "person"})
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)
    pc = r.per_class
    cols = ["name", "gt", "tp", "fp", "fn"]
    assert pc[cols].values.tolist() == [["car", 1, 0, 0, 1], ["person", 1, 1, 1, 0]]
    assert pc.loc[1, "precision"] == 0.0 and pc.loc[1, "recall"] == 0.0 and pc.loc[1, "f1"] == 0.0
    assert pc.loc[2, "precision"] == 0.5 and pc.loc[2, "recall"] == 1.0
    assert pc.loc[2, "f1"] == pytest.approx(2 / 3)


def test_greedy_matching_in_score_order() -> None:
    # p1 (0.9) overlaps g1 best and g2 a little; p2 (0.8) overlaps only g1. Greedy gives
    # g1 to p1, and p2 is a false positive although an assignment with two hits exists.
    g1, g2 = [0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0]
    p1 = [2.0, 0.0, 12.0, 10.0]  # IoU 80/120 with both g1 and g2: ties go to the later (g2)
    p2 = [0.0, 0.0, 10.0, 10.0]  # IoU 1 with g1
    r = evaluate(*one_image([g1, g2], [1, 1], [p1, p2], [1, 1], [0.9, 0.8]))
    assert (r.tp, r.fp, r.fn) == (2, 0, 0)  # p1 took g2 (tie to the later), p2 took g1
    p1 = [1.0, 0.0, 11.0, 10.0]  # IoU 90/110 with g1, 70/130 with g2: takes g1
    r = evaluate(*one_image([g1, g2], [1, 1], [p1, p2], [1, 1], [0.9, 0.8]), threshold=0.5)  # both count
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)


def test_counts_over_several_images_and_classes() -> None:
    gts = [
        dets([BOX_A, BOX_B], [1, 2]),
        Detections.empty(),
        dets([BOX_A], [1]),
    ]
    preds = [
        dets([BOX_A, BOX_B, FAR], [1, 2, 2], [0.95, 0.4, 0.7]),
        dets([BOX_A], [1], [0.6]),
        Detections.empty(with_confidence=True),
    ]
    r = evaluate(gts, preds, threshold=0.5)
    # class 1: image 0 hit (0.95), image 1 false (0.6), image 2 missed -> tp 1, fp 1, fn 1
    # class 2: BOX_B at 0.4 is below the threshold, FAR (0.7) false -> tp 0, fp 1, fn 1
    assert r.per_class[["tp", "fp", "fn"]].values.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert (r.tp, r.fp, r.fn) == (1, 2, 2)
    assert r.precision == pytest.approx(1 / 3) and r.recall == pytest.approx(1 / 3)
    # F1 = 2tp / (2tp + fp + fn), 3 boxes in all: at 0.95 tp1 fp0 -> 2/4; 0.7 tp1 fp1 -> 2/5;
    # 0.6 tp1 fp2 -> 2/6; 0.4 tp2 fp2 -> 4/7
    assert r.best_threshold == 0.4 and r.best_f1 == pytest.approx(4 / 7)


def test_best_threshold_is_the_best_score_cut() -> None:
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for _ in range(20):
        xy = rng.uniform(0, 100, (6, 2))
        g = np.c_[xy, xy + 20]
        gts.append(Detections(g, rng.integers(1, 4, 6)))
        p = np.r_[g + rng.normal(0, 3, (6, 4)), np.c_[xy, xy + 25]]
        preds.append(Detections(p, rng.integers(1, 4, 12), rng.integers(0, 20, 12) / 20))
    report = evaluate(gts, preds)
    scores = np.unique(np.concatenate([p.confidence for p in preds]))  # type: ignore[misc]
    f1s = [evaluate(gts, preds, threshold=s).f1 for s in scores]
    assert report.best_f1 == pytest.approx(max(f1s))
    assert report.best_threshold == scores[int(np.flatnonzero(np.isclose(f1s, max(f1s)))[-1])]
    assert evaluate(gts, preds, threshold=report.best_threshold).f1 == pytest.approx(report.best_f1)


def test_confidence_curves_agree_with_threshold_counts() -> None:
    gt, pred = one_image([BOX_A, BOX_B], [1, 1], [BOX_A, BOX_A, FAR], [1, 1, 1], [0.9, 0.8, 0.3])
    r = evaluate(gt, pred)
    cv = r.curves
    for i in (0, 25, 30, 31, 79, 80, 81, 90, 91, 100):
        at = evaluate(gt, pred, threshold=float(cv.confidence[i]))
        assert cv.f1_conf[0, i] == pytest.approx(at.f1)
        assert cv.precision_conf[0, i] == pytest.approx(at.precision)
        assert cv.recall_conf[0, i] == pytest.approx(at.recall)
        assert cv.f1_conf_all[i] == pytest.approx(at.f1)


def test_empty_inputs_give_zeros() -> None:
    r = evaluate([Detections.empty()], [Detections.empty(with_confidence=True)], threshold=0.3)
    assert (r.precision, r.recall, r.f1, r.tp, r.fp, r.fn) == (0.0, 0.0, 0.0, 0, 0, 0)
    assert (r.best_threshold, r.best_f1) == (0.3, 0.0)


@pytest.mark.parametrize(
    ("gts", "preds", "message"),
    [
        ([Detections.empty()], [], "ground_truth has 1 images but predictions has 0"),
        ([dets([BOX_A], [1])], [dets([BOX_A], [1])], "predictions[0] has no confidence"),
        (
            [dets([[5.0, 0, 1, 1]], [1])],
            [Detections.empty(with_confidence=True)],
            "ground_truth[0] has an inverted box",
        ),
        (
            [Detections.empty()],
            [dets([[0, 0, np.nan, 1]], [1], [0.5])],
            "predictions[0] has a box with a non-finite",
        ),
        (
            [Detections.empty()],
            [dets([BOX_A], [1], [np.inf])],
            "predictions[0] has a non-finite confidence",
        ),
        ([Detections.empty()], ["boxes"], "predictions[0] is a str, not a Detections"),
    ],
)
def test_bad_inputs_are_named(gts: list, preds: list, message: str) -> None:
    with pytest.raises(EvaluationError) as info:
        evaluate(gts, preds)
    assert message in str(info.value)


def test_bad_parameters() -> None:
    one = [Detections.empty()], [Detections.empty(with_confidence=True)]
    with pytest.raises(EvaluationError, match="max_dets"):
        evaluate(*one, max_dets=(100, 10, 1))
    with pytest.raises(EvaluationError, match="iou_threshold"):
        evaluate(*one, iou_threshold=0.0)
    with pytest.raises(EvaluationError, match="threshold"):
        evaluate(*one, threshold=float("nan"))
    with pytest.raises(EvaluationError, match="at_threshold"):
        evaluate(*one, at_threshold=float("inf"))
    # values of the wrong type are EvaluationErrors too, not TypeErrors from a comparison
    with pytest.raises(EvaluationError, match="max_dets"):
        evaluate(*one, max_dets="1, 10, 100")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="max_dets"):
        evaluate(*one, max_dets=None)  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="iou_threshold"):
        evaluate(*one, iou_threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="threshold"):
        evaluate(*one, threshold="0.5")  # type: ignore[arg-type]


# -- the headline threshold: best F1 by default, stated; a second threshold beside it --------


def low_scoring_case(seed: int = 7) -> tuple[list[Detections], list[Detections]]:
    """Every object found with a score in [0.2, 0.3]; one false positive per image at 0.1.

    F1 is best for thresholds in (0.1, min true-positive score], far from 0.5.
    """
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(6):
        xy = rng.uniform(0, 300, (4, 2))
        g = np.c_[xy, xy + rng.uniform(15, 40, (4, 2))]
        gts.append(dets(g, rng.integers(1, 3, 4)))
        far = np.array([[400.0, 400.0, 420.0, 420.0]])
        preds.append(
            Detections(
                np.r_[g, far],
                np.r_[gts[-1].class_id, 1],
                np.r_[rng.uniform(0.2, 0.3, 4), 0.1],
            )
        )
    return gts, preds


def test_the_headline_threshold_is_the_best_f1_one_and_is_stated() -> None:
    gts, preds = low_scoring_case()
    lowest_tp = min(float(p.confidence[:-1].min()) for p in preds)  # type: ignore[index]
    r = evaluate(gts, preds, at_threshold=0.5)
    assert r.threshold_rule == "best F1" and r.threshold == r.best_threshold
    # the highest grid value that keeps every true positive and drops the false positives
    assert 0.1 < r.threshold <= lowest_tp and r.threshold == np.floor(lowest_tp * 100) / 100
    assert r.threshold_label == f"at {r.threshold:.2f}, the best-F1 threshold"
    assert (r.tp, r.fp, r.fn) == (24, 0, 0) and r.recall == 1.0 and r.f1 == r.best_f1 == 1.0
    assert (r.classes.tp + r.classes.fn == r.classes.gt).all() and r.classes.fp.sum() == 0
    # beside it, the figures at the user's 0.5: nothing found
    at = r.at_threshold
    assert at is not None and at.threshold == 0.5
    assert (at.tp, at.fp, at.fn, at.recall, at.f1, at.precision) == (0, 0, 24, 0.0, 0.0, 0.0)
    assert f"threshold={r.threshold!r}" in repr(r) and "best F1" in repr(r)


def test_an_explicit_threshold_keeps_the_figures_there() -> None:
    gts, preds = low_scoring_case()
    r = evaluate(gts, preds, threshold=0.5)
    assert r.threshold_rule == "given" and r.threshold == 0.5 and r.at_threshold is None
    assert (r.tp, r.fp, r.fn, r.recall, r.f1) == (0, 0, 24, 0.0, 0.0)
    assert r.classes.tp.sum() == 0 and r.threshold_label == "at the given threshold 0.50"
    # the same numbers however they are asked for
    best = evaluate(gts, preds)
    assert best.best_threshold == r.best_threshold and best.best_f1 == r.best_f1
    again = evaluate(gts, preds, threshold=best.threshold)
    assert again.per_class.equals(best.per_class)
    assert (again.precision, again.recall, again.f1) == (best.precision, best.recall, best.f1)
    at = evaluate(gts, preds, threshold=0.25, at_threshold=0.5).at_threshold
    assert at is not None and (at.precision, at.recall, at.f1, at.tp, at.fp, at.fn) == (
        r.precision, r.recall, r.f1, r.tp, r.fp, r.fn,
    )  # fmt: skip
    # and the COCO numbers do not depend on any confidence threshold
    np.testing.assert_array_equal(r.stats, best.stats)


def test_best_threshold_is_the_best_cut_of_the_confidence_grid() -> None:
    rng = np.random.default_rng(5)
    gts, preds = [], []
    for _ in range(15):
        xy = rng.uniform(0, 100, (6, 2))
        g = np.c_[xy, xy + 20]
        gts.append(Detections(g, rng.integers(1, 3, 6)))
        p = np.r_[g + rng.normal(0, 3, (6, 4)), np.c_[xy, xy + 25]]
        preds.append(Detections(p, rng.integers(1, 3, 12), rng.random(12)))  # scores off the grid
    report = evaluate(gts, preds)
    grid = report.curves.confidence
    assert grid[70] == 0.7 and np.array_equal(grid, np.arange(101) / 100)
    f1s = np.array([evaluate(gts, preds, threshold=float(t)).f1 for t in grid])
    np.testing.assert_allclose(f1s, report.curves.f1_conf_all, atol=1e-12)
    assert report.best_f1 == f1s.max() and report.f1 == report.best_f1
    assert report.best_threshold == grid[np.flatnonzero(f1s == f1s.max())[-1]]  # ties: the highest


@pytest.mark.parametrize(
    ("gts", "preds", "expected"),
    [
        ([Detections.empty()], [Detections.empty(with_confidence=True)], 0.5),  # nothing at all
        ([dets([BOX_A], [1])], [dets([FAR], [1], [0.7])], 0.5),  # no match: every F1 is 0
        ([dets([BOX_A], [1])], [dets([BOX_A], [1], [1.0])], 1.0),  # a score of exactly 1
        ([dets([BOX_A], [1])], [dets([BOX_A], [1], [0.7])], 0.7),  # on the grid: that score
    ],
)
def test_best_f1_threshold_edge_cases(gts: list, preds: list, expected: float) -> None:
    r = evaluate(gts, preds, at_threshold=0.0)
    assert r.threshold == r.best_threshold == expected and r.threshold_rule == "best F1"
    assert r.at_threshold is not None and r.at_threshold.threshold == 0.0
