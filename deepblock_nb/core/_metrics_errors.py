"""The errors behind the figures at a confidence threshold: which boxes, and how they fail.

The matching is the one the report's TP/FP/FN counts come from (``_metrics_match``:
COCO's greedy, score-ordered, one-to-one matching within each (category, image) at
one IoU threshold, nothing ignored). Of what it leaves unmatched, a prediction of
category A that overlaps (IoU >= the threshold) a ground-truth box of category B
left missed by B's own predictions is a *confusion*; the same greedy rule pairs
them, across categories within an image. Every other unmatched prediction is a
*false positive*, every other unmatched ground-truth box is *missed*. So the
report's ``fp`` is false positives + confusions and its ``fn`` missed + confusions.

pandas is imported only when the tables are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._metrics_match import FlatBoxes, candidate_pairs, flatten, greedy_match
from deepblock_nb.core._metrics_threshold import CONFIDENCE_GRID, best_threshold, confidence_curves

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: ``kind`` of an error row
FALSE_POSITIVE = "false positive"
MISSED = "missed"
CONFUSED = "confused"
KINDS = (FALSE_POSITIVE, CONFUSED, MISSED)

#: columns of the error table (boxes ``xyxy`` image pixels, ``None`` where the row has no such box)
ERROR_COLUMNS = (
    "image",
    "kind",
    "truth",
    "predicted",
    "score",
    "iou",
    "truth_xyxy",
    "predicted_xyxy",
    "area",
)
#: the confusion matrix's extra row (predictions matching no ground truth) and column (missed boxes)
BACKGROUND = "background"
MISSED_COLUMN = "missed"


@dataclass(frozen=True, eq=False)
class ErrorAnalysis:
    """The errors at one confidence and IoU threshold.

    Attributes:
        errors: one row per error (:data:`ERROR_COLUMNS`): ``image`` (position in the
            input lists), ``kind`` (:data:`KINDS`), ``truth`` / ``predicted`` category
            names (``None`` where there is no such box), ``score`` (NaN for missed
            boxes), ``iou`` (confusions; else NaN), both boxes ``xyxy`` and ``area``
            (square pixels of the ground-truth box, else of the prediction). False
            positives and confusions come first by score (highest first), then missed
            boxes by area (largest first).
        confusion: counts, rows the ground-truth category plus ``"background"``,
            columns the predicted category plus ``"missed"``. The diagonal holds the
            true positives, off-diagonal cells the confusions, the background row the
            false positives and the missed column the missed boxes.
        threshold: confidence threshold (a prediction counts when its score >= it).
        iou_threshold: the IoU a match needs.
    """

    errors: pd.DataFrame
    confusion: pd.DataFrame
    threshold: float
    iou_threshold: float

    @property
    def tp(self) -> int:
        return int(np.trace(self.confusion.to_numpy()[:-1, :-1]))

    @property
    def fp(self) -> int:
        """False positives and confusions, as the report counts them."""
        return int(self.confusion.to_numpy()[:-1, :-1].sum()) - self.tp + int(self.confusion.iloc[-1].sum())

    @property
    def fn(self) -> int:
        """Missed boxes and confusions, as the report counts them."""
        return (
            int(self.confusion.to_numpy()[:-1, :-1].sum()) - self.tp + int(self.confusion.iloc[:, -1].sum())
        )


def assigned_truth(
    matched: BoolArray, pair_det: IntArray, pair_gt: IntArray, pair_iou: FloatArray, thr: float
) -> IntArray:
    """``(D,)`` the ground truth each detection that ``greedy_match`` matched took (-1: none).

    ``greedy_match`` says which detections match; which box each took follows from
    its rule alone: in rank order within a block, a matched detection takes the still
    free candidate of highest (IoU, input order). Detections in rank order.
    """
    out = np.full(len(matched), -1, np.int64)
    keep = matched[pair_det] & (pair_iou >= min(thr, 1 - 1e-10))
    d, g, iou = pair_det[keep], pair_gt[keep], pair_iou[keep]
    order = np.lexsort((-g, -iou, d))  # per detection: best candidate first
    d, g = d[order], g[order]
    taken: set[int] = set()
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if len(d) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(d)]
    for a, b in zip(starts.tolist(), ends.tolist()):  # detections ascending = rank order per block
        for j in g[a:b].tolist():
            if j not in taken:
                taken.add(j)
                out[d[a]] = j
                break
    assert (out[matched] >= 0).all(), "a matched detection without a free candidate"
    return out


def _match(gt: FlatBoxes, det: FlatBoxes, iou_threshold: float) -> tuple[BoolArray, IntArray, FloatArray]:
    """Matched flags ``(D,)``, the ground truth each took ``(D,)`` and that pair's IoU ``(D,)``."""
    pairs = candidate_pairs(gt, det, min(iou_threshold, 1 - 1e-10))
    ignore = np.zeros((1, len(gt)), bool)
    matched = greedy_match(det.block, len(det), *pairs, ignore, np.array([iou_threshold]))[0][0]
    took = assigned_truth(matched, *pairs, iou_threshold)
    iou = np.full(len(det), np.nan)
    pd_, pg, pi = pairs
    hit = took[pd_] == pg
    iou[pd_[hit]] = pi[hit]
    return matched, took, iou


def _xyxy(flat: FlatBoxes) -> FloatArray:
    return np.concatenate([flat.xywh[:, :2], flat.xywh[:, :2] + flat.xywh[:, 2:]], axis=1)


