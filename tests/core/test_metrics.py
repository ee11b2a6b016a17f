"""COCO summary numbers of core.metrics against pycocotools (and faster-coco-eval).

Every case is generated from a seed and fed to both engines as the same boxes:
pycocotools gets ``xywh = (x1, y1, x2 - x1, y2 - y1)`` and ``area = w * h``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.metrics import EvaluationReport, evaluate

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

TOL = 1e-12


def dets(xyxy: object, class_id: object, confidence: object = None) -> Detections:
    """Detections from plain lists (boxes xyxy in pixels)."""
    return Detections(
        np.asarray(xyxy, dtype=float).reshape(-1, 4),
        np.asarray(class_id, dtype=np.int64),
        None if confidence is None else np.asarray(confidence, dtype=float),
    )


def coco_inputs(
    gts: list[Detections], preds: list[Detections], cat_ids: list[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    anns: list[dict[str, Any]] = []
    res: list[dict[str, Any]] = []
    for i, (g, p) in enumerate(zip(gts, preds)):
        for b, c in zip(g.xywh.tolist(), g.class_id.tolist()):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
        assert p.confidence is not None
        for b, c, s in zip(p.xywh.tolist(), p.class_id.tolist(), p.confidence.tolist()):
            res.append({"image_id": i + 1, "category_id": c, "bbox": b, "score": s})
    dataset = {
        "images": [{"id": i + 1} for i in range(len(gts))],
        "annotations": anns,
        "categories": [{"id": int(c), "name": str(c)} for c in cat_ids],
    }
    return dataset, res


def run_cocoeval(
    coco_cls: Any,
    eval_cls: Any,
    gts: list[Detections],
    preds: list[Detections],
    cat_ids: list[int],
    max_dets: tuple[int, ...] = (1, 10, 100),
) -> Any:
    dataset, res = coco_inputs(gts, preds, cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_cls()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        if res:
            dt = gt.loadRes(res)
        else:  # loadRes cannot take an empty list; build what it would have built
            dt = coco_cls()
            dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = eval_cls(gt, dt, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def random_case(
    seed: int,
    *,
    n_images: int = 12,
    n_classes: int = 4,
    max_gt: int = 8,
    max_pred: int = 25,
    grid: bool = False,
    score_decimals: int | None = None,
    p_empty: float = 0.15,
    size_range: tuple[float, float] = (2.0, 200.0),
    class_ids: np.ndarray | None = None,
) -> tuple[list[Detections], list[Detections]]:
    """Images of ground truth and predictions (jittered copies of ground truth, random boxes).

    ``grid`` puts corners on a coarse integer grid: exact ties in IoU and touching boxes.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_classes + 1) if class_ids is None else class_ids
    gts, preds = [], []
    for _ in range(n_images):
        kind = rng.random()
        n_gt = 0 if kind < p_empty else int(rng.integers(1, max_gt + 1))
        n_pr = 0 if p_empty <= kind < 2 * p_empty else int(rng.integers(0, max_pred + 1))
        if grid:
            xy = rng.integers(0, 8, (n_gt, 2)) * 10.0
            g_xyxy = np.c_[xy, xy + rng.integers(1, 5, (n_gt, 2)) * 10.0]
        else:
            side = np.exp(rng.uniform(np.log(size_range[0]), np.log(size_range[1]), (n_gt, 2)))
            xy = rng.uniform(0, 300, (n_gt, 2))
            g_xyxy = np.c_[xy, xy + side]
        g_cls = rng.choice(ids, n_gt)
        src = rng.integers(0, max(n_gt, 1), n_pr)
        if grid:
            xy = rng.integers(0, 8, (n_pr, 2)) * 10.0
            p_xyxy = np.c_[xy, xy + rng.integers(1, 5, (n_pr, 2)) * 10.0]
            copy_gt = (rng.random(n_pr) < 0.5) & (n_gt > 0)
            if n_gt:
                shift = rng.integers(-1, 2, (n_pr, 1)) * np.array([[10.0, 0, 10.0, 0]])
                p_xyxy[copy_gt] = (g_xyxy[src] + shift)[copy_gt]
        else:
            side = np.exp(rng.uniform(np.log(size_range[0]), np.log(size_range[1]), (n_pr, 2)))
            xy = rng.uniform(0, 300, (n_pr, 2))
            p_xyxy = np.c_[xy, xy + side]
            copy_gt = (rng.random(n_pr) < 0.6) & (n_gt > 0)
            if n_gt:
                g_wh = g_xyxy[src, 2:] - g_xyxy[src, :2]
                jitter = g_xyxy[src] + rng.normal(0, 0.15, (n_pr, 4)) * np.c_[g_wh, g_wh]
                jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2])
                p_xyxy[copy_gt] = jitter[copy_gt]
        p_cls = rng.choice(ids, n_pr)
        if n_gt:
            keep_cls = copy_gt & (rng.random(n_pr) < 0.85)
            p_cls[keep_cls] = g_cls[src][keep_cls]
        score = rng.random(n_pr)
        if score_decimals is not None:
            score = np.round(score, score_decimals)
        gts.append(Detections(g_xyxy, g_cls))
        preds.append(Detections(p_xyxy, p_cls, score))
    return gts, preds


