"""The worker side of a cluster predict: tile ranges, their boxes joined, the per-process model cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deepblock_nb.demo import synthetic_scene
from deepblock_nb.errors import ModelError
from deepblock_nb.ml import cluster
from deepblock_nb.ml.checkpoints import LoadedModel, save_checkpoint
from deepblock_nb.ml.models import CUSTOM, build_model
from deepblock_nb.ml.predict import (
    TileBoxes,
    fuse_tiles,
    merge_image,
    overview_pass,
    plan_tiles,
    predict_image,
    predict_tiles,
    tile_ranges,
    wants_overview,
)
from tests.ml.rect_scene import RectangleDetector
from tests.ml.test_seams import ArraySource


@pytest.mark.parametrize(
    ("n_tiles", "per_range", "batch_size", "expected"),
    [
        (0, 32, None, []),
        (1, 32, None, [(0, 1)]),
        (36, 8, None, [(0, 8), (8, 16), (16, 24), (24, 32), (32, 36)]),
        (10, 5, None, [(0, 8), (8, 10)]),  # a multiple of every default batch size (2 and 8)
        (10, 3, 4, [(0, 4), (4, 8), (8, 10)]),
        (7, 100, 2, [(0, 7)]),
        (5, 1, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
    ],
)
def test_tile_ranges_start_on_batch_boundaries(
    n_tiles: int, per_range: int, batch_size: int | None, expected: list[tuple[int, int]]
) -> None:
    assert tile_ranges(n_tiles, per_range, batch_size) == expected


@pytest.mark.parametrize("accurate", [False, True])
def test_ranges_joined_give_the_whole_image_boxes_with_a_real_network(accurate: bool) -> None:
    torch.manual_seed(0)
    built = build_model("small", 2, load_weights=False, download=False)
    loaded = LoadedModel(built.module.eval(), [1, 2], built.tile_size, "small", torch.device("cpu"))
    rgb, _, _ = synthetic_scene(np.random.default_rng(3), 700, 600, n_objects=12)
    source = ArraySource(rgb)
    floor = 1e-3  # random weights: many weak boxes above it
    whole = predict_image(loaded, source, None, batch_size=2, accurate=accurate, score_floor=floor)
    assert len(whole) > 10

    plan = plan_tiles((700, 600), loaded, None, accurate=accurate)
    ranges = tile_ranges(len(plan), 2, batch_size=2)
    assert len(ranges) > 1
    parts = [
        predict_tiles(
            loaded, source, plan.windows[a:b], start=a, batch_size=2, score_floor=floor, flip=accurate
        )
        for a, b in reversed(ranges)  # in any order: each range is on its own
    ][::-1]
    over = overview_pass(loaded, source, floor) if accurate and wants_overview(loaded, plan) else None
    assert (over is not None) is accurate
    pieces = merge_image(loaded, plan, fuse_tiles(TileBoxes.join(parts)), over, accurate=accurate)
    assert np.array_equal(pieces.xyxy, whole.xyxy)
    assert np.array_equal(pieces.class_id, whole.class_id)
    assert pieces.confidence is not None and whole.confidence is not None
    assert np.array_equal(pieces.confidence, whole.confidence)
    assert sum(len(p.passes[0][0]) for p in parts) > 0
    assert 0 < parts[0].__sizeof__() < 100_000  # small enough to send back


def test_the_worker_model_is_loaded_once_per_checkpoint_version(tmp_path: Path) -> None:
    path = save_checkpoint(
        {
            "model_state": RectangleDetector().state_dict(),
            "preset": CUSTOM,
            "preset_options": {},
            "category_ids": [1, 2],
            "tile_size": 500,
        },
        tmp_path / "best.pt",
    )
    sent = cluster.SentModule(RectangleDetector())
    spec = cluster.ModelSpec(str(path), "cpu", "token-a")
    before = cluster.loads()
    first = cluster.worker_model(spec, sent)
    assert cluster.worker_model(spec, sent) is first
    assert cluster.loads() == before + 1
    assert first.model is sent.module and first.tile_size == 500

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a retrained run: loaded again
    assert cluster.worker_model(spec, sent) is not first
    assert cluster.loads() == before + 2

    with pytest.raises(ModelError, match=r"missing\.pt cannot be read on worker .*same path"):
        cluster.worker_model(cluster.ModelSpec(str(tmp_path / "missing.pt")))
