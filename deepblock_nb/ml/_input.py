"""What the model sees: one fixed magnification, and anchors sized to the labels.

Every detector we build resizes its input by one fixed factor, ``input_scale``
(model pixels per image pixel), instead of torchvision's "resize every input to
N pixels". A tile of any size, a tile widened by context at prediction, or a
whole small image then shows its objects at the magnification they had in
training; the training tiles and the prediction windows need not match in size.

The factor and the SSD anchor sizes are chosen once, from the labelled boxes of
the training tiles (:func:`choose_input_scale`, :func:`anchor_sizes`), stored in
the run's checkpoint with the preset options, and reused for prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes

from deepblock_nb.errors import ArgumentError

__all__ = [
    "MIN_OBJECT_PX",
    "PixelBoxGenerator",
    "ScaleTransform",
    "anchor_sizes",
    "box_sides",
    "choose_input_scale",
    "use_input_scale",
]

#: Smallest object side (model pixels) worth magnifying to: the small presets'
#: finest feature map has a stride of 16, so smaller objects cover about one cell.
MIN_OBJECT_PX = 32.0
#: Bounds of the automatic magnification.
MIN_SCALE, MAX_SCALE = 0.1, 2.0
#: Largest model input side the automatic magnification may ask for.
MAX_INPUT_SIDE = 1600


def box_sides(xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(N,)`` the longer side of each ``(N, 4)`` xyxy box."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def choose_input_scale(sides: npt.ArrayLike, tile_side: float) -> float:
    """Magnification for labelled boxes of these longer ``sides`` (image pixels).

    Small objects are magnified until the smaller tenth of them is
    :data:`MIN_OBJECT_PX` at the model input; large ones are reduced to save time,
    keeping the same margin. The result lies in [:data:`MIN_SCALE`,
    :data:`MAX_SCALE`] and keeps a ``tile_side`` tile within :data:`MAX_INPUT_SIDE`.
    Without boxes: 1.
    """
    s = np.asarray(sides, np.float64)
    s = s[np.isfinite(s) & (s > 0)]
    if not len(s):
        return 1.0
    small = float(np.percentile(s, 10))
    scale = MIN_OBJECT_PX / max(small, 1.0)
    scale = min(scale, MAX_INPUT_SIDE / max(float(tile_side), 1.0))
    # a round figure: the same data always gives the same, readable factor
    return float(np.clip(round(scale * 20) / 20, MIN_SCALE, MAX_SCALE))


def anchor_sizes(sides: npt.ArrayLike, scale: float, levels: int = 6, stride: float = 16.0) -> list[float]:
    """``levels + 1`` SSD default-box sizes (model pixels) for boxes of these ``sides``.

    Each feature map ``k`` (stride ``stride * 2**k``) gets boxes of twice its stride,
    doubling from map to map, so every map is densely covered (a box's centre is
    never more than half its size from a grid point). The magnification
    (:func:`choose_input_scale`) brings the objects to these sizes; when it cannot
    (its cap), the finest boxes shrink towards the smallest objects, down to one
    stride.
    """
    s = np.asarray(sides, np.float64) * float(scale)
    s = s[np.isfinite(s) & (s > 0)]
    base = 2.0 * stride
    if len(s):
        base = float(np.clip(0.9 * np.percentile(s, 2), stride, base))
    return [base * 2.0**k for k in range(levels + 1)]


class ScaleTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform, resizing by one fixed factor.

    Normalises, scales each image (and its target boxes) by ``scale`` and pads
    the batch; ``postprocess`` maps boxes back to the input's own pixels.
    """

    def __init__(
        self, scale: float, image_mean: list[float], image_std: list[float], size_divisible: int = 32
    ) -> None:
        super().__init__(1, 1, image_mean, image_std, size_divisible=size_divisible)
        self.scale = float(scale)

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        h, w = image.shape[-2:]
        nh, nw = max(1, round(h * self.scale)), max(1, round(w * self.scale))
        if (nh, nw) != (h, w):
            image = nn.functional.interpolate(
                image[None], size=(nh, nw), mode="bilinear", align_corners=False
            )[0]
        if target is not None and "boxes" in target:
            target["boxes"] = resize_boxes(target["boxes"], [h, w], [nh, nw])
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, mean={self.image_mean}, std={self.image_std})"


class PixelBoxGenerator(nn.Module):
    """SSD default boxes of fixed sizes in model pixels, for inputs of any size.

    torchvision's ``DefaultBoxGenerator`` sizes its boxes as fractions of the
    input, so a larger input means larger boxes; here sizes stay put and only the
    grid follows the feature maps. Per map ``k``: squares of ``sizes[k]`` and
    ``sqrt(sizes[k] * sizes[k + 1])``, and ``sizes[k]`` at each aspect ratio and
    its inverse (the same boxes, in the same order, as SSD's).
    """

    def __init__(self, sizes: Sequence[float], aspect_ratios: Sequence[Sequence[float]]) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios) + 1:
            raise ArgumentError(f"{len(aspect_ratios)} feature maps need {len(aspect_ratios) + 1} sizes")
        self.sizes = [float(s) for s in sizes]
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self._wh = []
        for k, ratios in enumerate(self.aspect_ratios):
            s, s2 = self.sizes[k], math.sqrt(self.sizes[k] * self.sizes[k + 1])
            wh = [[s, s], [s2, s2]]
            for ar in ratios:
                r = math.sqrt(ar)
                wh.extend([[s * r, s / r], [s / r, s * r]])
            self._wh.append(torch.tensor(wh, dtype=torch.float32))  # [A,2]

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        ih, iw = image_list.tensors.shape[-2:]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        parts = []
        for k, fmap in enumerate(feature_maps):
            fh, fw = fmap.shape[-2:]
            cx = (torch.arange(fw, device=device, dtype=torch.float32) + 0.5) * (iw / fw)
            cy = (torch.arange(fh, device=device, dtype=torch.float32) + 0.5) * (ih / fh)
            yy, xx = torch.meshgrid(cy, cx, indexing="ij")
            centres = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # [H*W,2]
            wh = self._wh[k].to(device)  # [A,2]
            c = centres[:, None, :].expand(-1, len(wh), 2)  # [H*W,A,2]
            half = 0.5 * wh[None].expand_as(c)
            parts.append(torch.cat([c - half, c + half], dim=2).reshape(-1, 4))
        boxes = torch.cat(parts).to(dtype)
        return [boxes for _ in image_list.image_sizes]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sizes={[round(s, 1) for s in self.sizes]})"


def use_input_scale(model: nn.Module, scale: float) -> None:
    """Replace a torchvision detector's resize-to-N transform by :class:`ScaleTransform`."""
    old = getattr(model, "transform", None)
    if not isinstance(old, GeneralizedRCNNTransform):
        return
    model.transform = ScaleTransform(scale, list(old.image_mean), list(old.image_std), old.size_divisible)
