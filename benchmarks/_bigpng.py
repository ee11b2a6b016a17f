"""A large PNG for the benchmarks, written by libvips in bounded memory (imported by
name: the benchmarks run as scripts, so this folder is on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 1000


def _tile(seed: int) -> np.ndarray:
    """``(TILE, TILE, 3)`` uint8: smooth stripes plus rectangles (objects for a detector)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)
    base = 128 + 60 * np.sin(xx * 0.013) * np.cos(yy * 0.011)
    rgb = np.stack([base, base * 0.8 + 20, 255 - base], axis=-1).astype(np.uint8)
    for _ in range(60):
        s = int(rng.integers(10, 60))
        x, y = rng.integers(0, TILE - s, 2)
        rgb[y : y + s, x : x + s] = rng.integers(0, 256, 3)
    return rgb


def make_png(path: Path, size: int, seed: int = 0) -> Path:
    """A ``size x size`` RGB PNG (a 1000-px texture repeated), made once; never held whole."""
    import pyvips

    if path.exists():
        return path
    tile = _tile(seed)
    im = pyvips.Image.new_from_memory(tile.tobytes(), TILE, TILE, 3, "uchar")
    n = -(-size // TILE)
    big = im.replicate(n, n).crop(0, 0, size, size)
    tmp = path.with_suffix(".partial.png")
    big.pngsave(str(tmp), compression=1)
    tmp.rename(path)
    return path
