"""COCO-exact evaluation of predicted boxes against ground truth (numpy only).

>>> report = evaluate(ground_truth, predictions)   # lists of Detections, one per image
>>> report.map, report.map50, report.recall, report.f1, report.best_threshold
>>> report.threshold, report.threshold_rule          # 0.16, "best F1": where recall and F1 are
>>> evaluate(ground_truth, predictions, at_threshold=0.5).at_threshold.recall   # and at 0.5
>>> found = errors(ground_truth, predictions)   # the boxes behind the figures
>>> found.errors, found.confusion                 # one row per error; a confusion matrix

The twelve COCO summary numbers equal pycocotools' ``COCOeval`` (iouType ``bbox``) on
the same boxes: boxes given as ``xywh = (x1, y1, x2 - x1, y2 - y1)``, ground-truth
``area = w * h``, no crowd boxes, category ids and image order as given. The work is
vectorised over all images and categories; see ``_metrics_match`` for the matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._metrics_coco import STAT_NAMES, accumulate, per_class_ap, summarize
from deepblock_nb.core._metrics_errors import (
    CONFUSED,
    FALSE_POSITIVE,
    KINDS,
    MISSED,
    ErrorAnalysis,
    find_errors,
)
from deepblock_nb.core._metrics_match import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    candidate_pairs,
    flatten,
    greedy_match,
)
from deepblock_nb.core._metrics_report import (
    BEST_F1,
    GIVEN,
    ClassScores,
    Curves,
    EvaluationReport,
    ThresholdScores,
)
from deepblock_nb.core._metrics_threshold import (
    CONFIDENCE_GRID,
    best_threshold,
    confidence_curves,
    counts_at,
    prf,
)
from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import EvaluationError

__all__ = [
    "CONFUSED",
    "FALSE_POSITIVE",
    "KINDS",
    "MISSED",
    "ClassScores",
    "Curves",
    "ErrorAnalysis",
    "EvaluationError",
    "EvaluationReport",
    "ThresholdScores",
    "errors",
    "evaluate",
]

#: The threshold the best-F1 rule falls back to when no threshold gives an F1 above 0
#: (and a project's threshold before any evaluation or choice of the user).
DEFAULT_THRESHOLD = 0.5


def evaluate(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    *,
    threshold: float | None = None,
    at_threshold: float | None = None,
    iou_threshold: float = 0.5,
    categories: Mapping[int, str] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
) -> EvaluationReport:
    """Score predictions against ground truth, image by image.

    Args:
        ground_truth: one Detections per image (xyxy pixels, category ids; confidence unused).
        predictions: one Detections per image, same order, with confidence.
        threshold: confidence threshold of the headline precision, recall, F1 and counts
            (overall and per category; a box counts when its score >= threshold). ``None``:
            the best-F1 threshold of the grid 0, 0.01, ..., 1 (``best_threshold``; of equal
            F1 the highest; 0.5 when no threshold gives an F1 above 0), and the report's
            ``threshold_rule`` is ``"best F1"``; a number gives ``"given"``.
        at_threshold: a second confidence threshold (the user's slider): the overall
            figures there go to ``report.at_threshold`` (a :class:`ThresholdScores`).
            ``None``: not computed.
        iou_threshold: IoU a prediction needs to match a ground-truth box for those figures.
        categories: category id -> name. Only these categories are evaluated (boxes of
            other ids are left out, as pycocotools does). ``None``: every id present.
        max_dets: the three COCO maxDets values (boxes kept per image and category);
            ``map`` uses the last (pycocotools hard-codes 100 there; equal by default).

    The figures at a confidence threshold count every prediction (no maxDets cap) and
    every ground-truth box (no area range), matched greedily in score order as COCO does.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        EvaluationError: lengths differ, a prediction has no confidence, or a box or a
            score is not finite or a box is inverted.
    """
    gt_list, pred_list = list(ground_truth), list(predictions)
    md = _check(gt_list, pred_list, threshold, at_threshold, iou_threshold, max_dets)
    g_xyxy, g_cls, g_img, _ = _concat("ground_truth", gt_list, with_score=False)
    d_xyxy, d_cls, d_img, d_score = _concat("predictions", pred_list, with_score=True)
    cat_ids, names = _categories(categories, g_cls, d_cls)
    n_k, n_a, n_t = len(cat_ids), len(AREA_RANGES), len(IOU_THRESHOLDS)

    n_images = len(gt_list)
    gt = flatten(g_xyxy, g_cls, g_img, n_images, cat_ids)
    det = flatten(d_xyxy, d_cls, d_img, n_images, cat_ids, score=d_score)
    assert det.score is not None  # flatten was given scores: a type narrowing, not a check
    # settings: every (area range, COCO IoU threshold), then the threshold figures' IoU
    # with nothing ignored
    gt_out = (gt.area[None, :] < AREA_RANGES[:, :1]) | (gt.area[None, :] > AREA_RANGES[:, 1:])  # [A,G]
    gt_ignore = np.concatenate([np.repeat(gt_out, n_t, axis=0), np.zeros((1, len(gt)), bool)])
    thr = np.r_[np.tile(IOU_THRESHOLDS, n_a), iou_threshold]
    min_iou = min(float(IOU_THRESHOLDS[0]), iou_threshold, 1 - 1e-10)
    pairs = candidate_pairs(gt, det, min_iou)
    matched, matched_ign = greedy_match(det.block, len(det), *pairs, gt_ignore, thr)

    # COCO tables
    m = matched[:-1].reshape(n_a, n_t, -1)  # [A,T,D]
    mi = matched_ign[:-1].reshape(n_a, n_t, -1)
    det_out = (det.area[None, :] < AREA_RANGES[:, :1]) | (det.area[None, :] > AREA_RANGES[:, 1:])  # [A,D]
    tp = m & ~mi
    fp = ~m & ~det_out[:, None, :]
    npig = np.stack([np.bincount(gt.cat[~gt_out[a]], minlength=n_k) for a in range(n_a)], axis=1)  # [K,A]
    precision, recall = accumulate(det, tp, fp, npig, md)
    stats = summarize(precision, recall, md)
    ap, ap50 = per_class_ap(precision)

    # figures at the confidence thresholds: the headline's (given, or the best-F1 one) and the user's
    hit = matched[-1]
    n_gt = np.bincount(gt.cat, minlength=n_k).astype(np.int64)
    pc, rc, fc, pca, rca, fca = confidence_curves(det.cat, det.score, hit, n_gt)
    best_t, best_f = best_threshold(
        fca, CONFIDENCE_GRID, DEFAULT_THRESHOLD if threshold is None else threshold
    )
    headline_t = best_t if threshold is None else float(threshold)
    ctp, cfp, cfn = counts_at(det.cat, det.score, hit, n_gt, headline_t)
    cp, cr, cf = prf(ctp, cfp, cfn)
    tp_all, fp_all, fn_all = int(ctp.sum()), int(cfp.sum()), int(cfn.sum())
    p_all, r_all, f_all = prf(tp_all, fp_all, fn_all)
    at = None
    if at_threshold is not None:
        atp, afp, afn = (int(c.sum()) for c in counts_at(det.cat, det.score, hit, n_gt, float(at_threshold)))
        ap_, ar_, af_ = prf(atp, afp, afn)
        at = ThresholdScores(float(at_threshold), float(ap_), float(ar_), float(af_), atp, afp, afn)

    pr_curve = precision[0, :, :, 0, -1].T.copy()  # [K,R]
    pr_curve[pr_curve < 0] = np.nan
    classes = ClassScores(cat_ids, names, n_gt, ap, ap50, cp, cr, cf, ctp, cfp, cfn)
    curves = Curves(RECALL_THRESHOLDS.copy(), pr_curve, CONFIDENCE_GRID.copy(), pc, rc, fc, pca, rca, fca)
    coco = {name: float(v) for name, v in zip(STAT_NAMES, stats)}
    return EvaluationReport(
        **coco,
        precision=float(p_all),
        recall=float(r_all),
        f1=float(f_all),
        tp=tp_all,
        fp=fp_all,
        fn=fn_all,
        threshold=headline_t,
        iou_threshold=float(iou_threshold),
        best_threshold=best_t,
        best_f1=best_f,
        n_images=len(gt_list),
        max_dets=md,
        classes=classes,
        curves=curves,
        threshold_rule=BEST_F1 if threshold is None else GIVEN,
        at_threshold=at,
    )


def errors(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    *,
    threshold: float | None = None,
    iou_threshold: float = 0.5,
    categories: Mapping[int, str] | None = None,
) -> ErrorAnalysis:
    """The false positives, missed boxes and confusions behind :func:`evaluate`'s counts.

    Arguments as for :func:`evaluate`; ``threshold`` None is the best-F1 threshold, as
    there. The matching is the report's, so ``errors(...).tp``, ``.fp`` and ``.fn``
    equal ``evaluate(...).tp``, ``.fp`` and ``.fn`` at the same threshold; see
    :class:`ErrorAnalysis` for the table and the confusion matrix.

    Raises:
        EvaluationError: as :func:`evaluate`.
    """
    gt_list, pred_list = list(ground_truth), list(predictions)
    _check(gt_list, pred_list, threshold, None, iou_threshold, (1, 10, 100))
    g_xyxy, g_cls, g_img, _ = _concat("ground_truth", gt_list, with_score=False)
    d_xyxy, d_cls, d_img, d_score = _concat("predictions", pred_list, with_score=True)
    cat_ids, names = _categories(categories, g_cls, d_cls)
    return find_errors(
        (g_xyxy, g_cls, g_img),
        (d_xyxy, d_cls, d_img, d_score),
        len(gt_list),
        cat_ids,
        names,
        None if threshold is None else float(threshold),
        float(iou_threshold),
    )


def _categories(
    categories: Mapping[int, str] | None, g_cls: npt.NDArray[np.int64], d_cls: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The sorted evaluated category ids and their names (every id present when ``None``)."""
    if categories is not None:
        cat_ids = np.array(sorted(int(c) for c in categories), dtype=np.int64)
        return cat_ids, [str(categories[int(c)]) for c in cat_ids]
    cat_ids = np.unique(np.r_[g_cls, d_cls])
    return cat_ids, [str(int(c)) for c in cat_ids]


def _check(
    gt: list[Detections],
    pred: list[Detections],
    threshold: float | None,
    at_threshold: float | None,
    iou_threshold: float,
    max_dets: Sequence[int],
) -> tuple[int, ...]:
    """Validate everything but the box values; return max_dets as a tuple of ints."""
    if len(gt) != len(pred):
        raise EvaluationError(
            f"ground_truth has {len(gt)} images but predictions has {len(pred)}; "
            "pass one Detections per image to each, in the same order"
        )
    for name, items in (("ground_truth", gt), ("predictions", pred)):
        for i, d in enumerate(items):
            if not isinstance(d, Detections):
                raise EvaluationError(f"{name}[{i}] is a {type(d).__name__}, not a Detections")
            if name == "predictions" and d.confidence is None:
                raise EvaluationError(f"predictions[{i}] has no confidence; predictions need a score per box")
    try:
        md = tuple(int(m) for m in max_dets)
    except (TypeError, ValueError, OverflowError):  # not a sequence, or not counts
        md = ()
    if len(md) != 3 or any(m < 1 for m in md) or list(md) != sorted(md):
        raise EvaluationError(f"max_dets must be three increasing positive counts, got {max_dets!r}")
    if not _is_real(iou_threshold) or not 0 < iou_threshold <= 1:
        raise EvaluationError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    for name, value in (("threshold", threshold), ("at_threshold", at_threshold)):
        if value is not None and not (_is_real(value) and np.isfinite(value)):
            raise EvaluationError(f"{name} must be a finite number or None, got {value!r}")
    return md


def _is_real(value: object) -> bool:
    """A real number (numpy scalars included); text and ``None`` are not."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _concat(
    name: str, items: list[Detections], with_score: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """All boxes of all images: ``xyxy (N, 4)``, ``class_id (N,)``, ``image (N,)``, ``score (N,)``.

    Raises EvaluationError naming the first image with a non-finite or inverted box or score.
    """
    sizes = np.array([len(d) for d in items], dtype=np.int64)
    img = np.repeat(np.arange(len(items), dtype=np.int64), sizes)
    if sizes.sum() == 0:
        return np.zeros((0, 4)), np.zeros(0, np.int64), img, np.zeros(0)
    xyxy = np.concatenate([d.xyxy for d in items])
    cls = np.concatenate([d.class_id for d in items])
    score = np.concatenate([d.confidence for d in items]) if with_score else np.zeros(len(cls))  # type: ignore[misc]
    problems = (
        ("a box with a non-finite coordinate", ~np.isfinite(xyxy).all(axis=1)),
        ("an inverted box (x2 < x1 or y2 < y1)", (xyxy[:, 2:] < xyxy[:, :2]).any(axis=1)),
        ("a non-finite confidence", ~np.isfinite(score)),
    )
    for what, bad in problems:
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            i = int(img[j])
            raise EvaluationError(
                f"{name}[{i}] has {what}: box {j - int(sizes[:i].sum())} = {xyxy[j].tolist()}"
                + (f", confidence {score[j]}" if with_score else "")
            )
    return xyxy, cls, img, score
