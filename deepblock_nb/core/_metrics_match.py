"""Flattening, IoU and greedy matching for COCO-exact evaluation (numpy only).

Every box of every image goes into flat arrays sorted by block, a block being one
(category, image) pair as in pycocotools. Only (detection, ground truth) pairs of the
same block whose IoU reaches the lowest threshold can ever match, so matching runs on
those candidate pairs alone, one detection rank at a time across all blocks and all
(area range, IoU threshold) settings at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# The exact constructions of pycocotools' Params.setDetParams.
IOU_THRESHOLDS: FloatArray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS: FloatArray = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES: FloatArray = np.array([[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], float)
AREA_LABELS = ("all", "small", "medium", "large")

_MAX_PAIRS_PER_CHUNK = 1 << 22


@dataclass
class FlatBoxes:
    """All boxes of one side (ground truth or predictions), sorted by block.

    Ground truth is sorted by (category, image, input order); predictions by
    (category, image, score descending, input order), as pycocotools' stable sorts do.

    Attributes:
        cat: ``(N,)`` category index into the evaluated category ids.
        img: ``(N,)`` image index (position in the input lists).
        xywh: ``(N, 4)`` ``x, y, width, height`` in image pixels, width = x2 - x1.
        area: ``(N,)`` width * height in square pixels.
        block: ``(N,)`` ``cat * n_images + img``, non-decreasing.
        score: ``(N,)`` confidence (predictions) or ``None``.
        rank: ``(N,)`` rank within the block in score order (predictions) or ``None``.
    """

    cat: IntArray
    img: IntArray
    xywh: FloatArray
    area: FloatArray
    block: IntArray
    score: FloatArray | None = None
    rank: IntArray | None = None

    def __len__(self) -> int:
        return len(self.cat)


def flatten(
    xyxy: FloatArray,
    class_id: IntArray,
    img: IntArray,
    n_images: int,
    cat_ids: IntArray,
    score: FloatArray | None = None,
) -> FlatBoxes:
    """Sort boxes of all images into block order.

    Args:
        xyxy: ``(N, 4)`` boxes in image pixels; ``class_id``, ``img``: ``(N,)``.
        n_images: number of images; ``img`` indexes them.
        cat_ids: sorted category ids to evaluate; boxes of other ids are left out, as
            pycocotools leaves out annotations of categories it does not evaluate.
        score: ``(N,)`` confidences for predictions, ``None`` for ground truth.
    """
    pos = np.searchsorted(cat_ids, class_id)
    known = np.zeros(len(class_id), bool)
    if len(cat_ids):
        known = cat_ids[np.minimum(pos, len(cat_ids) - 1)] == class_id
    cat = pos[known].astype(np.int64)
    img = img[known]
    xyxy = xyxy[known]
    order_in = np.arange(len(cat))
    if score is not None:
        score = score[known]
        order = np.lexsort((order_in, -score, img, cat))
        score = score[order]
    else:
        order = np.lexsort((order_in, img, cat))
    cat, img, xyxy = cat[order], img[order], xyxy[order]
    wh = xyxy[:, 2:] - xyxy[:, :2]  # [N,2]
    xywh = np.concatenate([xyxy[:, :2], wh], axis=1)
    area = wh[:, 0] * wh[:, 1]
    block = cat * n_images + img
    rank = None if score is None else np.arange(len(block), dtype=np.int64) - _group_start(block)
    return FlatBoxes(cat, img, xywh, area, block, score, rank)


def _group_start(keys: IntArray) -> IntArray:
    """``(N,)`` index of the first element of each element's run of equal sorted keys."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return np.maximum.accumulate(np.where(new, np.arange(n), 0))


