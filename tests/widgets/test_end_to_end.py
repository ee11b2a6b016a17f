"""Train, evaluate and predict through the panels with the real trainer (tiny data, one epoch)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.demo import synthetic_scene
from deepblock_nb.widgets import EvaluatePanel, PredictPanel, TrainingPanel
from tests.widgets.conftest import wait_until

pytestmark = pytest.mark.slow


def test_train_evaluate_predict_through_the_panels(tmp_path: Path) -> None:
    p = dbn.Project.create(tmp_path / "p", categories=["disc", "square", "triangle"])
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("evaluate", 2), ("predict", 1)):
        for i in range(n):
            rgb, xyxy, cls = synthetic_scene(rng, 160, 160, n_objects=3)
            rec = p.add_image(rgb, split=split, name=f"{split}{i}.png")
            if split != "predict":
                p.add_boxes(rec, [int(k) + 1 for k in cls], xyxy)
    train = TrainingPanel(p)
    train.epochs.value = 1
    train.train_button.click()
    assert train.job is not None, train.status.value
    train.job.wait(300)
    assert train.job.status is dbn.JobStatus.FINISHED, train.status.value
    assert wait_until(lambda: len(train.score_line.y) == 1 and len(train.loss_line.y) >= 1)
    assert "finished" in train.status.value and train.progress.value == 1.0

    evaluation = EvaluatePanel(p)
    assert len(evaluation.run.options) == 2  # "latest" and the run just trained
    evaluation.evaluate_button.click()
    assert evaluation.job is not None, evaluation.status.value
    evaluation.job.wait(300)
    assert wait_until(lambda: evaluation.scorecard.report is evaluation.job.result)
    assert f"{evaluation.job.result.map50:.3f}" in evaluation.scorecard.headline.value

    reopened = EvaluatePanel(p)  # shows the stored report
    assert reopened.scorecard.report is not None
    assert np.isclose(reopened.scorecard.report.map50, evaluation.job.result.map50)

    predict = PredictPanel(p)
    predict.threshold.value = 0.0
    predict.predict_button.click()
    assert predict.job is not None, predict.status.value
    # job.wait() returns before the "done" callbacks run: wait for the panel's to finish
    # too, so that closing the project below never races its last redraw
    settled = threading.Event()
    predict.job.on("done", lambda _job: settled.set())
    assert settled.wait(300)
    assert predict.job.status is dbn.JobStatus.FINISHED, predict.status.value
    assert wait_until(lambda: "finished" in predict.status.value)
    # a one-epoch model may find nothing: the panel shows exactly what was stored
    stored = len(p.predictions(predict.image, threshold=0.0))
    assert wait_until(lambda: predict.shown == stored)
    for panel in (train, evaluation, reopened, predict):
        panel.close()
    p.close()
