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

CONFIDENCE_GRID: FloatArray = np.linspace(0.0, 1.0, 101)


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


def best_threshold(
    score: FloatArray, matched: BoolArray, n_gt_total: int, default: float
) -> tuple[float, float]:
    """The confidence threshold that maximises F1 over all categories, and that F1.

    Candidates are the prediction scores themselves; of equal F1 the highest threshold
    wins. Without predictions or ground truth, ``(default, 0.0)``.
    """
    if len(score) == 0 or n_gt_total == 0:
        return float(default), 0.0
    order = np.argsort(-score, kind="stable")
    s = score[order]
    tp = np.cumsum(matched[order])
    fp = np.arange(1, len(s) + 1) - tp
    last = np.r_[s[1:] != s[:-1], True]  # last box of each run of equal scores
    f1 = ratio(2 * tp[last], tp[last] + fp[last] + n_gt_total)
    i = int(np.argmax(f1))
    if f1[i] <= 0:
        return float(default), 0.0
    return float(s[last][i]), float(f1[i])