def candidate_pairs(gt: FlatBoxes, det: FlatBoxes, min_iou: float) -> tuple[IntArray, IntArray, FloatArray]:
    """(detection, ground truth) pairs of one block with IoU >= ``min_iou`` > 0.

    IoU is computed as pycocotools' ``bbIou`` does (non-crowd): right edge = width + x,
    intersection width and height must be > 0, union = (area_d + area_g) - intersection.

    Returns:
        ``det_index (P,)``, ``gt_index (P,)``, ``iou (P,)``, ordered by detection.
    """
    lo = np.searchsorted(gt.block, det.block, side="left")
    hi = np.searchsorted(gt.block, det.block, side="right")
    counts = hi - lo
    ends = np.cumsum(counts)
    out_d: list[IntArray] = []
    out_g: list[IntArray] = []
    out_iou: list[FloatArray] = []
    gx, gy, gw, gh = gt.xywh.T
    gr, gb = gw + gx, gh + gy
    dx, dy, dw, dh = det.xywh.T
    dr, db = dw + dx, dh + dy
    start = 0
    while start < len(det):
        # a chunk of detections holding at most _MAX_PAIRS_PER_CHUNK pairs (at least one detection)
        done = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, done + _MAX_PAIRS_PER_CHUNK, side="right"))
        stop = max(stop, start + 1)
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            d = np.repeat(np.arange(start, stop), c)
            g = np.arange(total) - np.repeat(np.cumsum(c) - c, c) + np.repeat(lo[start:stop], c)
            iw = np.minimum(dr[d], gr[g]) - np.maximum(dx[d], gx[g])
            keep = iw > 0
            d, g, iw = d[keep], g[keep], iw[keep]
            ih = np.minimum(db[d], gb[g]) - np.maximum(dy[d], gy[g])
            keep = ih > 0
            d, g, iw, ih = d[keep], g[keep], iw[keep], ih[keep]
            inter = iw * ih
            iou = inter / ((det.area[d] + gt.area[g]) - inter)
            keep = iou >= min_iou
            out_d.append(d[keep])
            out_g.append(g[keep])
            out_iou.append(iou[keep])
        start = stop
    if not out_d:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_d), np.concatenate(out_g), np.concatenate(out_iou)


def greedy_match(
    det_block: IntArray,
    n_det: int,
    pair_det: IntArray,
    pair_gt: IntArray,
    pair_iou: FloatArray,
    gt_ignore: BoolArray,
    iou_thr: FloatArray,
) -> tuple[BoolArray, BoolArray]:
    """pycocotools' greedy matching for ``S`` settings at once.

    In score order within a block, each detection takes the still unmatched ground truth
    with IoU >= threshold that ranks highest by (not ignored, IoU, input order); a later
    ground truth wins a tie, as in ``evaluateImg``. Thresholds are capped at 1 - 1e-10.

    Args:
        det_block: ``(D,)`` block key of each detection, detections in rank order.
        n_det: number of detections D.
        pair_det, pair_gt, pair_iou: ``(P,)`` candidate pairs from :func:`candidate_pairs`.
        gt_ignore: ``(S, G)`` ignore flag of each ground truth in each setting.
        iou_thr: ``(S,)`` IoU threshold of each setting.

    Returns:
        ``matched (S, D)`` and ``matched_ignored (S, D)`` (matched to an ignored ground truth).
    """
    n_set = len(iou_thr)
    matched = np.zeros((n_set, n_det), bool)
    matched_ign = np.zeros((n_set, n_det), bool)
    if len(pair_det) == 0:
        return matched, matched_ign
    thr = np.minimum(iou_thr, 1 - 1e-10)[:, None]  # [S,1]
    # rank of each detection among the detections of its block that have candidates
    cdet, pair_cd = np.unique(pair_det, return_inverse=True)
    cblock = det_block[cdet]
    crank = np.arange(len(cdet)) - _group_start(cblock)
    # priority of a pair within its detection: by IoU, then by ground-truth order
    order = np.lexsort((pair_gt, pair_iou, pair_det))
    seg = _group_start(pair_det[order])
    prio = np.empty(len(order), np.int64)
    prio[order] = np.arange(len(order)) - seg
    span = int(prio.max()) + 1
    # process ranks in turn; inside a rank, pairs stay grouped by detection
    order = order[np.argsort(crank[pair_cd[order]], kind="stable")]
    p_det, p_gt, p_iou, p_prio = pair_det[order], pair_gt[order], pair_iou[order], prio[order]
    p_rank = crank[pair_cd[order]]
    bounds = np.searchsorted(p_rank, np.arange(int(p_rank[-1]) + 2))
    # only ground truth that appears in a pair matters: index it compactly
    cgt, p_gt = np.unique(p_gt, return_inverse=True)
    ignore = gt_ignore[:, cgt]  # [S,G']
    regular = (~ignore).astype(np.int64) * span  # [S,G']
    taken = np.zeros(ignore.shape, bool)  # [S,G']
    for r in range(len(bounds) - 1):
        a, b = bounds[r], bounds[r + 1]
        g = p_gt[a:b]
        valid = ~taken[:, g] & (p_iou[a:b] >= thr)  # [S,n]
        key = np.where(valid, regular[:, g] + p_prio[a:b], -1)  # [S,n]
        d = p_det[a:b]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        if len(starts) == b - a:
            best = key
        else:
            best = np.maximum.reduceat(key, starts, axis=1)  # [S,ndet]
            best = np.repeat(best, np.diff(np.r_[starts, b - a]), axis=1)  # [S,n]
        hit_s, hit_p = np.nonzero((key == best) & (key >= 0))
        hg = g[hit_p]
        hd = d[hit_p]
        taken[hit_s, hg] = True
        matched[hit_s, hd] = True
        matched_ign[hit_s, hd] = ignore[hit_s, hg]
    return matched, matched_ign
