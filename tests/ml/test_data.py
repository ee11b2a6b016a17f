"""Tiles, clipped boxes, augmentation that moves boxes with pixels, sampling, loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepblock_nb.io.images as images_mod
from deepblock_nb.errors import ImageReadError
from deepblock_nb.ml._loader import ThreadLoader
from deepblock_nb.ml.data import (
    Augment,
    TileDataset,
    TileItem,
    collate,
    epoch_indices,
    holdout_split,
    label_lookup,
)

pytest.importorskip("deepblock_nb.core.tiling")


def _square_image(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> Path:
    """Dark noise with one bright square at ``box`` (xyxy)."""
    rng = np.random.default_rng(0)
    w, h = size
    a = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    a[y1:y2, x1:x2] = 250
    Image.fromarray(a).save(path)
    return path


def _items(
    path: Path, size: tuple[int, int], windows: list[tuple[int, int, int, int]], xyxy, cids
) -> list[TileItem]:
    xyxy = np.asarray(xyxy, float).reshape(-1, 4)
    return [TileItem(path, w, xyxy, np.asarray(cids, np.int64), size) for w in windows]


def test_label_lookup_maps_category_ids_to_labels() -> None:
    lut = label_lookup([3, 7])
    assert lut[3] == 1 and lut[7] == 2 and lut[5] == 0


def test_tiles_clip_boxes_and_keep_pixels(tmp_path: Path) -> None:
    path = _square_image(tmp_path / "a.png", (128, 64), (50, 10, 80, 40))
    windows = [(0, 0, 64, 64), (64, 0, 64, 64)]
    ds = TileDataset(_items(path, (128, 64), windows, [[50, 10, 80, 40]], [5]), [5], 64)
    left, right = ds[0], ds[1]
    assert left[0].shape == (3, 64, 64) and left[0].dtype == torch.float32
    # 14 of 30 columns visible on the left (below min_visible 0.5): dropped; the right keeps 16
    assert left[1]["boxes"].shape == (0, 4)
    np.testing.assert_allclose(right[1]["boxes"].numpy(), [[0, 10, 16, 40]])
    assert right[1]["labels"].tolist() == [1]
    arr = np.asarray(Image.open(path))
    np.testing.assert_allclose(right[0].permute(1, 2, 0).numpy() * 255, arr[:, 64:128], atol=1e-3)
    assert ds.has_boxes().tolist() == [False, True]


def test_tile_resized_to_tile_size_scales_boxes(tmp_path: Path) -> None:
    path = _square_image(tmp_path / "b.png", (100, 50), (10, 10, 30, 20))
    ds = TileDataset(_items(path, (100, 50), [(0, 0, 100, 50)], [[10, 10, 30, 20]], [1]), [1], 200)
    image, target = ds[0]
    assert image.shape == (3, 100, 200)
    np.testing.assert_allclose(target["boxes"].numpy(), [[20, 20, 60, 40]])


def test_box_on_tile_border_and_empty_image(tmp_path: Path) -> None:
    path = _square_image(tmp_path / "c.png", (64, 64), (0, 0, 64, 64))
    ds = TileDataset(_items(path, (64, 64), [(0, 0, 64, 64)], np.zeros((0, 4)), []), [1], 64)
    assert ds[0][1]["boxes"].shape == (0, 4)
    ds2 = TileDataset(_items(path, (64, 64), [(0, 0, 64, 64)], [[0, 0, 64, 64]], [1]), [1], 64)
    np.testing.assert_allclose(ds2[0][1]["boxes"].numpy(), [[0, 0, 64, 64]])


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_moves_boxes_with_pixels(tmp_path: Path, seed: int) -> None:
    path = _square_image(tmp_path / "d.png", (96, 96), (20, 30, 52, 62))
    aug = Augment(hflip=0.5, vflip=0.5, scale=(0.7, 1.4), shift=0.15, color=0.2)
    ds = TileDataset(
        _items(path, (96, 96), [(0, 0, 96, 96)], [[20, 30, 52, 62]], [1]), [1], 96, aug, seed=seed
    )
    for epoch in range(4):
        ds.epoch = epoch
        image, target = ds[0]
        assert target["boxes"].shape == (1, 4)
        x1, y1, x2, y2 = target["boxes"][0].round().int().tolist()
        pix = image.numpy().mean(axis=0)  # [H,W]
        inside = pix[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
        outside = np.ones_like(pix, bool)
        outside[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = False
        assert inside.mean() > 0.6 and pix[outside].mean() < 0.35


def test_augmentation_repeats_for_a_seed_and_epoch(tmp_path: Path) -> None:
    path = _square_image(tmp_path / "e.png", (64, 64), (10, 10, 30, 30))
    items = _items(path, (64, 64), [(0, 0, 64, 64)], [[10, 10, 30, 30]], [1])
    a = TileDataset(items, [1], 64, Augment(), seed=3)
    b = TileDataset(items, [1], 64, Augment(), seed=3)
    assert torch.equal(a[0][0], b[0][0])
    b.epoch = 1
    assert not torch.equal(a[0][0], b[0][0])


@pytest.mark.parametrize(("rate", "expected_empty"), [(0.0, 0), (0.5, 2), (10.0, 6)])
def test_empty_tiles_sampled_at_rate(rate: float, expected_empty: int) -> None:
    has = np.array([True] * 4 + [False] * 6)
    idx = epoch_indices(has, rate, np.random.default_rng(0))
    assert len(set(idx.tolist())) == len(idx)
    assert (~has[idx]).sum() == expected_empty and has[idx].sum() == 4


def test_epoch_indices_without_positives_and_empty() -> None:
    assert len(epoch_indices(np.zeros(0, bool), 0.5, np.random.default_rng(0))) == 0
    assert len(epoch_indices(np.zeros(3, bool), 0.5, np.random.default_rng(0))) == 3


def test_holdout_is_fixed_and_disjoint(tmp_path: Path) -> None:
    items = _items(tmp_path / "x.png", (100, 100), [(i, 0, 10, 10) for i in range(20)], np.zeros((0, 4)), [])
    keep, held = holdout_split(items, 0.2)
    assert len(held) == 4 and not set(keep) & set(held) and sorted(keep + held) == list(range(20))
    assert holdout_split(list(reversed(items)), 0.2)[1] == sorted(19 - i for i in held)
    assert holdout_split(items[:3], 0.2) == ([0, 1, 2], [])


def test_sources_stay_open_per_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real = images_mod.open_image

    def counting(path, cache_dir=None):  # type: ignore[no-untyped-def]
        opened.append(Path(path))
        return real(path, cache_dir)

    monkeypatch.setattr(images_mod, "open_image", counting)
    path = _square_image(tmp_path / "f.png", (128, 128), (10, 10, 30, 30))
    windows = [(x, y, 64, 64) for y in (0, 64) for x in (0, 64)]
    ds = TileDataset(_items(path, (128, 128), windows, [[10, 10, 30, 30]], [1]), [1], 64, Augment())
    for _ in range(3):
        for i in range(len(ds)):
            ds[i]
    assert opened == [path]
    ds.close()
    ds[0]
    assert len(opened) == 2


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    _square_image(path, (64, 64), (0, 0, 10, 10))
    path.write_bytes(path.read_bytes()[:60])
    ds = TileDataset(_items(path, (64, 64), [(0, 0, 64, 64)], [[0, 0, 10, 10]], [1]), [1], 64)
    with pytest.raises(ImageReadError, match="broken.png"):
        ds[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_thread_loader_keeps_order_and_raises(workers: int) -> None:
    data = list(range(23))
    batches = list(ThreadLoader(data, list(range(23)), 5, list, num_workers=workers))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert [x for b in batches for x in b] == data

    class Bad:
        def __getitem__(self, i: int) -> int:
            if i == 7:
                raise ValueError("sample 7 is bad")
            return i

    with pytest.raises(ValueError, match="sample 7"):
        list(ThreadLoader(Bad(), list(range(10)), 2, list, num_workers=workers))


def test_collate_keeps_lists() -> None:
    batch = [(torch.zeros(3, 4, 4), {"boxes": torch.zeros(0, 4)})] * 2
    images, targets = collate(batch)
    assert len(images) == 2 and len(targets) == 2
