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
    fuse_passes,
    greedy_nmm,
    grid_cores,
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
    win = _tiles((0, 0, 120, 100), (80, 0, 120, 100))  # 40 px overlap: cores cut at x = 100
    # tile 1 sees [90, 130] whole; tile 0 cuts it at x = 120
    det = Detections([[90, 10, 120, 50], [90, 10, 130, 50]], [1, 1], [0.9, 0.7])
    out = merge_tiles(det, [0, 1], win)
    assert out.xyxy.tolist() == [[90, 10, 130, 50]]
    # the whole view of the tile holding the centre is kept with its own score (the
    # old rule took the highest score of the group, here the cut view's)
    assert out.confidence is not None and out.confidence.tolist() == [0.7]


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
    # centre x 75 lies in tile 0's core [0, 100): its view is kept, not the higher score
    assert out.xyxy.tolist() == [[60, 10, 90, 40]]
    assert out.confidence is not None and out.confidence.tolist() == [0.9]


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


# -- context windows and the centre rule ------------------------------------------------
def _context(margin: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Two 100 px cores side by side and their windows with ``margin`` px of context."""
    cores = _tiles((0, 0, 100, 100), (100, 0, 100, 100))
    return cores, _tiles((0, 0, 100 + margin, 100), (100 - margin, 0, 100 + margin, 100))


@pytest.mark.parametrize(
    ("image_wh", "rows", "cols", "overlap"),
    [
        ((1, 1), 1, 1, 0.0),
        ((1, 1), 1, 1, 0.4),
        ((600, 400), 3, 4, 0.0),
        ((600, 400), 3, 4, 0.25),
        ((7, 1000), 9, 2, 0.1),
    ],
)
def test_grid_cores_are_the_grid_without_overlap(
    image_wh: tuple[int, int], rows: int, cols: int, overlap: float
) -> None:
    from deepblock_nb.core.tiling import tile_windows

    cores = grid_cores(tile_windows(image_wh, rows, cols, overlap))
    assert cores.tolist() == tile_windows(image_wh, rows, cols).tolist()
    assert grid_cores(np.zeros((0, 4))).shape == (0, 4)


def test_grid_cores_reject_windows_that_are_not_a_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        grid_cores([[0, 0, 100, 100], [10, 0, 50, 100]])  # one window inside another


@pytest.mark.parametrize(
    ("a", "b", "kept"),
    [
        # each view puts the centre on its own side of the seam (x 99 and 102): kept once,
        # by the tile holding the views' mean centre (100.5)
        ([86, 10, 112, 40], [89, 11, 115, 41], [89, 11, 115, 41]),
        # each view puts it on the other side (102 and 99): still kept once, not lost
        ([89, 10, 115, 40], [86, 11, 112, 41], [86, 11, 112, 41]),
    ],
)
def test_views_of_one_object_either_side_of_a_seam_give_one_box(a: list, b: list, kept: list) -> None:
    cores, win = _context()
    det = Detections([a, b], [1, 1], [0.8, 0.7])
    out = merge_tiles(det, [0, 1], win, cores=cores)
    assert out.xyxy.tolist() == [kept]


def test_a_view_centred_in_another_core_that_did_not_see_it_is_dropped() -> None:
    cores, win = _context()
    # tile 0's margin sees an object centred in tile 1's core, which did not report it
    out = merge_tiles(Detections([[105, 10, 115, 20]], [1], [0.9]), [0], win, cores=cores)
    assert len(out) == 0
    # a centre exactly on the seam belongs to the right-hand core (half-open)
    det = Detections([[95, 10, 105, 20], [95, 10, 105, 20]], [1, 1], [0.9, 0.8])
    assert merge_tiles(det[:1], [0], win, cores=cores).xyxy.shape == (0, 4)
    out = merge_tiles(det, [0, 1], win, cores=cores)
    assert out.confidence is not None and out.confidence.tolist() == [0.8]


def test_an_object_larger_than_the_context_is_the_union_of_its_cut_views() -> None:
    cores, win = _context()
    # [40, 180] is cut by both windows (tile 0 ends at 120, tile 1 starts at 80)
    det = Detections([[40, 30, 120, 60], [80, 30, 180, 60]], [2, 2], [0.6, 0.7])
    out = merge_tiles(det, [0, 1], win, cores=cores)
    assert out.xyxy.tolist() == [[40, 30, 180, 60]]
    assert out.confidence is not None and out.confidence.tolist() == [0.7]


def test_boxes_of_one_tile_never_suppress_each_other() -> None:
    cores, win = _context()
    # two overlapping objects the model of tile 0 kept apart (IoU 0.6)
    det = Detections([[10, 10, 50, 50], [15, 10, 55, 50]], [1, 1], [0.9, 0.8])
    assert len(merge_tiles(det, [0, 0], win, cores=cores)) == 2


def test_merge_tiles_checks_its_cores() -> None:
    cores, win = _context()
    det = Detections([[10, 10, 50, 50]], [1], [0.9])
    with pytest.raises(ValueError, match="overlap"):
        merge_tiles(det, [0], win, cores=win)
    with pytest.raises(ValueError, match="cores"):
        merge_tiles(det, [0], win, cores=cores[:1])


def test_fuse_passes_averages_agreeing_boxes_and_keeps_the_others() -> None:
    a = Detections([[10, 10, 30, 30], [50, 50, 60, 60], [10, 10, 30, 30]], [1, 1, 1], [0.8, 0.4, 0.6])
    b = Detections([[12, 10, 32, 30], [80, 80, 90, 90]], [1, 1], [0.4, 0.3])
    out, tiles = fuse_passes(a, [0, 0, 1], b, [0, 0])
    assert out.confidence is not None
    fused = (tiles == 0) & np.isclose(out.confidence, 0.6)  # the mean of 0.8 and 0.4
    assert fused.sum() == 1
    assert out.xyxy[fused][0] == pytest.approx(
        [(0.8 * 10 + 0.4 * 12) / 1.2, 10, (0.8 * 30 + 0.4 * 32) / 1.2, 30]
    )
    # a box only one pass found keeps its place at half its score (the other pass counts 0);
    # another tile never fuses
    rest = sorted(zip(tiles[~fused].tolist(), out.confidence[~fused].tolist(), out.xyxy[~fused].tolist()))
    assert rest == [
        (0, pytest.approx(0.15), [80, 80, 90, 90]),
        (0, pytest.approx(0.2), [50, 50, 60, 60]),
        (1, pytest.approx(0.3), [10, 10, 30, 30]),
    ]
    # a second box of pass b over the object that pass a matched with the first is that object again
    a = Detections([[10, 10, 30, 30]], [1], [0.9])
    b = Detections([[6, 10, 26, 30], [15, 10, 35, 30]], [1, 1], [0.8, 0.3])  # IoU with a: 0.67, 0.6
    out, _ = fuse_passes(a, [0], b, [0, 0])
    assert len(out) == 1 and out.confidence is not None and out.confidence.tolist() == pytest.approx([0.85])
    empty = Detections.empty(with_confidence=True)
    out, tiles = fuse_passes(empty, [], empty, [])
    assert len(out) == 0 and len(tiles) == 0


def test_a_shifted_double_that_a_neighbour_links_to_the_object_is_dropped() -> None:
    cores, win = _context()
    true, double = [84, 10, 110, 36], [84, 22, 110, 48]  # IoU 0.37: below the detector's NMS
    neighbour = [84, 14, 110, 42]  # tile 1's view agrees with both (IoU 0.69 and 0.59)
    det = Detections([true, double, neighbour], [1, 1, 1], [0.9, 0.7, 0.8])
    out = merge_tiles(det, [0, 0, 1], win, cores=cores)
    assert out.xyxy.tolist() == [true], "tile 0 answers for the object once"
    # unlinked, the two boxes of tile 0 may be two objects: both stay
    assert len(merge_tiles(det[:2], [0, 0], win, cores=cores)) == 2
    # linked but overlapping above the detector's NMS threshold: kept apart on purpose
    close = Detections([true, [84, 14, 110, 40], neighbour], [1, 1, 1], [0.9, 0.7, 0.8])
    assert len(merge_tiles(close, [0, 0, 1], win, cores=cores)) == 2
    # a higher threshold for second views keeps the double
    loose = MergeConfig(second_view_iou=0.45)
    assert len(merge_tiles(det, [0, 0, 1], win, loose, cores=cores)) == 2