def assert_same(report: EvaluationReport, ev: Any, cat_ids: list[int]) -> None:
    ours = report.stats
    ref = np.asarray(ev.stats, float)
    diff = np.abs(ours - ref)
    assert diff.max() <= TOL, f"summary differs: ours {ours}, pycocotools {ref}"
    # per-category AP from pycocotools' precision table (area all, largest maxDets)
    prec = ev.eval["precision"]
    by_id = dict(zip(report.classes.class_id.tolist(), report.classes.ap.tolist()))
    for k, cid in enumerate(cat_ids):
        s = prec[:, :, k, 0, -1]
        expected = np.mean(s[s > -1]) if np.any(s > -1) else np.nan
        got = by_id.get(cid, np.nan)
        assert (np.isnan(expected) and np.isnan(got)) or abs(got - expected) <= TOL, (cid, got, expected)


def check(
    gts: list[Detections], preds: list[Detections], cat_ids: list[int], **kwargs: Any
) -> EvaluationReport:
    report = evaluate(gts, preds, categories={c: f"c{c}" for c in cat_ids}, **kwargs)
    ev = run_cocoeval(COCO, COCOeval, gts, preds, cat_ids, **kwargs)
    assert_same(report, ev, cat_ids)
    return report


@pytest.mark.parametrize("seed", range(12))
def test_random_float_boxes_match_pycocotools(seed: int) -> None:
    gts, preds = random_case(seed)
    check(gts, preds, [1, 2, 3, 4])


@pytest.mark.parametrize("seed", range(8))
def test_ties_in_score_and_iou_and_touching_boxes(seed: int) -> None:
    # integer grid: equal IoUs, duplicate boxes, boxes sharing an edge; scores with one decimal
    gts, preds = random_case(100 + seed, grid=True, score_decimals=1, max_pred=30)
    check(gts, preds, [1, 2, 3, 4])


@pytest.mark.parametrize("seed", range(4))
def test_all_scores_equal(seed: int) -> None:
    gts, preds = random_case(200 + seed, grid=True, score_decimals=0)
    for p in preds:
        assert p.confidence is not None
        p.confidence[:] = 0.5
    check(gts, preds, [1, 2, 3, 4])


@pytest.mark.parametrize("seed", range(4))
def test_tiny_and_huge_boxes(seed: int) -> None:
    # from sub-pixel and zero-size boxes to boxes beyond COCO's 1e5**2 area limit
    gts, preds = random_case(300 + seed, size_range=(0.05, 3e5))
    rng = np.random.default_rng(seed)
    for g in gts[:3]:
        if len(g):
            g.xyxy[0, 2:] = g.xyxy[0, :2]  # zero-size ground truth
    # areas exactly on the small/medium/large borders, ground truth and predictions
    x = rng.uniform(0, 50)
    edge = np.array([[x, 0, x + 32, 32], [x, 0, x + 96, 96], [x, 0, x + 1e5, 1e5], [x, 0, x + 16, 64]])
    gts.append(dets(edge, [1, 1, 2, 2]))
    preds.append(dets(edge + 0.5, [1, 1, 2, 2], [0.9, 0.8, 0.7, 0.6]))
    check(gts, preds, [1, 2, 3, 4])