def find_errors(
    gt_boxes: tuple[FloatArray, IntArray, IntArray],
    det_boxes: tuple[FloatArray, IntArray, IntArray, FloatArray],
    n_images: int,
    cat_ids: IntArray,
    names: Sequence[str],
    threshold: float | None,
    iou_threshold: float,
) -> ErrorAnalysis:
    """The errors of all images' boxes, given flat and already checked.

    Args:
        gt_boxes: ``xyxy (G, 4)``, ``class_id (G,)``, ``image (G,)`` of the ground truth.
        det_boxes: ``xyxy (D, 4)``, ``class_id (D,)``, ``image (D,)``, ``score (D,)``.
        n_images: number of images; ``image`` indexes them.
        cat_ids: sorted evaluated category ids (others are left out); ``names`` theirs.
        threshold: confidence threshold; ``None``: the best-F1 threshold, chosen as
            :func:`~deepblock_nb.core.metrics.evaluate` chooses the headline's.
        iou_threshold: IoU a match (and a confusion) needs.
    """
    gt = flatten(*gt_boxes, n_images, cat_ids)
    det = flatten(*det_boxes[:3], n_images, cat_ids, score=det_boxes[3])
    assert det.score is not None  # flatten was given scores
    matched, took, _ = _match(gt, det, iou_threshold)
    if threshold is None:
        n_gt = np.bincount(gt.cat, minlength=len(cat_ids)).astype(np.int64)
        f1_all = confidence_curves(det.cat, det.score, matched, n_gt)[5]
        threshold = best_threshold(f1_all, CONFIDENCE_GRID, 0.5)[0]
    kept = det.score >= threshold
    matched &= kept
    found = np.zeros(len(gt), bool)
    found[took[matched]] = True

    # confusions: the unmatched kept predictions against the missed boxes, greedily, per image
    fp_i = np.flatnonzero(kept & ~matched)
    fn_i = np.flatnonzero(~found)
    one = np.zeros(1, np.int64)
    gt_x, det_x = _xyxy(gt), _xyxy(det)
    g2 = flatten(gt_x[fn_i], np.zeros(len(fn_i), np.int64), gt.img[fn_i], n_images, one)
    d2 = flatten(
        det_x[fp_i], np.zeros(len(fp_i), np.int64), det.img[fp_i], n_images, one, score=det.score[fp_i]
    )
    # flatten's stable sorts keep these orders: by image (then input order / score), as fp_i and fn_i are
    g_ord = np.lexsort((np.arange(len(fn_i)), gt.img[fn_i]))
    d_ord = np.lexsort((np.arange(len(fp_i)), -det.score[fp_i], det.img[fp_i]))
    c_matched, c_took, c_iou = _match(g2, d2, iou_threshold)
    conf_det = fp_i[d_ord[c_matched]]
    conf_gt = fn_i[g_ord[c_took[c_matched]]]
    conf_iou = c_iou[c_matched]
    lone_fp = np.setdiff1d(fp_i, conf_det)
    lone_fn = np.setdiff1d(fn_i, conf_gt)

    k = len(cat_ids)
    counts = np.zeros((k + 1, k + 1), np.int64)
    np.add.at(counts, (det.cat[matched], det.cat[matched]), 1)
    np.add.at(counts, (gt.cat[conf_gt], det.cat[conf_det]), 1)
    np.add.at(counts, (np.full(len(lone_fp), k), det.cat[lone_fp]), 1)
    np.add.at(counts, (gt.cat[lone_fn], np.full(len(lone_fn), k)), 1)
    return ErrorAnalysis(
        _table(gt, det, gt_x, det_x, names, (lone_fp, conf_det, conf_gt, conf_iou, lone_fn)),
        _matrix(counts, names),
        float(threshold),
        float(iou_threshold),
    )


def _table(
    gt: FlatBoxes,
    det: FlatBoxes,
    gt_x: FloatArray,
    det_x: FloatArray,
    names: Sequence[str],
    parts: tuple[IntArray, IntArray, IntArray, FloatArray, IntArray],
) -> pd.DataFrame:
    import pandas as pd

    assert det.score is not None
    lone_fp, conf_det, conf_gt, conf_iou, lone_fn = parts
    rows: list[tuple[object, ...]] = []
    for i in lone_fp.tolist():
        s = float(det.score[i])
        rows.append(
            (
                int(det.img[i]),
                FALSE_POSITIVE,
                None,
                names[det.cat[i]],
                s,
                np.nan,
                None,
                _box(det_x[i]),
                float(det.area[i]),
            )
        )
    for i, j, iou in zip(conf_det.tolist(), conf_gt.tolist(), conf_iou.tolist()):
        rows.append(
            (int(det.img[i]), CONFUSED, names[gt.cat[j]], names[det.cat[i]], float(det.score[i]), float(iou),
             _box(gt_x[j]), _box(det_x[i]), float(gt.area[j]))
        )  # fmt: skip
    rows.sort(key=lambda r: -float(r[4]))  # type: ignore[arg-type]
    missed = [
        (
            int(gt.img[j]),
            MISSED,
            names[gt.cat[j]],
            None,
            np.nan,
            np.nan,
            _box(gt_x[j]),
            None,
            float(gt.area[j]),
        )
        for j in lone_fn.tolist()
    ]
    missed.sort(key=lambda r: -float(r[8]))  # type: ignore[arg-type]
    cols = list(zip(*(rows + missed))) or [()] * len(ERROR_COLUMNS)
    types = {"image": np.int64, "score": float, "iou": float, "area": float}
    # the category and box columns stay objects, so a missing one reads None (not NaN)
    return pd.DataFrame(
        {c: pd.Series(list(v), dtype=types.get(c, object)) for c, v in zip(ERROR_COLUMNS, cols)}
    )


def _box(row: FloatArray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in row)
    return (x1, y1, x2, y2)


def _matrix(counts: IntArray, names: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        counts,
        index=pd.Index([*names, BACKGROUND], name="ground truth"),
        columns=pd.Index([*names, MISSED_COLUMN], name="predicted"),
    )
