"""COCO accumulation and summary, reproducing pycocotools' ``COCOeval`` arithmetic.

The order of floating-point operations follows ``COCOeval.accumulate`` and
``COCOeval.summarize`` line by line, so that every summary number is bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from deepblock_nb.core._metrics_match import AREA_LABELS, IOU_THRESHOLDS, RECALL_THRESHOLDS, FlatBoxes

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def accumulate(
    det: FlatBoxes,
    tp: BoolArray,
    fp: BoolArray,
    npig: IntArray,
    max_dets: Sequence[int],
) -> tuple[FloatArray, FloatArray]:
    """Precision and recall tables as ``COCOeval.accumulate`` builds them.

    Args:
        det: block-sorted predictions (``score``, ``rank``, ``img``, ``cat`` set).
        tp: ``(A, T, D)`` matched and not ignored, per area range and IoU threshold.
        fp: ``(A, T, D)`` unmatched and not ignored.
        npig: ``(K, A)`` number of ground-truth boxes not ignored per category and area range.
        max_dets: the ``M`` sorted maxDets values; a block keeps its first ``maxDet`` boxes.

    Returns:
        ``precision (T, R, K, A, M)`` and ``recall (T, K, A, M)``, -1 where a category has
        no ground truth in that area range.
    """
    n_t, n_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    n_k, n_a = npig.shape
    n_m = len(max_dets)
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    assert det.score is not None and det.rank is not None  # detections always carry both
    # one row per detection, columns (area, threshold): gathering rows is cheap
    tp_rows = np.ascontiguousarray(tp.reshape(n_a * n_t, -1).T)  # [D,A*T]
    fp_rows = np.ascontiguousarray(fp.reshape(n_a * n_t, -1).T)
    # pycocotools concatenates blocks in image order, each in rank order, then sorts
    # by score with a stable sort: the same as sorting by (score desc, image, rank).
    order = np.lexsort((det.rank, det.img, -det.score, det.cat))
    bounds = np.searchsorted(det.cat[order], np.arange(n_k + 1))
    eps = np.spacing(1)
    for k in range(n_k):
        areas = np.flatnonzero(npig[k] > 0)
        if len(areas) == 0:
            continue
        n_j = len(areas) * n_t
        cols = (areas[:, None] * n_t + np.arange(n_t)).ravel()  # [J] columns of tp_rows
        npig_col = np.repeat(npig[k, areas].astype(float), n_t)  # [J]
        idx_k = order[bounds[k] : bounds[k + 1]]
        rank_k = det.rank[idx_k]
        for m, max_det in enumerate(max_dets):
            sel = idx_k[rank_k < max_det]
            nd = len(sel)
            if nd == 0:
                recall[:, k, areas, m] = 0
                precision[:, :, k, areas, m] = 0
                continue
            tp_sum = np.cumsum(tp_rows[sel][:, cols], axis=0, dtype=np.int32).astype(dtype=float)  # [nd,J]
            fp_sum = np.cumsum(fp_rows[sel][:, cols], axis=0, dtype=np.int32).astype(dtype=float)
            rc = tp_sum / npig_col
            pr = tp_sum / (fp_sum + tp_sum + eps)
            recall[:, k, areas, m] = rc[-1].reshape(len(areas), n_t).T
            # precision made non-increasing from the right
            pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]
            rc_t, pr_t = rc.T, pr.T  # [J,nd]
            for j in range(n_j):
                inds = np.searchsorted(rc_t[j], RECALL_THRESHOLDS, side="left")
                q = np.zeros(n_r)
                ok = inds < nd
                q[ok] = pr_t[j, inds[ok]]
                precision[j % n_t, :, k, areas[j // n_t], m] = q
    return precision, recall


def _summarize(
    precision: FloatArray,
    recall: FloatArray,
    max_dets: Sequence[int],
    ap: bool,
    iou_thr: float | None = None,
    area: str = "all",
    max_det: int = 100,
) -> float:
    aind = [i for i, label in enumerate(AREA_LABELS) if label == area]
    mind = [i for i, m in enumerate(max_dets) if m == max_det]
    if ap:
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, aind, mind]
    else:
        s = recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, aind, mind]
    if len(s[s > -1]) == 0:
        return -1.0
    return float(np.mean(s[s > -1]))


def summarize(precision: FloatArray, recall: FloatArray, max_dets: Sequence[int]) -> FloatArray:
    """The 12 COCO bbox summary numbers, in ``COCOeval.stats`` order (see ``STAT_NAMES``).

    pycocotools hard-codes maxDets=100 for the first number; here it is ``max_dets[-1]``,
    which is the same for the default ``(1, 10, 100)``.
    """
    md = list(max_dets)
    return np.array(
        [
            _summarize(precision, recall, md, True, max_det=md[2]),
            _summarize(precision, recall, md, True, iou_thr=0.5, max_det=md[2]),
            _summarize(precision, recall, md, True, iou_thr=0.75, max_det=md[2]),
            _summarize(precision, recall, md, True, area="small", max_det=md[2]),
            _summarize(precision, recall, md, True, area="medium", max_det=md[2]),
            _summarize(precision, recall, md, True, area="large", max_det=md[2]),
            _summarize(precision, recall, md, False, max_det=md[0]),
            _summarize(precision, recall, md, False, max_det=md[1]),
            _summarize(precision, recall, md, False, max_det=md[2]),
            _summarize(precision, recall, md, False, area="small", max_det=md[2]),
            _summarize(precision, recall, md, False, area="medium", max_det=md[2]),
            _summarize(precision, recall, md, False, area="large", max_det=md[2]),
        ]
    )


def per_class_ap(precision: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(K,)`` AP over IoU .50:.95 and ``(K,)`` AP at IoU .50 (area all, largest maxDets).

    NaN for a category without ground truth.
    """
    n_k = precision.shape[2]
    ap = np.full(n_k, np.nan)
    ap50 = np.full(n_k, np.nan)
    for k in range(n_k):
        s = precision[:, :, k, 0, -1]
        if np.any(s > -1):
            ap[k] = np.mean(s[s > -1])
        s50 = s[0]
        if np.any(s50 > -1):
            ap50[k] = np.mean(s50[s50 > -1])
    return ap, ap50
