"""The Labeler's proposals layer without a browser: canvas and key events on a real project
whose proposals come from a real run (the rectangle detector of ``tests.ml.rect_scene``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler
from tests.ml.rect_scene import RectangleDetector
from tests.project.test_prediction import TIMEOUT, _add_run
from tests.project.test_proposals import BOXES, write_rects
from tests.widgets.conftest import mouse, settled, wait_until
from tests.widgets.test_labeler_editing import image_drag, key, view_pt


@pytest.fixture
def rproject(tmp_path: Path) -> Any:
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    for name in ("a", "b"):
        p.add_image(write_rects(tmp_path / f"{name}.png", BOXES), split="train")
    p.threshold = 0.5
    yield p
    settled()
    p.close()


def _proposed(project: dbn.Project, run: int | None = None) -> Labeler:
    project.prelabel(run=run, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    lab = Labeler(project)
    lab.show("a.png")
    settled()
    return lab


def click(lab: Labeler, xy: tuple[float, float]) -> None:
    p = view_pt(lab, xy)
    mouse(lab.view.canvas, "mouse_down", *p)
    mouse(lab.view.canvas, "mouse_up", *p)


def sources(project: dbn.Project, image: str) -> list[tuple[list[float], str]]:
    det = project.annotations(image)
    src = project.annotation_sources(det.ids)
    return sorted((b.tolist(), src[int(i)]) for b, i in zip(det.xyxy, det.ids))


def test_proposals_are_drawn_and_a_click_and_a_key_accept_one(rproject: dbn.Project) -> None:
    _add_run(rproject)
    lab = _proposed(rproject)
    layer = lab.proposals_layer
    assert layer.shown == 2 and "2 proposals" in layer.info.value
    click(lab, (50, 60))  # inside the first box (draw mode: a click, not a drag)
    assert layer.selected is not None and not layer.accept_button.disabled
    assert lab.category.value == 1  # the proposal's category is shown
    key(lab, "a")
    settled()
    assert sources(rproject, "a.png") == [([20.0, 30.0, 80.0, 90.0], "accepted")]
    assert lab._boxes.xyxy.tolist() == [[20.0, 30.0, 80.0, 90.0]]  # in memory as well
    assert layer.shown == 1 and layer.selected is None
    # undo: the box goes and the proposal is open again; redo accepts it again
    key(lab, "z", ctrl=True)
    settled()
    assert sources(rproject, "a.png") == [] and len(rproject.proposals("a.png").xyxy) == 2
    assert layer.shown == 2
    key(lab, "z", ctrl=True, shift=True)
    settled()
    assert sources(rproject, "a.png") == [([20.0, 30.0, 80.0, 90.0], "accepted")]
    lab.close()


def test_dragging_or_relabelling_a_proposal_accepts_it_corrected(rproject: dbn.Project) -> None:
    _add_run(rproject)
    lab = _proposed(rproject)
    lab.mode.value = "select"
    click(lab, (145, 70))  # the blue proposal
    assert lab.proposals_layer.selected is not None
    image_drag(lab, (145, 70), (155, 80))  # moved by 10 px
    settled()
    ((box, source),) = sources(rproject, "a.png")
    assert source == "corrected" and np.allclose(box, [130, 50, 180, 110], atol=0.5)
    click(lab, (50, 60))  # the red one, relabelled with key 2 (the second category)
    key(lab, "2")
    settled()
    det = rproject.annotations("a.png")
    assert sorted(det.class_id.tolist()) == [2, 2]
    assert [s for _, s in sources(rproject, "a.png")] == ["corrected", "corrected"]
    assert lab.proposals_layer.shown == 0
    lab.close()


def test_reject_and_accept_all_with_undo(rproject: dbn.Project) -> None:
    _add_run(rproject)
    lab = _proposed(rproject)
    layer = lab.proposals_layer
    click(lab, (50, 60))
    key(lab, "r")
    settled()
    assert len(rproject.proposals("a.png", state="rejected").xyxy) == 1 and layer.shown == 1
    key(lab, "z", ctrl=True)  # reopened
    settled()
    assert layer.shown == 2
    key(lab, "A", shift=True)  # accept all in view: one undo step
    settled()
    assert [s for _, s in sources(rproject, "a.png")] == ["accepted", "accepted"] and layer.shown == 0
    key(lab, "z", ctrl=True)
    settled()
    assert sources(rproject, "a.png") == [] and layer.shown == 2
    lab.close()


def test_propose_button_and_refresh_after_a_training_run(rproject: dbn.Project) -> None:
    first = _add_run(rproject)
    lab = Labeler(rproject)
    lab.show("a.png")
    layer = lab.proposals_layer
    layer.model = RectangleDetector()
    assert layer.shown == 0
    layer.propose_button.click()
    proposed = layer.job
    assert proposed is not None and proposed.wait(TIMEOUT).error is None
    assert wait_until(lambda: layer.shown == 2, 10)
    assert {r["run_id"] for r in rproject._store.proposals.get(rproject.proposals("a.png").ids)} == {first}
    second = _add_run(rproject)
    job = rproject._jobs.submit("train", lambda job: None)  # a training run ends
    job.wait(TIMEOUT)
    assert wait_until(lambda: layer.job is not proposed, 10)  # proposed again, with the newest run
    assert layer.job.wait(TIMEOUT).error is None and layer.job.result == [lab.image.id]
    settled()
    assert {r["run_id"] for r in rproject._store.proposals.get(rproject.proposals("a.png").ids)} == {second}
    lab.close()


def test_the_image_list_sorts_the_undecided_image_first(rproject: dbn.Project, tmp_path: Path) -> None:
    hard = [((20, 20, 60, 60), 1, 120), ((100, 100, 150, 150), 2, 140)]
    rproject.add_image(write_rects(tmp_path / "hard.png", hard), split="train")
    _add_run(rproject)
    rproject.prelabel(model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    lab = Labeler(rproject)
    names = lambda: [label.split(" (")[0] for label, _ in lab.image_list.options]  # noqa: E731
    assert names() == ["a.png", "b.png", "hard.png"]
    lab.proposals_layer.order.value = "next"
    settled()
    assert names()[0] == "hard.png"
    lab.close()
