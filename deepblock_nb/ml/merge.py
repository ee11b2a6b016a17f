"""Merging tile predictions into one set of boxes per image.

Every box here is ``xyxy`` in pixels of the full-resolution image (origin
top-left). Boxes come with the index of the tile (window) that produced them, so
the merge knows what each tile saw.

The rule, applied by :func:`merge_tiles`:

1. **Join consistent views** (:func:`consistent_views`). A detector that sees only
   a tile reports the part of an object inside it. Two boxes of one class from
   tiles ``A`` and ``B`` show the same object when they agree on what both tiles
   saw: clipped to ``A ∩ B`` their IoU is >= ``join_threshold``. Without overlap,
   ``A ∩ B`` is the seam line: both boxes must reach it (within ``edge_tolerance``
   pixels) and their extents along it agree (1-D IoU >= ``join_threshold``). Each
   connected group of such views (an object may span many tiles, or the corner of
   four) becomes their union box with the highest score. This covers whole
   duplicates in an overlap, the partial box of an object that a neighbour sees
   whole, and objects larger than the overlap, which intersection-over-smaller
   merging (SAHI's greedy NMM) leaves split. Distinct objects never agree on the
   shared part, except two that touch the seam line from both sides at the same
   place, which no detector could tell apart there either.
2. **Overview boxes** (the "More accurate" full-image pass at reduced scale) are
   kept only when their shorter side is at least ``overview_min_fraction`` of the
   median tile side (objects that tiles cannot see whole) and no tile box already
   matches them (IoU >= ``iou_threshold``): tile boxes are more precise.
3. **Class-wise NMS** (``torchvision.ops.batched_nms``, IoU > ``iou_threshold``)
   removes remaining duplicates.
4. **Greedy NMM** (``nmm_threshold``; on in "More accurate" mode) is the fallback
   for imprecise detector edges: in descending score, each tile box absorbs the
   boxes of *other* tiles that it overlaps with intersection over the smaller box
   >= ``nmm_threshold``, growing to their union.

Pairs are found by spatial hashing (:func:`overlapping_pairs`), never by an
all-pairs matrix: cost grows with the number of boxes, not with its square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torchvision.ops import batched_nms

from deepblock_nb.core.detections import Detections

__all__ = [
    "ACCURATE",
    "FAST",
    "MergeConfig",
    "classwise_nms",
    "greedy_nmm",
    "merge_tiles",
    "overlapping_pairs",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: ``tile_index`` of boxes that come from the full-image pass.
OVERVIEW = -1
#: ``tile_index`` of boxes made by joining parts from several tiles.
JOINED = -2


@dataclass(frozen=True)
class MergeConfig:
    """Parameters of :func:`merge_tiles` (see the module docstring for the rule).

    Attributes:
        iou_threshold: class-wise NMS threshold (IoU).
        edge_tolerance: pixels; how far from a seam line (tiles without overlap) a
            box may end and still count as reaching it.
        join_threshold: agreement needed for two boxes of neighbouring tiles to be
            views of one object: IoU of the boxes clipped to the tiles' shared part,
            or 1-D IoU of their extents along a seam line.
        nmm_threshold: intersection-over-smaller for greedy NMM, or None for no NMM.
        overview_min_fraction: smallest shorter side of a full-image-pass box, as a
            fraction of the median tile side, that is kept.
    """

    iou_threshold: float = 0.5
    edge_tolerance: float = 3.0
    join_threshold: float = 0.5
    nmm_threshold: float | None = None
    overview_min_fraction: float = 0.5


FAST = MergeConfig()
ACCURATE = MergeConfig(nmm_threshold=0.5)


def overlapping_pairs(xyxy: npt.ArrayLike, tolerance: float = 0.0) -> tuple[IntArray, IntArray]:
    """All pairs of boxes that overlap, or come within ``tolerance`` pixels.

    Spatial hashing: each box is entered in the cells of a uniform grid that it
    covers (cells about twice a typical box side), and only boxes sharing a cell are
    compared. Memory and time grow with the number of close pairs.

    Args:
        xyxy: ``(N, 4)`` boxes in pixels.
        tolerance: pixels; boxes whose gap on both axes is at most this count as pairs.

    Returns:
        ``(i, j)``: two ``(P,)`` int64 arrays with ``i < j``, each pair once.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sides = np.maximum(b[:, 2:] - b[:, :2], 0).max(axis=1)  # [N]
    cell = max(16.0, 2.0 * float(np.percentile(sides, 90)) + 2 * tolerance)
    lo = np.floor((b[:, :2] - tolerance) / cell).astype(np.int64)  # [N,2]
    hi = np.floor((b[:, 2:] + tolerance) / cell).astype(np.int64)  # [N,2]
    span = hi - lo + 1  # [N,2]
    count = span[:, 0] * span[:, 1]  # [N] cells per box
    box = np.repeat(np.arange(n), count)
    k = np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)  # index within the box's cells
    cx = lo[box, 0] + k % span[box, 0]
    cy = lo[box, 1] + k // span[box, 0]
    cx -= cx.min()
    cy -= cy.min()
    key = cx * (int(cy.max()) + 1) + cy
    order = np.lexsort((box, key))
    key, box = key[order], box[order]
    # each entry pairs with the entries after it in the same cell
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    group_end = np.repeat(ends, ends - starts)  # [E]
    later = group_end - np.arange(len(key)) - 1  # [E] partners of each entry
    first = np.repeat(box, later)
    pos = np.repeat(np.arange(len(key)) + 1, later) + (
        np.arange(int(later.sum())) - np.repeat(np.cumsum(later) - later, later)
    )
    second = box[pos]
    i, j = np.minimum(first, second), np.maximum(first, second)
    keep = i != j
    uniq = np.unique(i[keep] * n + j[keep])
    i, j = uniq // n, uniq % n
    gap_x = np.maximum(b[i, 0], b[j, 0]) - np.minimum(b[i, 2], b[j, 2])  # [P] > 0: apart
    gap_y = np.maximum(b[i, 1], b[j, 1]) - np.minimum(b[i, 3], b[j, 3])
    close = (gap_x <= tolerance) & (gap_y <= tolerance)
    return i[close].astype(np.int64), j[close].astype(np.int64)


