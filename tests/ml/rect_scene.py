"""A scene of coloured rectangles and a detector that finds them from the pixels.

Each object is a filled rectangle of a colour unique in the scene: class 1 is
``(255, g, b < 64)``, class 2 is ``(r < 64, g, 255)``, background white. The
detector reads a tile's pixels, finds every colour's bounding box and reports it
with score ``g / 255``, exactly like a perfect detector that sees only the tile:
an object cut by the tile's edge comes out as its visible part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
import torch

from deepblock_nb.core.detections import Detections


class RectangleDetector(torch.nn.Module):
    """torchvision's detection contract over the rectangle scene; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []  # batch size of each call
        self.pixels: list[int] = []  # input pixels of each call

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls.append(len(images))
        self.pixels.append(sum(int(t.shape[1] * t.shape[2]) for t in images))
        return [self._detect(t) for t in images]

    @staticmethod
    def _detect(image: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb = (image * 255).round().to(torch.int64).permute(1, 2, 0).numpy()  # (h, w, 3)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        ys, xs = np.nonzero(code != 0xFFFFFF)
        if len(xs) == 0:
            return {
                "boxes": torch.zeros(0, 4),
                "labels": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0),
            }
        colours, inv = np.unique(code[ys, xs], return_inverse=True)
        box = np.empty((len(colours), 4))
        box[:, :2] = np.inf
        box[:, 2:] = -np.inf
        np.minimum.at(box[:, 0], inv, xs)
        np.minimum.at(box[:, 1], inv, ys)
        np.maximum.at(box[:, 2], inv, xs + 1)
        np.maximum.at(box[:, 3], inv, ys + 1)
        r, g, b = colours >> 16, (colours >> 8) & 255, colours & 255
        labels = np.where((r == 255) & (b < 64), 1, np.where((b == 255) & (r < 64), 2, 0))
        ok = labels > 0
        return {
            "boxes": torch.from_numpy(box[ok]).float(),
            "labels": torch.from_numpy(labels[ok]),
            "scores": torch.from_numpy(g[ok] / 255.0).float(),
        }


@dataclass
class StubModel:
    """A loaded model as prediction expects it (``ml.checkpoints.LoadedModel``'s fields)."""

    model: RectangleDetector = field(default_factory=RectangleDetector)
    category_ids: list[int] = field(default_factory=lambda: [1, 2])
    tile_size: int = 500
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def _colours(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 3)`` unique colours and ``(n,)`` classes 1/2."""
    pick = rng.choice(2 * 231 * 64, size=n, replace=False)
    cls = 1 + pick // (231 * 64)
    g = 20 + (pick % (231 * 64)) // 64
    low = pick % 64
    rgb = np.where(
        cls[:, None] == 1, np.stack([np.full(n, 255), g, low], 1), np.stack([low, g, np.full(n, 255)], 1)
    )
    return rgb.astype(np.uint8), cls


def make_scene(
    width: int,
    height: int,
    seams: int,
    rng: np.random.Generator,
    big: int = 0,
    fill: float = 0.35,
) -> tuple[np.ndarray, Detections]:
    """A white ``(height, width, 3)`` image with rectangles, and its truth boxes.

    Small objects (16-70 px) sit in a 100 px lattice offset by 50 px, so lattice
    cells cross the seams of any grid of ``seams``-pixel tiles (a multiple of 100);
    most objects in such cells are placed across the seam. ``big`` large objects
    (180-420 px) are placed across seam crossings (corners of four tiles). Objects
    never touch (gaps of at least 6 px).
    """
    rgb = np.full((height, width, 3), 255, np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    taken = np.zeros((height // 100 + 2, width // 100 + 2), bool)
    corners = [(x, y) for x in range(seams, width - 100, seams) for y in range(seams, height - 100, seams)]
    for k in rng.permutation(len(corners))[:big]:
        cx, cy = corners[k]
        w, h = rng.integers(180, 420, 2)
        x1 = int(np.clip(cx - rng.integers(w // 4, 3 * w // 4), 0, width - w))
        y1 = int(np.clip(cy - rng.integers(h // 4, 3 * h // 4), 0, height - h))
        c0, c1 = (x1 - 50) // 100, (x1 + w - 50) // 100 + 1
        r0, r1 = (y1 - 50) // 100, (y1 + h - 50) // 100 + 1
        if taken[max(r0 - 1, 0) : r1 + 1, max(c0 - 1, 0) : c1 + 1].any():
            continue
        taken[max(r0, 0) : r1 + 1, max(c0, 0) : c1 + 1] = True
        boxes.append((x1, y1, x1 + int(w), y1 + int(h)))
    for row in range((height - 50) // 100):
        for col in range((width - 50) // 100):
            if taken[row, col] or rng.random() > fill:
                continue
            x0, y0 = 50 + 100 * col, 50 + 100 * row  # the cell [x0, x0 + 100)
            w, h = (int(v) for v in rng.integers(16, 70, 2))
            x1 = x0 + 3 + int(rng.integers(0, 100 - 6 - w + 1))
            y1 = y0 + 3 + int(rng.integers(0, 100 - 6 - h + 1))
            seam_x, seam_y = (x0 + 50) % seams == 0, (y0 + 50) % seams == 0
            # across the seam at x0 + 50, still inside the cell
            if seam_x and rng.random() < 0.8:
                x1 = x0 + 50 - int(rng.integers(max(3, w - 47), min(w - 3, 47) + 1))
            if seam_y and rng.random() < 0.8:
                y1 = y0 + 50 - int(rng.integers(max(3, h - 47), min(h - 3, 47) + 1))
            boxes.append((x1, y1, x1 + w, y1 + h))
    colours, cls = _colours(len(boxes), rng)
    for (x1, y1, x2, y2), c in zip(boxes, colours):
        rgb[y1:y2, x1:x2] = c
    truth = Detections(np.asarray(boxes, np.float64), cls, colours[:, 1] / 255.0)
    return rgb, truth


def write_tiff(path: Path, rgb: np.ndarray) -> Path:
    """A tiled, zlib-compressed RGB TIFF (random access by tile)."""
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    return path


def match(truth: Detections, pred: Detections) -> np.ndarray:
    """``(len(truth),)`` number of predictions of the same class with IoU > 0.5 with each truth box."""
    from deepblock_nb.ml.merge import overlapping_pairs

    both = Detections.merge([Detections(truth.xyxy, truth.class_id), Detections(pred.xyxy, pred.class_id)])
    i, j = overlapping_pairs(both.xyxy)
    n = len(truth)
    cross = (i < n) & (j >= n) & (both.class_id[i] == both.class_id[j])
    i, j = i[cross], j[cross]
    lt = np.maximum(both.xyxy[i, :2], both.xyxy[j, :2])
    rb = np.minimum(both.xyxy[i, 2:], both.xyxy[j, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = both.area[i] + both.area[j] - inter
    hit = inter / union > 0.5
    return np.bincount(i[hit], minlength=n)


def best_iou(truth: Detections, pred: Detections) -> np.ndarray:
    """``(len(truth),)`` best IoU of each truth box with a prediction of its class."""
    out = np.zeros(len(truth))
    for c in np.unique(truth.class_id):
        t = np.flatnonzero(truth.class_id == c)
        p = pred.xyxy[pred.class_id == c]
        if len(p) == 0:
            continue
        for k in t:
            b = truth.xyxy[k]
            lt = np.maximum(b[:2], p[:, :2])
            rb = np.minimum(b[2:], p[:, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            union = (b[2] - b[0]) * (b[3] - b[1]) + (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) - inter
            out[k] = (inter / union).max()
    return out
