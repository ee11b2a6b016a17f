"""Fixtures for widget tests: a real project with real image files, and event helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from deepblock_nb.demo import synthetic_scene
from deepblock_nb.widgets._util import ui_idle


@pytest.fixture
def wproject(tmp_path: Path) -> Iterator[dbn.Project]:
    """Three categories; two 400x300 train images with boxes, one 1600x1200 predict image."""
    p = dbn.Project.create(tmp_path / "proj", categories=["disc", "square", "triangle"])
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        rgb, xyxy, cls = synthetic_scene(rng, 400, 300, n_objects=3)
        f = src / f"train-{i}.png"
        Image.fromarray(rgb).save(f)
        rec = p.add_image(f, split="train")
        p.add_boxes(rec, [int(k) + 1 for k in cls], xyxy)
    rgb, _, _ = synthetic_scene(rng, 1600, 1200, n_objects=10)
    big = src / "big.jpg"
    Image.fromarray(rgb).save(big, quality=90)
    p.add_image(big, split="predict")
    yield p
    # let queued widget updates finish on the UI thread before the database closes
    ui_idle(5.0)
    p.close()


def mouse(canvas: object, event: str, x: float, y: float) -> None:
    """Send a browser mouse event to an ipycanvas (Multi)Canvas as the front end would."""
    canvas._handle_custom_msg({"event": event, "x": x, "y": y}, [])  # type: ignore[attr-defined]


def drag(canvas: object, p0: tuple[float, float], p1: tuple[float, float], steps: int = 5) -> None:
    mouse(canvas, "mouse_down", *p0)
    for t in np.linspace(0, 1, steps):
        mouse(canvas, "mouse_move", p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]))
    mouse(canvas, "mouse_up", *p1)


def settled(timeout: float = 5.0) -> None:
    """Wait for the UI thread to run every widget update queued so far (project events
    no longer update widgets on the emitting thread)."""
    assert ui_idle(timeout), f"the widgets' UI thread was still busy after {timeout} s"


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def seed_predictions(
    project: dbn.Project, image: object, xyxy: np.ndarray, class_id: list[int], scores: list[float]
) -> None:
    """Store predictions for an image as a finished predict job would, and announce them."""
    rec = project.image(image)  # type: ignore[arg-type]
    run_id = project._store.runs.create("test", {})
    det = Detections(np.asarray(xyxy, float), np.asarray(class_id), np.asarray(scores, float))
    project._store.predictions.replace(rec.id, run_id, det)
    project._emit("predictions", action="stored", image=rec, run=run_id)
