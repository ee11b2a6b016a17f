"""What the model sees: one magnification from the box sizes, anchors sized to the boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from deepblock_nb.ml._input import (
    MAX_SCALE,
    MIN_OBJECT_PX,
    PixelBoxGenerator,
    ScaleTransform,
    anchor_sizes,
    box_sides,
    choose_input_scale,
)
from deepblock_nb.ml.models import build_model


def test_box_sides_empty_and_longer_side() -> None:
    assert box_sides(np.zeros((0, 4))).shape == (0,)
    assert box_sides([[0, 0, 10, 4], [5, 5, 6, 25]]).tolist() == [10.0, 20.0]


@pytest.mark.parametrize(
    ("sides", "tile", "expected"),
    [
        ([], 256, 1.0),  # no box: as it is
        ([32.0] * 10, 256, 1.0),  # already big enough
        ([16.0] * 10, 256, 2.0),  # small objects magnified ...
        ([4.0] * 10, 256, MAX_SCALE),  # ... up to a limit
        ([320.0] * 10, 1000, 0.1),  # large ones reduced
        ([16.0] * 10, 4000, 0.4),  # never a model input above MAX_INPUT_SIDE
    ],
)
def test_choose_input_scale(sides: list[float], tile: int, expected: float) -> None:
    assert choose_input_scale(sides, tile) == pytest.approx(expected)


def test_scale_brings_the_small_tenth_to_the_minimum() -> None:
    sides = np.linspace(24, 56, 200)  # the sizes of real objects in a 256-px photo
    scale = choose_input_scale(sides, 256)
    assert 1.0 < scale < 1.5
    assert np.percentile(sides, 10) * scale == pytest.approx(MIN_OBJECT_PX, rel=0.05)


def test_anchor_sizes_cover_the_boxes() -> None:
    sides = np.linspace(24, 56, 200)
    sizes = anchor_sizes(sides, 1.25)
    assert len(sizes) == 7 and bool(np.all(np.diff(sizes) > 0))
    assert sizes[0] <= 24 * 1.25 and sizes[-1] >= 56 * 1.25
    assert sizes[-1] >= 8 * sizes[0]  # room for sizes the labels do not show
    assert len(anchor_sizes([], 1.0)) == 7


def test_pixel_boxes_equal_ssd_boxes_at_the_reference_size() -> None:
    ratios = [[2, 3]] * 6
    ssd = DefaultBoxGenerator(ratios, min_ratio=0.1, max_ratio=0.6)
    ours = PixelBoxGenerator([s * 320 for s in ssd.scales], ratios)
    images = ImageList(torch.zeros(1, 3, 320, 320), [(320, 320)])
    maps = [torch.zeros(1, 1, n, n) for n in (20, 10, 5, 3, 2, 1)]
    a, b = ssd(images, maps)[0], ours(images, maps)[0]
    inside = (ssd._wh_pairs[0] <= 1).all()  # torchvision clips relative sizes to 1
    assert inside and a.shape == b.shape
    torch.testing.assert_close(a[: 20 * 20 * 6], b[: 20 * 20 * 6])


def test_pixel_boxes_keep_their_size_on_a_larger_input() -> None:
    gen = PixelBoxGenerator([20, 40, 80, 160, 320, 640, 1280], [[2]] * 6)
    small = gen(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), [torch.zeros(1, 1, 4, 4)] * 6)[0]
    large = gen(ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)]), [torch.zeros(1, 1, 6, 8)] * 6)[0]
    wh = lambda b: (b[:, 2:] - b[:, :2])[:6]  # noqa: E731 - first location's boxes
    torch.testing.assert_close(wh(small), wh(large))
    assert large[:, 0::2].max() > small[:, 0::2].max()  # the grid follows the input


def test_scale_transform_scales_images_and_boxes_and_maps_back() -> None:
    t = ScaleTransform(1.5, [0.0] * 3, [1.0] * 3, size_divisible=1).eval()
    images, targets = t([torch.rand(3, 40, 60)], [{"boxes": torch.tensor([[10.0, 4.0, 30.0, 20.0]])}])
    assert tuple(images.tensors.shape[-2:]) == (60, 90) and images.image_sizes == [(60, 90)]
    assert targets is not None
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[15.0, 6.0, 45.0, 30.0]]))
    back = t.postprocess([{"boxes": targets[0]["boxes"]}], images.image_sizes, [(40, 60)])
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[10.0, 4.0, 30.0, 20.0]]))


def test_scaled_ssd_predicts_in_the_input_pixels_of_any_size() -> None:
    opts = {"input_scale": 2.0, "anchor_sizes": anchor_sizes([10.0, 20.0], 2.0)}
    with pytest.warns(UserWarning, match="from scratch"):  # no weights here, and fetching is off
        built = build_model("ssdlite", 2, tile_size=64, options=opts)
    assert isinstance(built.module.transform, ScaleTransform) and built.module.transform.scale == 2.0
    model = built.module.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 50, 70), torch.rand(3, 32, 32)])
    for o, (h, w) in zip(out, [(50, 70), (32, 32)]):
        b = o["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    # and it trains on tiles of different sizes in one batch
    model.train()
    losses = model(
        [torch.rand(3, 64, 64), torch.rand(3, 40, 64)],
        [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])}] * 2,
    )
    assert all(torch.isfinite(v) for v in losses.values())