@pytest.mark.parametrize("seed", range(4))
def test_many_classes_with_missing_ones(seed: int) -> None:
    # 40 listed categories; boxes use a sparse subset, predictions some ids without ground truth
    rng = np.random.default_rng(seed)
    used = np.sort(rng.choice(np.arange(1, 41), 15, replace=False))
    gts, preds = random_case(400 + seed, n_images=20, class_ids=used)
    extra = np.setdiff1d(np.arange(1, 41), used)[:3]
    for p in preds[::4]:
        if len(p):
            p.class_id[0] = extra[0]
    check(gts, preds, list(range(1, 41)))


@pytest.mark.parametrize("seed", range(3))
def test_more_than_100_detections_per_image(seed: int) -> None:
    gts, preds = random_case(500 + seed, n_images=4, n_classes=2, max_gt=40, max_pred=400, p_empty=0.0)
    check(gts, preds, [1, 2])


def test_other_max_dets() -> None:
    gts, preds = random_case(600, n_images=8, max_pred=60)
    check(gts, preds, [1, 2, 3, 4], max_dets=(2, 5, 100))


def test_images_with_gt_only_and_predictions_only() -> None:
    gts, preds = random_case(700, n_images=10)
    gts += [dets([[0, 0, 50, 50], [60, 60, 70, 70]], [1, 2]), Detections.empty()]
    preds += [Detections.empty(with_confidence=True), dets([[0, 0, 50, 50]], [3], [0.7])]
    check(gts, preds, [1, 2, 3, 4])


def test_no_predictions_at_all() -> None:
    gts, _ = random_case(800)
    preds = [Detections.empty(with_confidence=True) for _ in gts]
    report = check(gts, preds, [1, 2, 3, 4])
    assert report.map == 0.0 and report.tp == 0 and report.fn == sum(len(g) for g in gts)


def test_no_ground_truth_at_all() -> None:
    _, preds = random_case(900)
    gts = [Detections.empty() for _ in preds]
    report = check(gts, preds, [1, 2, 3, 4])
    assert np.all(report.stats == -1)


def test_nothing_at_all() -> None:
    report = evaluate([Detections.empty()] * 3, [Detections.empty(with_confidence=True)] * 3)
    assert np.all(report.stats == -1)
    assert (report.tp, report.fp, report.fn, report.f1) == (0, 0, 0, 0.0)
    assert len(report.per_class) == 0
    assert evaluate([], []).map == -1


def test_single_perfect_match() -> None:
    gt = [dets([[10, 10, 60, 60]], [1])]
    pred = [dets([[10, 10, 60, 60]], [1], [0.9])]
    report = check(gt, pred, [1])
    # COCO's precision tp / (tp + fp + eps) stays a hair below 1
    assert report.map == pytest.approx(1.0, abs=1e-15) and report.map_medium == pytest.approx(1.0, abs=1e-15)
    assert report.map_small == -1 and report.map_large == -1


def test_categories_default_to_ids_present() -> None:
    gts, preds = random_case(1000)
    explicit = check(gts, preds, [1, 2, 3, 4])
    implicit = evaluate(gts, preds)
    np.testing.assert_array_equal(implicit.stats, explicit.stats)
    assert implicit.per_class["name"].tolist() == ["1", "2", "3", "4"]


def test_boxes_of_unlisted_categories_are_left_out() -> None:
    gts, preds = random_case(1100)
    listed = check(gts, preds, [1, 2])  # pycocotools leaves out categories 3 and 4 too
    assert listed.classes.class_id.tolist() == [1, 2]


def test_input_order_within_an_image_is_kept() -> None:
    # the same boxes, the ground truth of each image reversed: ties break on another box,
    # which pycocotools reproduces as well
    gts, preds = random_case(1200, grid=True, score_decimals=1)
    check([g[np.arange(len(g))[::-1]] for g in gts], preds, [1, 2, 3, 4])


