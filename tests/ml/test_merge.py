"""Merging tile predictions: pair finding, NMS, NMM and the seam rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from deepblock_nb.core.detections import Detections
from deepblock_nb.ml.merge import (
    ACCURATE,
    FAST,
    OVERVIEW,
    MergeConfig,
    classwise_nms,
    consistent_views,
    greedy_nmm,
    merge_tiles,
    overlapping_pairs,
)


def _brute_pairs(b: np.ndarray, tol: float) -> set[tuple[int, int]]:
    gx = np.maximum(b[:, None, 0], b[None, :, 0]) - np.minimum(b[:, None, 2], b[None, :, 2])  # [N,N]
    gy = np.maximum(b[:, None, 1], b[None, :, 1]) - np.minimum(b[:, None, 3], b[None, :, 3])
    i, j = np.nonzero(np.triu((gx <= tol) & (gy <= tol), 1))
    return set(zip(i.tolist(), j.tolist()))


def _random_boxes(n: int, seed: int, extent: float = 1000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(2, 80, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize(
    ("boxes", "tol"),
    [
        (np.zeros((0, 4)), 0.0),  # empty
        (np.array([[0, 0, 10, 10]]), 0.0),  # one box
        (np.array([[0, 0, 10, 10], [10, 0, 20, 10]]), 0.0),  # touching edge counts
        (np.array([[0, 0, 10, 10], [12, 0, 20, 10]]), 1.0),  # 2 px apart, tolerance 1: no
        (np.array([[0, 0, 10, 10], [12, 0, 20, 10]]), 2.0),  # within tolerance: yes
        (_random_boxes(400, 0), 0.0),
        (np.concatenate([_random_boxes(300, 1), [[0, 0, 1000, 1000]]]), 3.0),  # one box covers all
    ],
)
def test_overlapping_pairs_match_brute_force(boxes: np.ndarray, tol: float) -> None:
    i, j = overlapping_pairs(boxes, tol)
    assert np.all(i < j)
    assert set(zip(i.tolist(), j.tolist())) == _brute_pairs(boxes.reshape(-1, 4), tol)
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)  # each pair once


def test_classwise_nms_equals_torchvision_on_all_boxes() -> None:
    rng = np.random.default_rng(3)
    b = _random_boxes(600, 2, extent=400)
    det = Detections(b, rng.integers(1, 4, len(b)), rng.uniform(0, 1, len(b)))
    keep = batched_nms(
        torch.from_numpy(b), torch.from_numpy(det.confidence), torch.from_numpy(det.class_id), 0.5
    ).numpy()
    out = classwise_nms(det, 0.5)
    assert 0 < len(out) < len(det)
    assert sorted(map(tuple, out.xyxy.tolist())) == sorted(map(tuple, b[keep].tolist()))
    assert len(classwise_nms(Detections.empty(with_confidence=True))) == 0


def test_greedy_nmm_merges_by_intersection_over_smaller() -> None:
    det = Detections(
        [[0, 0, 100, 100], [60, 10, 120, 50], [0, 0, 30, 30], [300, 300, 310, 310], [0, 0, 100, 100]],
        [1, 1, 1, 1, 2],
        [0.9, 0.8, 0.7, 0.6, 0.5],
    )
    out = greedy_nmm(det, 0.5)
    # box 1 (IoS 0.67) and box 2 (inside) join box 0; other class and far box stay
    assert len(out) == 3
    assert out.xyxy[0].tolist() == [0, 0, 120, 100]
    assert out.confidence is not None and out.confidence[0] == 0.9
    # the same boxes in one group (one tile) never merge
    assert len(greedy_nmm(det, 0.5, groups=np.zeros(5, np.int64))) == 5


def _tiles(*windows: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(windows, np.int64)


def test_object_across_a_seam_without_overlap_is_one_box() -> None:
    win = _tiles((0, 0, 100, 100), (100, 0, 100, 100))
    det = Detections([[90, 20, 100, 60], [100, 21, 130, 60]], [1, 1], [0.6, 0.8])
    out = merge_tiles(det, [0, 1], win)
    assert out.xyxy.tolist() == [[90, 20, 130, 60]]
    assert out.confidence is not None and out.confidence.tolist() == [0.8]


def test_object_on_the_corner_of_four_tiles_is_one_box() -> None:
    win = _tiles((0, 0, 100, 100), (100, 0, 100, 100), (0, 100, 100, 100), (100, 100, 100, 100))
    parts = [[80, 70, 100, 100], [100, 70, 140, 100], [80, 100, 100, 125], [100, 100, 140, 125]]
    out = merge_tiles(Detections(parts, [2] * 4, [0.5, 0.6, 0.7, 0.4]), [0, 1, 2, 3], win)
    assert out.xyxy.tolist() == [[80, 70, 140, 125]]
    assert out.class_id.tolist() == [2]


def test_partial_box_is_absorbed_by_the_tile_that_sees_the_object_whole() -> None:
    win = _tiles((0, 0, 120, 100), (80, 0, 120, 100))  # 40 px overlap
    # tile 1 sees [90, 130] whole; tile 0 cuts it at x = 120
    det = Detections([[90, 10, 120, 50], [90, 10, 130, 50]], [1, 1], [0.9, 0.7])
    out = merge_tiles(det, [0, 1], win)
    assert out.xyxy.tolist() == [[90, 10, 130, 50]]
    assert out.confidence is not None and out.confidence.tolist() == [0.9]


def test_object_larger_than_the_overlap_is_joined_where_nmm_fails() -> None:
    win = _tiles((0, 0, 220, 300), (180, 0, 220, 300))  # 40 px overlap
    parts = Detections([[20, 50, 220, 150], [180, 50, 380, 150]], [1, 1], [0.8, 0.8])
    out = merge_tiles(parts, [0, 1], win)
    assert out.xyxy.tolist() == [[20, 50, 380, 150]]
    # intersection over smaller is 40 / 200: SAHI's greedy NMM leaves the object split
    assert len(greedy_nmm(parts, 0.5)) == 2


@pytest.mark.parametrize("config", [FAST, ACCURATE])
def test_distinct_objects_near_a_seam_stay_apart(config: MergeConfig) -> None:
    win = _tiles((0, 0, 100, 100), (100, 0, 100, 100))
    det = Detections(
        [
            [60, 10, 94, 40],  # ends 6 px before the seam
            [100, 10, 130, 40],  # starts at the seam: a different object
            [90, 60, 100, 90],  # cut by the seam ...
            [100, 60, 120, 90],  # ... but the other part is of another class
        ],
        [1, 1, 1, 2],
        [0.9, 0.8, 0.7, 0.6],
    )
    out = merge_tiles(det, [0, 1, 0, 1], win, config)
    assert len(out) == 4


def test_boxes_on_the_image_border_and_empty_input() -> None:
    win = _tiles((0, 0, 100, 100))
    det = Detections([[0, 0, 10, 10], [90, 90, 100, 100]], [1, 1], [0.5, 0.4])
    assert len(merge_tiles(det, [0, 0], win)) == 2
    empty = merge_tiles(Detections.empty(with_confidence=True), np.zeros(0), win)
    assert len(empty) == 0 and empty.confidence is not None


def test_whole_duplicates_in_an_overlap_become_one() -> None:
    win = _tiles((0, 0, 150, 100), (50, 0, 150, 100))
    det = Detections([[60, 10, 90, 40], [61, 11, 90, 41]], [1, 1], [0.9, 0.95])
    out = merge_tiles(det, [0, 1], win)
    assert len(out) == 1
    assert out.confidence is not None and out.confidence.tolist() == [0.95]


def test_overview_boxes_kept_only_for_large_unseen_objects() -> None:
    win = _tiles((0, 0, 100, 100), (100, 0, 100, 100), (0, 100, 100, 100), (100, 100, 100, 100))
    det = Detections(
        [
            [10, 10, 40, 40],  # tile box
            [11, 11, 41, 41],  # overview: matches the tile box -> dropped
            [20, 20, 180, 180],  # overview: large, nothing matches -> kept
            [150, 20, 160, 30],  # overview: small -> dropped (tiles see small objects better)
        ],
        [1, 1, 1, 1],
        [0.5, 0.9, 0.6, 0.9],
    )
    out = merge_tiles(det, [0, OVERVIEW, OVERVIEW, OVERVIEW], win, ACCURATE)
    assert sorted(out.xyxy.tolist()) == [[10, 10, 40, 40], [20, 20, 180, 180]]


def test_consistent_views_rejects_mismatched_parts() -> None:
    win = _tiles((0, 0, 100, 100), (100, 0, 100, 100))
    # both reach the seam but their extents along it disagree (1-D IoU 0.11)
    b = np.array([[80, 10, 100, 60], [100, 50, 120, 100]], np.float64)
    i, _ = consistent_views(b, np.array([1, 1]), np.array([0, 1]), win)
    assert len(i) == 0
    i, _ = consistent_views(b, np.array([1, 1]), np.array([0, 1]), win, MergeConfig(join_threshold=0.1))
    assert len(i) == 1
