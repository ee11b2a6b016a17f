"""TrainingPanel follows a real background Job: live curves, progress and ETA, status,
stop, errors, the registry's presets, past runs, and a reopened panel's curves."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepblock_nb as dbn
from deepblock_nb.demo import synthetic_scene
from deepblock_nb.jobs import Job, JobQueue
from deepblock_nb.widgets import TrainingPanel
from deepblock_nb.widgets.training import curves_from_history, eta_text
from tests.widgets.conftest import settled, wait_until

STATE = re.compile(r"text-transform:uppercase;color:[^']*'>(\w+)</b>")


def _state_word(panel: TrainingPanel) -> str:
    """The status word the panel shows (drawn in capitals)."""
    m = STATE.search(panel.status.value)
    assert m is not None, panel.status.value
    return m.group(1).upper()


def _text(value: str) -> str:
    """What an HTML widget's value reads as (its tags dropped)."""
    return re.sub(r"<[^>]+>", "", value)


def _record(panel: TrainingPanel) -> tuple[list[str], list[str]]:
    """Every status word and ETA text the panel shows from now on, in order."""
    words: list[str] = []
    etas: list[str] = []
    panel.status.observe(lambda c: words.append(_state_word(panel)), "value")
    panel.eta.observe(lambda c: etas.append(_text(c["new"])), "value")
    return words, etas


def _tiny_project(path: Path, boxes: bool = True) -> dbn.Project:
    """Four 96 x 96 train images, two objects each (labelled when ``boxes``)."""
    p = dbn.Project.create(path, categories=["disc", "square", "triangle"])
    rng = np.random.default_rng(0)
    for i in range(4):
        rgb, xyxy, cls = synthetic_scene(rng, 96, 96, n_objects=2)
        rec = p.add_image(rgb, split="train", name=f"t{i}.png")
        if boxes:
            p.add_boxes(rec, [int(k) + 1 for k in cls], xyxy)
    return p


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
    assert panel.state == "FINISHED" == _state_word(panel)
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
    assert _state_word(panel) == "TRAINING"
    panel.stop_button.click()  # the job waits for ``release``: it is STOPPING until then
    assert _state_word(panel) == "STOPPING" and panel.stop_button.disabled
    release.set()
    job.wait(5)
    assert job.status is dbn.JobStatus.STOPPED
    assert wait_until(lambda: "stopped" in panel.status.value, 5)
    assert _state_word(panel) == "STOPPED"
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
    assert "failed" in panel.status.value and _state_word(panel) == "FAILED"
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


def test_model_dropdown_lists_the_registry_with_its_summaries(wproject: dbn.Project) -> None:
    from deepblock_nb.ml.models import PRESETS, list_presets

    panel = TrainingPanel(wproject)
    try:
        assert list(panel.model.options) == ["auto", *PRESETS]
        assert panel.model.value == "auto" and panel.model.tooltip
        for name, summary in list_presets().items():
            panel.model.value = name
            assert panel.model.tooltip == summary
            assert summary in panel.model_help.value and name in panel.model_help.value
        assert (
            "0 = automatic" in panel.epochs_help.value
            and "1,000 boxes per category" in panel.epochs_help.value
        )
        assert "About 15 epochs" in panel.epochs_help.value
        assert panel.state == "IDLE" and _state_word(panel) == "IDLE"
        assert "no training runs yet" in panel.runs_table.value
    finally:
        panel.close()


@pytest.mark.parametrize(
    ("progress", "elapsed", "text"),
    [
        (0.0, 10.0, ""),  # nothing done yet: no estimate
        (1.0, 10.0, ""),
        (0.5, 0.0, ""),
        (float("nan"), 10.0, ""),
        (0.5, float("inf"), ""),
        (0.9, 9.0, "about 5 s left"),
        (0.5, 42.0, "about 45 s left"),
        (0.5, 57.0, "about 1 min left"),  # never "60 s"
        (0.5, 60.0, "about 1 min left"),
        (0.25, 60.0, "about 3 min left"),
        (0.5, 7_500.0, "about 2 h 5 min left"),
    ],
)
def test_eta_text(progress: float, elapsed: float, text: str) -> None:
    assert eta_text(progress, elapsed) == text