def _pair_stats(xyxy: FloatArray, i: IntArray, j: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Intersection area, IoU and intersection-over-smaller of ``(P,)`` box pairs."""
    lt = np.maximum(xyxy[i, :2], xyxy[j, :2])  # [P,2]
    rb = np.minimum(xyxy[i, 2:], xyxy[j, 2:])  # [P,2]
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    union = area[i] + area[j] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    small = np.minimum(area[i], area[j])
    ios = np.where(small > 0, inter / np.where(small > 0, small, 1), 0.0)
    return inter, iou, ios


def classwise_nms(det: Detections, iou_threshold: float = 0.5) -> Detections:
    """Class-wise non-maximum suppression (``torchvision.ops.batched_nms``).

    Only boxes with a same-class partner above the threshold can change the
    result, so NMS runs on those alone (found by :func:`overlapping_pairs`).

    Returns:
        The kept boxes, in their original order.
    """
    if det.confidence is None:
        raise ValueError("NMS needs confidence scores")
    i, j = overlapping_pairs(det.xyxy)
    keep = det.class_id[i] == det.class_id[j]
    i, j = i[keep], j[keep]
    _, iou, _ = _pair_stats(det.xyxy, i, j)
    hit = iou > iou_threshold
    involved = np.unique(np.concatenate([i[hit], j[hit]]))
    if len(involved) == 0:
        return det
    kept = batched_nms(
        torch.from_numpy(det.xyxy[involved]),
        torch.from_numpy(det.confidence[involved]),
        torch.from_numpy(det.class_id[involved]),
        iou_threshold,
    ).numpy()
    alive = np.ones(len(det), bool)
    alive[involved] = False
    alive[involved[kept]] = True
    return det[alive]


def greedy_nmm(
    det: Detections,
    match_threshold: float = 0.5,
    groups: npt.ArrayLike | None = None,
) -> Detections:
    """Greedy non-maximum merging by intersection over the smaller box.

    In descending score, each box not yet absorbed absorbs every not-yet-absorbed
    box of its class that it overlaps with intersection-over-smaller >=
    ``match_threshold`` and grows to their union; its score stays (the maximum).

    Args:
        det: boxes with confidence.
        match_threshold: intersection over the smaller area, in [0, 1].
        groups: optional ``(N,)`` ints; boxes of the same group never merge (e.g.
            the tile they came from: the model already resolved those).

    Returns:
        The merged boxes.
    """
    if det.confidence is None:
        raise ValueError("merging needs confidence scores")
    n = len(det)
    group = np.arange(n) if groups is None else np.asarray(groups, np.int64)
    i, j = overlapping_pairs(det.xyxy)
    keep = det.class_id[i] == det.class_id[j]
    keep &= (group[i] != group[j]) | (group[i] < 0)
    i, j = i[keep], j[keep]
    _, _, ios = _pair_stats(det.xyxy, i, j)
    hit = ios >= match_threshold
    i, j = i[hit], j[hit]
    if len(i) == 0:
        return det
    # adjacency lists (CSR) over both directions
    a = np.concatenate([i, j])
    b = np.concatenate([j, i])
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    ptr = np.searchsorted(a, np.arange(n + 1))
    xyxy = det.xyxy.copy()
    absorbed = np.zeros(n, bool)
    nodes = np.unique(a)
    for k in nodes[np.argsort(-det.confidence[nodes], kind="stable")]:
        if absorbed[k]:
            continue
        partners = b[ptr[k] : ptr[k + 1]]
        partners = partners[~absorbed[partners]]
        if len(partners):
            absorbed[partners] = True
            xyxy[k, :2] = np.minimum(xyxy[k, :2], det.xyxy[partners, :2].min(axis=0))
            xyxy[k, 2:] = np.maximum(xyxy[k, 2:], det.xyxy[partners, 2:].max(axis=0))
    out = Detections(xyxy, det.class_id, det.confidence, det.ids)
    return out[~absorbed]


def _components(n: int, i: IntArray, j: IntArray) -> IntArray:
    """``(n,)`` component label (smallest member) of the graph with edges ``(i, j)``."""
    label = np.arange(n)
    while len(i):
        low = np.minimum(label[i], label[j])
        new = label.copy()
        np.minimum.at(new, i, low)
        np.minimum.at(new, j, low)
        new = new[new]  # pointer jumping
        if np.array_equal(new, label):
            break
        label = new
    return label


def consistent_views(
    xyxy: FloatArray, class_id: IntArray, tile_index: IntArray, windows: IntArray, config: MergeConfig = FAST
) -> tuple[IntArray, IntArray]:
    """Pairs of boxes from two tiles that show the same object (step 1 of the rule).

    For box ``a`` of tile ``A`` and box ``b`` of tile ``B``, ``R = A ∩ B`` is what
    both tiles saw, so ``a ∩ R`` and ``b ∩ R`` must agree (IoU >= ``join_threshold``).
    Where ``R`` is a seam line (tiles without overlap: at most ``2 * edge_tolerance``
    thick) both boxes must reach it (within ``edge_tolerance``) and their extents
    along it agree (1-D IoU). Tiles meeting only at a corner are skipped.

    Args:
        xyxy: ``(N, 4)`` boxes in image pixels.
        class_id: ``(N,)`` classes; only boxes of one class pair.
        tile_index: ``(N,)`` index into ``windows``; negative entries never pair.
        windows: ``(T, 4)`` tile windows ``x, y, w, h``.

    Returns:
        ``(i, j)``: ``(P,)`` int64 indices of the matching pairs.
    """
    tol = config.edge_tolerance
    i, j = overlapping_pairs(xyxy, tol)
    keep = (class_id[i] == class_id[j]) & (tile_index[i] != tile_index[j])
    keep &= (tile_index[i] >= 0) & (tile_index[j] >= 0)
    i, j = i[keep], j[keep]
    wa = windows[tile_index[i]].astype(np.float64)  # [P,4]
    wb = windows[tile_index[j]].astype(np.float64)
    r_lo = np.maximum(wa[:, :2], wb[:, :2])  # [P,2] what both tiles saw
    r_hi = np.minimum(wa[:, :2] + wa[:, 2:], wb[:, :2] + wb[:, 2:])  # [P,2]
    thin = r_hi - r_lo <= 2 * tol  # [P,2] the shared part is a seam line on that axis
    a, b = xyxy[i], xyxy[j]
    a_lo, a_hi = np.maximum(a[:, :2], r_lo), np.minimum(a[:, 2:], r_hi)  # [P,2] clipped to R
    b_lo, b_hi = np.maximum(b[:, :2], r_lo), np.minimum(b[:, 2:], r_hi)
    inter = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None)  # [P,2]
    len_a, len_b = np.clip(a_hi - a_lo, 0, None), np.clip(b_hi - b_lo, 0, None)
    union_1d = len_a + len_b - inter
    iou_1d = np.where(union_1d > 0, inter / np.where(union_1d > 0, union_1d, 1), 0.0)  # [P,2]
    reach = (a[:, :2] <= r_hi + tol) & (a[:, 2:] >= r_lo - tol)  # [P,2]
    reach &= (b[:, :2] <= r_hi + tol) & (b[:, 2:] >= r_lo - tol)
    inter_2d = np.prod(inter, axis=1)
    union_2d = np.prod(len_a, axis=1) + np.prod(len_b, axis=1) - inter_2d
    iou_2d = np.where(union_2d > 0, inter_2d / np.where(union_2d > 0, union_2d, 1), 0.0)
    thr = config.join_threshold
    seam_x = thin[:, 0] & ~thin[:, 1] & reach[:, 0] & (iou_1d[:, 1] >= thr)  # a vertical seam line
    seam_y = thin[:, 1] & ~thin[:, 0] & reach[:, 1] & (iou_1d[:, 0] >= thr)  # a horizontal seam line
    shared = ~thin.any(axis=1) & (iou_2d >= thr)  # overlapping tiles
    ok = (seam_x | seam_y | shared) & (r_hi >= r_lo - tol).all(axis=1)
    return i[ok], j[ok]


def _join_views(
    det: Detections, tile_index: IntArray, windows: IntArray, config: MergeConfig
) -> tuple[Detections, IntArray]:
    """Each group of consistent views becomes their union box with the highest score."""
    conf = det.confidence
    assert conf is not None
    i, j = consistent_views(det.xyxy, det.class_id, tile_index, windows, config)
    if len(i) == 0:
        return det, tile_index
    b = det.xyxy
    label = _components(len(b), i, j)
    members = np.unique(np.concatenate([i, j]))
    roots, inverse = np.unique(label[members], return_inverse=True)
    xyxy = np.empty((len(roots), 4))
    xyxy[:, :2] = np.inf
    xyxy[:, 2:] = -np.inf
    score = np.full(len(roots), -np.inf)
    np.minimum.at(xyxy[:, 0], inverse, b[members, 0])
    np.minimum.at(xyxy[:, 1], inverse, b[members, 1])
    np.maximum.at(xyxy[:, 2], inverse, b[members, 2])
    np.maximum.at(xyxy[:, 3], inverse, b[members, 3])
    np.maximum.at(score, inverse, conf[members])
    alive = np.ones(len(b), bool)
    alive[members] = False
    joined = Detections(xyxy, det.class_id[roots], score)
    out = Detections.merge([Detections(b[alive], det.class_id[alive], conf[alive]), joined])
    return out, np.concatenate([tile_index[alive], np.full(len(roots), JOINED)])


def merge_tiles(
    det: Detections,
    tile_index: npt.ArrayLike,
    windows: npt.ArrayLike,
    config: MergeConfig = FAST,
) -> Detections:
    """One set of boxes for an image from the boxes of its tiles (the rule above).

    Args:
        det: ``N`` boxes with confidence, in image pixels, ``class_id`` category ids.
        tile_index: ``(N,)`` index into ``windows`` of the tile each box came from;
            ``-1`` for boxes of the full-image pass.
        windows: ``(T, 4)`` tile windows ``x, y, w, h`` in image pixels.
        config: thresholds; :data:`FAST` (default) or :data:`ACCURATE` (adds NMM).

    Returns:
        The merged boxes (``ids`` dropped), in descending score.
    """
    if det.confidence is None:
        raise ValueError("merging needs confidence scores")
    tiles = np.asarray(tile_index, np.int64).reshape(-1)
    win = np.asarray(windows, np.int64).reshape(-1, 4)
    if len(tiles) != len(det):
        raise ValueError(f"tile_index has {len(tiles)} entries for {len(det)} boxes")
    det = Detections(det.xyxy, det.class_id, det.confidence)
    if len(det) == 0:
        return det
    from_overview = tiles == OVERVIEW
    tile_det, tile_idx = _join_views(det[~from_overview], tiles[~from_overview], win, config)
    over = det[from_overview]
    if len(over):
        side = float(np.median(np.minimum(win[:, 2], win[:, 3])))
        wh = over.xyxy[:, 2:] - over.xyxy[:, :2]
        over = over[wh.min(axis=1) >= config.overview_min_fraction * side]
    if len(over):
        both = Detections.merge([tile_det, over])
        i, j = overlapping_pairs(both.xyxy)
        n_tile = len(tile_det)
        cross = (i < n_tile) & (j >= n_tile) & (both.class_id[i] == both.class_id[j])
        i, j = i[cross], j[cross]
        _, iou, _ = _pair_stats(both.xyxy, i, j)
        matched = np.zeros(len(over), bool)
        matched[j[iou >= config.iou_threshold] - n_tile] = True
        over = over[~matched]
        tile_det = Detections.merge([tile_det, over])
        tile_idx = np.concatenate([tile_idx, np.full(len(over), OVERVIEW)])
    tracked = Detections(tile_det.xyxy, tile_det.class_id, tile_det.confidence, np.arange(len(tile_det)))
    kept = classwise_nms(tracked, config.iou_threshold)
    if config.nmm_threshold is not None:
        assert kept.ids is not None
        groups = tile_idx[kept.ids]
        tiled = groups != OVERVIEW  # coarse full-image boxes never absorb tile boxes
        merged = greedy_nmm(kept[tiled], config.nmm_threshold, groups=groups[tiled])
        kept = Detections.merge([Detections(merged.xyxy, merged.class_id, merged.confidence), kept[~tiled]])
    out = Detections(kept.xyxy, kept.class_id, kept.confidence)
    assert out.confidence is not None
    return out[np.argsort(-out.confidence, kind="stable")]
