"""A generated demo data set and project: shapes on textured backgrounds.

``python -m deepblock_nb.demo PATH`` creates (or reuses) a demo project at PATH.
:func:`synthetic_scene` is also what the tests and benchmarks train on: the
objects are real drawn pixels with exact boxes, so learning is measurable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "create_demo_project", "synthetic_scene"]

SHAPES = ("disc", "square", "triangle")
_COLORS = np.array(
    [[220, 40, 40], [40, 160, 60], [40, 80, 220], [230, 200, 30], [160, 40, 180], [20, 200, 200]]
)


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 background: smooth colour gradients plus coarse and fine noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    slope = rng.uniform(-40, 40, (2, 3)).astype(np.float32)
    img = base + (xx[..., None] / max(width, 1)) * slope[0] + (yy[..., None] / max(height, 1)) * slope[1]
    coarse = rng.normal(0, 18, (max(height // 16, 1), max(width // 16, 1), 1)).astype(np.float32)
    coarse = np.kron(coarse, np.ones((16, 16, 1), np.float32))
    pad_h, pad_w = max(height - coarse.shape[0], 0), max(width - coarse.shape[1], 0)
    coarse = np.pad(coarse, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")[:height, :width]
    img = img + coarse + rng.normal(0, 8, (height, width, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_scene(
    rng: np.random.Generator,
    width: int = 256,
    height: int = 256,
    n_objects: int = 4,
    size_range: tuple[int, int] = (18, 48),
    n_classes: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n_objects`` shapes on a textured background.

    Returns:
        rgb: ``(H, W, 3)`` uint8 image.
        xyxy: ``(N, 4)`` float64 exact boxes in pixels (N <= n_objects: shapes are
            placed without overlapping more than a little).
        class_index: ``(N,)`` int64 in ``[0, n_classes)``: 0 disc, 1 square, 2 triangle.
    """
    img = Image.fromarray(_texture(rng, width, height))
    draw = ImageDraw.Draw(img)
    boxes: list[list[float]] = []
    classes: list[int] = []
    lo, hi = size_range
    hi = max(min(hi, width - 2, height - 2), 2)
    lo = min(lo, hi)
    for _ in range(n_objects * 10):
        if len(boxes) == n_objects:
            break
        s = int(rng.integers(lo, hi + 1))
        x = int(rng.integers(0, width - s + 1))
        y = int(rng.integers(0, height - s + 1))
        box = [float(x), float(y), float(x + s), float(y + s)]
        if any(_iou(box, b) > 0.05 for b in boxes):
            continue
        k = int(rng.integers(0, n_classes))
        color = tuple(int(c) for c in _COLORS[rng.integers(0, len(_COLORS))])
        outline = tuple(int(c) // 3 for c in color)
        shape = k % 3
        if shape == 0:
            draw.ellipse([x, y, x + s - 1, y + s - 1], fill=color, outline=outline, width=2)
        elif shape == 1:
            draw.rectangle([x, y, x + s - 1, y + s - 1], fill=color, outline=outline, width=2)
        else:
            draw.polygon(
                [(x + s / 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=color, outline=outline
            )
        boxes.append(box)
        classes.append(k)
    return (
        np.asarray(img),
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(classes, dtype=np.int64),
    )


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def create_demo_project(path: str | Path, seed: int = 0, n_train: int = 24, n_evaluate: int = 8) -> Any:
    """Create a demo project (or open it when it exists): three shape categories,
    labelled train and evaluate images, and a large (3000 x 2000) image to predict
    on, divided into a 2 x 3 grid.
    """
    from deepblock_nb.project import Project

    path = Path(path)
    if (path / "project.db").is_file():
        return Project.open(path)
    rng = np.random.default_rng(seed)
    source = path.parent / f".{path.name}-sources"
    source.mkdir(parents=True, exist_ok=True)
    project = Project.create(path, categories=list(SHAPES))
    cats = [c.id for c in project.categories]
    for split, count in (("train", n_train), ("evaluate", n_evaluate)):
        for i in range(count):
            rgb, xyxy, cls = synthetic_scene(rng, 320, 320, n_objects=int(rng.integers(3, 8)))
            file = source / f"{split}-{i:03d}.png"
            Image.fromarray(rgb).save(file)
            rec = project.add_image(file, split=split)
            if len(xyxy):
                project.add_boxes(rec, [cats[k] for k in cls], xyxy)
    rgb, _, _ = synthetic_scene(rng, 3000, 2000, n_objects=60, size_range=(24, 60))
    file = source / "survey.jpg"
    Image.fromarray(rgb).save(file, quality=92)
    big = project.add_image(file, split="predict")
    project.set_grid(big, *project.suggest_grid(big, tile_size=1000))
    return project


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create the deepblock_nb demo project.")
    parser.add_argument("path", nargs="?", default="demo_project")
    args = parser.parse_args(argv)
    project = create_demo_project(args.path)
    print(project)
    project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