def test_large_random_case_matches_faster_coco_eval() -> None:
    fce = pytest.importorskip("faster_coco_eval")
    gts, preds = random_case(1300, n_images=60, n_classes=6, max_pred=60)
    cat_ids = list(range(1, 7))
    report = check(gts, preds, cat_ids)
    ev = run_cocoeval(fce.COCO, fce.COCOeval_faster, gts, preds, cat_ids)
    np.testing.assert_allclose(report.stats, np.asarray(ev.stats[:12], float), rtol=0, atol=TOL)


def dense_case(seed: int, n_images: int = 6) -> tuple[list[Detections], list[Detections]]:
    """Crowded images: many overlapping boxes of sides around 32 and 96 px on a small canvas,
    half of them on an integer grid (equal IoUs), scores with few distinct values."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n_images):
        n_gt, n_pr = int(rng.integers(0, 12)), int(rng.integers(0, 40))
        if i % 2:
            corner = rng.integers(0, 6, (n_gt + n_pr, 2)) * 8.0
            side = rng.choice([8.0, 16.0, 24.0, 32.0, 40.0, 96.0, 104.0], (n_gt + n_pr, 2))
        else:
            corner = rng.uniform(0, 50, (n_gt + n_pr, 2))
            side = rng.uniform(20, 110, (n_gt + n_pr, 2))
        xyxy = np.c_[corner, corner + side]
        gts.append(Detections(xyxy[:n_gt], rng.integers(1, 3, n_gt)))
        preds.append(Detections(xyxy[n_gt:], rng.integers(1, 3, n_pr), rng.integers(0, 4, n_pr) / 4))
    return gts, preds


@pytest.mark.parametrize("seed", range(30))
def test_crowded_images_match_pycocotools(seed: int) -> None:
    gts, preds = dense_case(seed)
    check(gts, preds, [1, 2])


def test_equal_iou_goes_to_the_later_ground_truth() -> None:
    # detection a overlaps g1 and g2 with IoU 0.6 each; b overlaps only g2. pycocotools
    # gives a the later ground truth of the two, so the order decides whether b matches.
    g1, g2 = [0.0, 0, 10, 10], [5.0, 0, 15, 10]
    pred = [dets([[2.5, 0, 12.5, 10], g2], [1, 1], [0.9, 0.8])]
    for order, counts in (([g1, g2], (1, 1)), ([g2, g1], (2, 0))):
        check([dets(order, [1, 1])], pred, [1])
        both = evaluate([dets(order, [1, 1])], pred, threshold=0.5)  # both detections count
        assert (both.tp, both.fp) == counts


def test_regular_ground_truth_preferred_over_ignored() -> None:
    # for the medium range the small box is ignored: the detection must take the medium
    # box even though its IoU with the small box is higher
    small = [0.0, 0, 30, 30]  # area 900 < 32**2
    medium = [0.0, 0, 40, 40]  # area 1600
    det = [0.0, 0, 31, 31]  # IoU 0.94 with small, 0.60 with medium
    report = check([dets([small, medium], [1, 1])], [dets([det], [1], [0.9])], [1])
    assert report.map_medium == pytest.approx(0.3)  # matched at IoU 0.50, 0.55, 0.60
    assert report.map_small == pytest.approx(0.9)  # IoU 0.93 with the small box


@pytest.mark.parametrize("seed", range(60))
def test_mixed_random_sweep(seed: int) -> None:
    # every knob drawn from the seed: layout, ties, sizes, classes, crowding, empty images
    rng = np.random.default_rng(10_000 + seed)
    n_classes = int(rng.integers(1, 8))
    gts, preds = random_case(
        20_000 + seed,
        n_images=int(rng.integers(1, 15)),
        n_classes=n_classes,
        max_gt=int(rng.integers(1, 15)),
        max_pred=int(rng.choice([5, 30, 150])),
        grid=bool(rng.random() < 0.4),
        score_decimals=[None, 0, 1, 2][int(rng.integers(0, 4))],
        p_empty=float(rng.uniform(0, 0.4)),
        size_range=((0.5, 50.0), (2.0, 200.0), (20.0, 2e5))[int(rng.integers(0, 3))],
    )
    check(gts, preds, list(range(1, n_classes + 2)), max_dets=((1, 10, 100), (3, 30, 100))[seed % 2])
