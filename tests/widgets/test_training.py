"""TrainingPanel follows a real background Job: live curves, progress, stop, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

import deepblock_nb as dbn
from deepblock_nb.jobs import Job, JobQueue
from deepblock_nb.widgets import TrainingPanel
from deepblock_nb.widgets.training import curves_from_history
from tests.widgets.conftest import wait_until


def _fake_training(epochs: int, steps: int, pause: float, release: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def work(job: Job) -> None:
        step = 0
        for epoch in range(1, epochs + 1):
            for _ in range(steps):
                if job.should_stop:
                    return
                step += 1
                job.add_history({"kind": "step", "epoch": epoch, "step": step, "loss": 2.0 / step})
                time.sleep(pause)
            job.add_history(
                {
                    "kind": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "loss": 1.0 / epoch,
                    "score": epoch / epochs,
                    "seconds": 0.1,
                }
            )
            job.set_progress(epoch / epochs, f"epoch {epoch}/{epochs}")
            if release is not None:
                release.wait(5)
        job.result = 1

    return work


def test_curves_follow_history_from_a_worker_thread_throttled(wproject: dbn.Project) -> None:
    panel = TrainingPanel(wproject, interval=0.1)
    q = JobQueue()
    job = q.submit("train", _fake_training(epochs=3, steps=40, pause=0.002))
    panel.attach(job)
    assert wait_until(lambda: job.status.done, 10)
    assert wait_until(lambda: len(panel.score_line.y) == 3, 5)
    assert len(panel.loss_line.x) == 120
    np.testing.assert_allclose(panel.score_line.y, [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(panel.score_line.x, [40, 80, 120])
    assert panel.progress.value == 1.0
    assert "finished" in panel.status.value and "epoch 3/3" in panel.status.value
    assert not panel.train_button.disabled and panel.stop_button.disabled
    # 123 history events; the throttle sent far fewer updates (about 10 a second)
    assert panel._throttle.calls < 123 / 3


def test_stop_button_stops_the_job(wproject: dbn.Project) -> None:
    panel = TrainingPanel(wproject, interval=0.05)
    release = threading.Event()
    job = JobQueue().submit("train", _fake_training(epochs=5, steps=2, pause=0.0, release=release))
    panel.attach(job)
    assert wait_until(lambda: len(panel.score_line.y) >= 1, 5)
    assert panel.train_button.disabled and not panel.stop_button.disabled
    panel.stop_button.click()
    release.set()
    job.wait(5)
    assert job.status is dbn.JobStatus.STOPPED
    assert wait_until(lambda: "stopped" in panel.status.value, 5)
    assert len(panel.score_line.y) < 5


def test_failed_job_shows_its_error(wproject: dbn.Project) -> None:
    panel = TrainingPanel(wproject)

    def work(job: Job) -> None:
        job.add_history({"epoch": 1, "loss": 1.0})
        raise ValueError("no boxes in image 'a.png'")

    job = JobQueue().submit("train", work)
    panel.attach(job)
    job.wait(5)
    assert wait_until(lambda: "no boxes in image" in panel.status.value, 5)
    assert "failed" in panel.status.value
    assert panel.progress.bar_style == "danger"


def test_resume_without_a_run_reports_the_project_error(wproject: dbn.Project) -> None:
    panel = TrainingPanel(wproject)
    panel.resume_button.click()  # project.train(resume=True) with no earlier run
    assert panel.job is None
    assert "color:#c0392b" in panel.status.value and "run" in panel.status.value.lower()


@pytest.mark.parametrize(
    ("rows", "n_loss", "n_score"),
    [
        ([], 0, 0),
        ([{"epoch": 1}], 0, 0),
        ([{"loss": 1.0}, {"loss": 0.5}], 2, 0),
        ([{"epoch": 1, "score": 0.2}, {"epoch": 2, "score": float("nan")}], 0, 1),
        (
            [
                {"kind": "step", "step": 1, "loss": 1.0},
                {"kind": "epoch", "step": 1, "epoch": 1, "loss": 0.9, "score": 0.3},
            ],
            1,
            1,
        ),
    ],
)
def test_curves_from_history_is_robust(rows: list, n_loss: int, n_score: int) -> None:
    c = curves_from_history(pd.DataFrame(rows))
    assert len(c["loss"][0]) == len(c["loss"][1]) == n_loss
    assert len(c["score"][0]) == n_score
