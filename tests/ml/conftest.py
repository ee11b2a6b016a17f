"""A generated data set: coloured squares and discs on textured backgrounds.

Small enough to train on in seconds, large enough that learning shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SQUARE, DISC = 1, 2


@dataclass
class ShapeImage:
    path: Path
    xyxy: np.ndarray  # (N, 4) float image pixels
    category_ids: np.ndarray  # (N,) int: 1 square, 2 disc
    size: tuple[int, int]  # (width, height)


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Noise plus stripes of random direction: a background that is not flat."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # [H,W]
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq)[..., None]  # [H,W,1]
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    noise = rng.normal(0, 18, size=(h, w, 3)).astype(np.float32)
    return np.clip(base + 35 * stripes + noise, 0, 255).astype(np.uint8)


def make_shapes(
    folder: Path,
    n_images: int,
    size: tuple[int, int] = (128, 128),
    *,
    objects: tuple[int, int] = (1, 3),
    object_px: tuple[int, int] = (22, 44),
    seed: int = 0,
    fmt: str = "png",
    categories: int = 2,
) -> list[ShapeImage]:
    """Write ``n_images`` images with squares (category 1) and discs (category 2);
    ``categories=1`` draws squares only."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    w, h = size
    for i in range(n_images):
        im = Image.fromarray(_texture(rng, w, h))
        draw = ImageDraw.Draw(im)
        boxes, cats = [], []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            s = int(rng.integers(object_px[0], object_px[1] + 1))
            x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            cat = int(rng.integers(1, categories + 1))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            if cat == SQUARE:
                draw.rectangle([x0, y0, x0 + s - 1, y0 + s - 1], fill=colour, outline=(0, 0, 0))
            else:
                draw.ellipse([x0, y0, x0 + s - 1, y0 + s - 1], fill=colour, outline=(0, 0, 0))
            boxes.append([x0, y0, x0 + s, y0 + s])
            cats.append(cat)
        path = folder / f"shapes_{i:03d}.{fmt}"
        im.save(path)
        out.append(
            ShapeImage(path, np.asarray(boxes, float).reshape(-1, 4), np.asarray(cats, np.int64), (w, h))
        )
    return out


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> list[ShapeImage]:
    """32 images of 128 x 128 pixels."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), 32)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shape_maker():  # type: ignore[no-untyped-def]
    """The generator itself, for tests that need their own images."""
    return make_shapes
