"""project.threshold: the user's value once set, else the newest evaluation's best-F1 threshold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.jobs import JobStatus
from tests.ml.rect_scene import RectangleDetector
from tests.project.test_prediction import TIMEOUT, _add_run, _frame, _png_bytes


def _evaluate(project: dbn.Project) -> dbn.metrics.EvaluationReport:
    job = project.evaluate(model=RectangleDetector()).wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    return job.result  # type: ignore[no-any-return]


@pytest.fixture
def evaluable(tmp_path: Path) -> Iterator[dbn.Project]:
    """Two evaluate images, each with a red object (scored 0.78) and a blue one (scored 0.24), both labelled."""
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    rgb, truth = _frame()
    for k in range(2):
        rec = p.add_image(_png_bytes(rgb), split="evaluate", name=f"eval{k}.png")
        p.add_boxes(rec, [1, 2], truth.xyxy)
    _add_run(p)
    yield p
    p.close()


def test_the_threshold_follows_evaluations_until_the_user_sets_it(evaluable: dbn.Project) -> None:
    p = evaluable
    seen: list[float] = []
    p.on("threshold", lambda topic, value, **_: seen.append(value))
    assert p.threshold == 0.5  # nothing evaluated, nothing chosen

    # every object is found, the blue ones at 60/255: F1 is 1 up to 0.23, the highest such grid value
    report = _evaluate(p)
    assert report.threshold_rule == "best F1" and report.threshold == report.best_threshold == 0.23
    assert (report.recall, report.f1) == (1.0, 1.0)
    at = report.at_threshold  # the figures at the threshold the project had: 0.5 misses the blue objects
    assert at is not None and (at.threshold, at.recall, at.tp, at.fn) == (0.5, 0.5, 2, 2)
    assert p.threshold == 0.23 and seen == [0.23]  # the slider's new start, announced after the commit
    assert np.array_equal(p.predictions("eval0.png").class_id, [1, 2])  # the slider filters at 0.23

    # the blue objects unlabelled: their predictions are false positives, the best cut is 0.78
    for name in ("eval0.png", "eval1.png"):
        blue = p.annotations(name)
        p.delete_box(int(blue.ids[blue.class_id == 2][0]))  # type: ignore[index]
    report = _evaluate(p)
    assert report.best_threshold == 0.78 and report.at_threshold.threshold == 0.23  # type: ignore[union-attr]
    assert p.threshold == 0.78 and seen == [0.23, 0.78]

    # the user's choice stays through another evaluation, which no longer moves it
    p.threshold = 0.7
    assert seen == [0.23, 0.78, 0.7]
    report = _evaluate(p)
    assert report.at_threshold.threshold == 0.7 and report.best_threshold == 0.78  # type: ignore[union-attr]
    assert p.threshold == 0.7 and seen == [0.23, 0.78, 0.7]

    # None forgets the user's value: back to the newest evaluation's
    p.threshold = None
    assert p.threshold == 0.78 and seen[-1] == 0.78


def test_reopening_keeps_the_evaluated_and_the_users_threshold(evaluable: dbn.Project) -> None:
    path = evaluable.path
    _evaluate(evaluable)
    evaluable.close()
    with dbn.Project.open(path) as p:
        assert p.threshold == 0.23  # the evaluation's, not 0.5
        p.threshold = 0.7
    with dbn.Project.open(path) as p:
        assert p.threshold == 0.7  # the user's
        assert p.evaluations()[-1].best_threshold == 0.23
        p.threshold = None
        assert p.threshold == 0.23  # and the evaluation's is still there beneath it


@pytest.mark.parametrize("value", [-0.01, 1.5, float("nan")])
def test_a_threshold_outside_zero_to_one_is_refused(evaluable: dbn.Project, value: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluable.threshold = value
    assert evaluable.threshold == 0.5