@pytest.mark.slow
def test_real_training_eta_status_runs_table_and_reopened_curves(tmp_path: Path) -> None:
    p = _tiny_project(tmp_path / "p")
    panel = TrainingPanel(p, interval=0.05)
    words, etas = _record(panel)
    panel.epochs.value = 3
    panel.model.value = "small"
    panel.train_button.click()
    job = panel.job
    assert job is not None, panel.status.value
    job.wait(300)
    assert job.status is dbn.JobStatus.FINISHED, panel.status.value
    settled()
    assert wait_until(lambda: _state_word(panel) == "FINISHED")
    assert "TRAINING" in words and words[-1] == "FINISHED"
    assert words.index("TRAINING") < len(words) - 1
    estimates = [e for e in etas if e.startswith("about")]
    assert estimates, etas
    assert all(re.fullmatch(r"about \d+ (s|min) left", e) for e in estimates), estimates
    assert re.fullmatch(r"took \d+ (s|min)", _text(panel.eta.value)), panel.eta.value
    print("ETA texts while training:", estimates, "| then:", _text(panel.eta.value))
    assert panel.progress.value == 1.0
    first_curves = curves_from_history(job.history)
    assert len(first_curves["score"][0]) == 3

    second = p.train(epochs=1, model="small")  # started from a cell: the panel follows it
    second.wait(300)
    assert second.status is dbn.JobStatus.FINISHED
    settled()
    assert wait_until(lambda: panel.job is second)
    runs = p.runs()
    assert list(runs["id"]) == [1, 2]
    assert wait_until(
        lambda: panel.runs_table.value.count("<tr>") == 2
    )  # two runs (the header row has a style)
    table = panel.runs_table.value
    for col in ("id", "status", "epochs", "best score", "model", "started"):
        assert f"<th>{col}</th>" in table
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>\s*<td>(\w+)</td>\s*<td>(\d+)</td>", table)
    assert rows == [("2", "finished", "1"), ("1", "finished", "3")]  # newest first
    assert f"{runs.set_index('id').loc[1, 'best_score']:.3f}" in table
    panel.close()

    again = TrainingPanel(p)  # the same session: follows the last job
    assert again.job is second
    again._throttle.flush()
    assert len(again.score_line.y) == 1
    again.close()
    p.close()

    reopened = dbn.Project.open(tmp_path / "p")  # a new session: the stored run's curves
    try:
        shown = TrainingPanel(reopened)
        assert shown.job is None and shown.shown_run == 2
        assert shown.state == "FINISHED" and _state_word(shown) == "FINISHED"
        expected = curves_from_history(second.history)
        np.testing.assert_allclose(shown.score_line.y, expected["score"][1])
        np.testing.assert_allclose(shown.loss_line.x, expected["loss"][0])
        assert len(shown.loss_line.y) >= 1
        assert "run 2" in shown.status.value and "1 epochs" in shown.status.value
        shown.show_stored_run(1)
        np.testing.assert_allclose(shown.score_line.y, first_curves["score"][1])
        assert "<td>1</td>" in shown.runs_table.value and "<td>2</td>" in shown.runs_table.value
        shown.close()
    finally:
        reopened.close()


@pytest.mark.slow
def test_real_training_stopped_from_the_panel(tmp_path: Path) -> None:
    p = _tiny_project(tmp_path / "p")
    panel = TrainingPanel(p, interval=0.05)
    words, _ = _record(panel)
    panel.epochs.value = 200
    panel.train_button.click()
    job = panel.job
    assert job is not None, panel.status.value
    assert wait_until(lambda: len(job.history) >= 2, 120)
    panel.stop_button.click()
    job.wait(120)
    assert job.status is dbn.JobStatus.STOPPED
    settled()
    assert wait_until(lambda: _state_word(panel) == "STOPPED")
    assert "TRAINING" in words and words[-1] == "STOPPED"
    assert words.index("TRAINING") < words.index("STOPPED")
    assert not panel.train_button.disabled and not panel.resume_button.disabled
    panel.close()
    p.close()


def test_real_training_without_boxes_shows_failed_with_the_error(tmp_path: Path) -> None:
    p = _tiny_project(tmp_path / "p", boxes=False)
    panel = TrainingPanel(p)
    try:
        panel.epochs.value = 1
        panel.train_button.click()
        job = panel.job
        assert job is not None, panel.status.value
        job.wait(120)
        assert job.status is dbn.JobStatus.FAILED
        settled()
        assert wait_until(lambda: _state_word(panel) == "FAILED")
        assert "no training tiles" in panel.status.value and "color:#c0392b" in panel.status.value
        assert panel.progress.bar_style == "danger" and panel.eta.value == ""
        assert wait_until(lambda: "<td>failed</td>" in panel.runs_table.value)
    finally:
        panel.close()
        p.close()
