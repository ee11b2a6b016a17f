"""project.evaluation_errors / confusion_matrix over the stored predictions of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ArgumentError
from tests.conftest import write_png


def store_evaluation(project: dbn.Project, run_id: int, predictions: dict[int, Detections]) -> object:
    """Store a run's predictions of the evaluate images and their report, as project.evaluate does."""
    records = project.images("evaluate")
    for rec in records:
        project._store.predictions.replace(
            rec.id, run_id, predictions.get(rec.id, Detections.empty(with_confidence=True))
        )
    report = dbn.metrics.evaluate(
        [project.annotations(r) for r in records],
        [project._store.predictions.of_image(r.id, run_id) for r in records],
        categories={c.id: c.name for c in project.categories},
    )
    project._store.runs.save_evaluation(run_id, {**report.to_dict(), "image_ids": [r.id for r in records]})
    return report


@pytest.fixture
def evaluated(tmp_path: Path, project: dbn.Project) -> tuple[dbn.Project, int, object]:
    """Two evaluate images (car=1, person=2): a found car, a car taken for a person, a false
    person, a missed person; and a train image whose predictions of another run are ignored."""
    a = project.add_image(write_png(tmp_path / "a.png", 200, 100, seed=1), split="evaluate")
    b = project.add_image(write_png(tmp_path / "b.png", 200, 100, seed=2), split="evaluate")
    project.add_image(write_png(tmp_path / "t.png", 50, 50, seed=3), split="train")
    project.add_boxes(a, [1, 1], [[10, 10, 40, 40], [100, 20, 150, 60]])
    project.add_boxes(b, [2], [[20, 20, 80, 90]])
    run_id = project._store.runs.create("test", {})
    preds = {
        a.id: Detections(
            np.array([[10, 10, 40, 40], [100, 20, 150, 60], [160, 60, 190, 90]], float),
            np.array([1, 2, 2]),
            np.array([0.9, 0.8, 0.6]),
        ),
        b.id: Detections(np.array([[0, 0, 5, 5]], float), np.array([2]), np.array([0.2])),
    }
    report = store_evaluation(project, run_id, preds)
    # a later run's predictions of the same image, never evaluated: not the evaluation's
    other = project._store.runs.create("test", {})
    project._store.predictions.replace(a.id, other, Detections.empty(with_confidence=True))
    return project, run_id, report


def test_errors_of_the_newest_evaluation(evaluated: tuple[dbn.Project, int, object]) -> None:
    project, run_id, report = evaluated
    a, b = project.images("evaluate")
    rows = project.evaluation_errors(threshold=0.5)
    assert [(r.image, r.name, r.kind, r.truth, r.predicted) for r in rows.itertuples()] == [
        (a.id, "a.png", "confused", "car", "person"),
        (a.id, "a.png", "false positive", None, "person"),
        (b.id, "b.png", "missed", "person", None),
    ]
    assert rows["score"].tolist()[:2] == [0.8, 0.6]
    assert rows["truth_xyxy"].iloc[0] == pytest.approx((100, 20, 150, 60))
    assert rows["predicted_xyxy"].iloc[1] == pytest.approx((160, 60, 190, 90))
    m = project.confusion_matrix(threshold=0.5)
    assert m.loc["car"].tolist() == [1, 1, 0] and m.loc["person"].tolist() == [0, 0, 1]
    assert m.loc["background"].tolist() == [0, 1, 0]
    # at 0.1 the person box of b is predicted too (IoU 0): one more false positive
    assert (project.evaluation_errors(threshold=0.1)["kind"] == "false positive").sum() == 2
    # by run; and threshold None is the report's headline threshold, with the report's counts
    assert project.evaluation_errors(run=run_id).equals(project.evaluation_errors())
    found = project._prediction.errors(None, None)
    assert found.threshold == report.threshold  # type: ignore[attr-defined]
    assert (found.tp, found.fp, found.fn) == (report.tp, report.fp, report.fn)  # type: ignore[attr-defined]


def test_no_evaluation_or_a_bad_argument_is_refused(project: dbn.Project) -> None:
    with pytest.raises(ArgumentError, match="no evaluation yet"):
        project.evaluation_errors()
    run_id = project._store.runs.create("test", {})
    with pytest.raises(ArgumentError, match=f"run {run_id} has no evaluation"):
        project.confusion_matrix(run=run_id)
    with pytest.raises(ArgumentError, match="run is a run id"):
        project.evaluation_errors(run="latest")  # type: ignore[arg-type]


def test_a_threshold_out_of_range_is_refused(evaluated: tuple[dbn.Project, int, object]) -> None:
    project = evaluated[0]
    with pytest.raises(ArgumentError, match="threshold must lie in"):
        project.evaluation_errors(threshold=1.5)
