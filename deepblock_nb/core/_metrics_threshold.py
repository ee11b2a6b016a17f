"""Precision, recall and F1 at a confidence threshold, and their curves (numpy only).

Inputs are the matches of one IoU threshold with nothing ignored: a prediction is a
true positive when it is matched, a false positive otherwise; a ground-truth box left
unmatched is a false negative. A prediction counts at threshold ``c`` when its
confidence is >= ``c``; matching runs in score order, so the matches of the kept
predictions do not depend on the dropped ones.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Confidence thresholds 0, 0.01, ..., 1 of the curves and of the best-F1 choice: the
#: doubles nearest to the hundredths (``k / 100``), so the grid's 0.7 is the 0.7 a slider
#: or a cell sets (``linspace`` gives 0.7000000000000001 there).
CONFIDENCE_GRID: FloatArray = np.arange(101) / 100


def ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """``num / den`` elementwise, 0.0 where ``den`` is 0."""
    n = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    out = np.zeros(np.broadcast(n, d).shape)
    np.divide(n, d, out=out, where=d > 0)
    return out


def prf(tp: npt.ArrayLike, fp: npt.ArrayLike, fn: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision, recall and F1 from counts (0.0 where a denominator is 0)."""
    tp_a, fp_a, fn_a = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    return ratio(tp_a, tp_a + fp_a), ratio(tp_a, tp_a + fn_a), ratio(2 * tp_a, 2 * tp_a + fp_a + fn_a)


def counts_at(
    cat: IntArray, score: FloatArray, matched: BoolArray, n_gt: IntArray, threshold: float
) -> tuple[IntArray, IntArray, IntArray]:
    """``(K,)`` TP, FP and FN per category for predictions with score >= ``threshold``."""
    n_k = len(n_gt)
    keep = score >= threshold
    tp = np.bincount(cat[keep & matched], minlength=n_k).astype(np.int64)
    fp = np.bincount(cat[keep & ~matched], minlength=n_k).astype(np.int64)
    return tp, fp, n_gt - tp


def _cum_at(score_desc: FloatArray, flag: BoolArray, grid: FloatArray) -> IntArray:
    """Count of ``flag`` among boxes with score >= each grid value; scores descending."""
    cum = np.r_[0, np.cumsum(flag)]
    n = np.searchsorted(-score_desc, -grid, side="right")  # boxes with score >= grid
    return cum[n]


def confidence_curves(
    cat: IntArray, score: FloatArray, matched: BoolArray, n_gt: IntArray, grid: FloatArray = CONFIDENCE_GRID
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Precision, recall and F1 against the confidence threshold.

    Returns:
        ``precision (K, C)``, ``recall (K, C)``, ``f1 (K, C)`` per category and the
        same three ``(C,)`` over all categories (micro-averaged), ``C = len(grid)``.
    """
    n_k = len(n_gt)
    order = np.lexsort((-score, cat))
    cat_s, score_s, m_s = cat[order], score[order], matched[order]
    bounds = np.searchsorted(cat_s, np.arange(n_k + 1))
    tp = np.zeros((n_k, len(grid)), np.int64)
    fp = np.zeros((n_k, len(grid)), np.int64)
    for k in range(n_k):
        sl = slice(bounds[k], bounds[k + 1])
        tp[k] = _cum_at(score_s[sl], m_s[sl], grid)
        fp[k] = _cum_at(score_s[sl], ~m_s[sl], grid)
    p, r, f = prf(tp, fp, n_gt[:, None] - tp)
    tp_all, fp_all = tp.sum(0), fp.sum(0)
    pa, ra, fa = prf(tp_all, fp_all, n_gt.sum() - tp_all)
    return p, r, f, pa, ra, fa


def best_threshold(f1_all: FloatArray, grid: FloatArray, default: float) -> tuple[float, float]:
    """The grid threshold that maximises the overall F1 (``f1_all (C,)`` on ``grid (C,)``), and that F1.

    Of equal F1 the highest threshold wins: on a plateau it is the cut just below the
    weakest box the best F1 needs, and it keeps the fewest boxes for that F1. Where
    no threshold gives an F1 above 0 (no predictions, no ground truth, no match),
    ``(default, 0.0)``.
    """
    if len(f1_all) == 0 or not np.max(f1_all) > 0:
        return float(default), 0.0
    i = int(np.flatnonzero(f1_all == np.max(f1_all))[-1])
    return float(grid[i]), float(f1_all[i])
