"""Shared fixtures: tiny real image files and fresh projects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn

# No test reaches the network for pretrained weights (subprocesses inherit this too);
# tests/ml/test_weights_fetch.py turns fetching on against a server of its own.
os.environ["DEEPBLOCK_DOWNLOAD_WEIGHTS"] = "0"


def write_png(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """A small RGB PNG with random pixels."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = dbn.Project.create(tmp_path / "proj", categories=["car", "person"])
    yield p
    p.close()


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return write_png(tmp_path / "src" / "photo.png")
