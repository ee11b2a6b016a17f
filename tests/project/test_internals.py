"""The Project's internals as its users rely on them: current predictions, events
after commit, threads and connections under load, queued jobs, resume settings."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import deepblock_nb as dbn
from deepblock_nb.errors import FormatError
from deepblock_nb.jobs import JobStatus
from deepblock_nb.ml.checkpoints import save_checkpoint
from deepblock_nb.ml.models import CUSTOM
from deepblock_nb.store.events import PAYLOADS
from tests.conftest import write_png
from tests.ml.rect_scene import RectangleDetector

TIMEOUT = 120


class FindsNothing(torch.nn.Module):
    """The detection contract, finding no object anywhere."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [
            {
                "boxes": torch.zeros(0, 4),
                "labels": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0),
            }
            for _ in images
        ]


def _add_run(project: dbn.Project, module: torch.nn.Module) -> int:
    run_id = project._store.runs.create(CUSTOM, {})
    save_checkpoint(
        {
            "model_state": module.state_dict(),
            "preset": CUSTOM,
            "preset_options": {},
            "category_ids": [c.id for c in project.categories],
            "tile_size": 256,
            "epoch": 1,
            "best_score": 1.0,
        },
        project.run_dir(run_id) / "best.pt",
    )
    project._store.runs.update(run_id, status="finished", finished=True)
    return run_id


def _scene(path: Path) -> Path:
    from PIL import Image

    rgb = np.full((200, 300, 3), 255, np.uint8)
    rgb[20:60, 30:90] = (255, 200, 10)  # class 1
    rgb[120:180, 200:260] = (5, 60, 255)  # class 2
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    yield p
    p.close()


def _threads() -> int:
    """Live threads, less the trainer's tile readers (a pool started anew each epoch)."""
    return sum(not t.name.startswith("deepblock-data") for t in threading.enumerate())


class Recorder:
    """Records every event of every topic, with the thread it arrived on."""

    def __init__(self, project: dbn.Project) -> None:
        self.events: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.Lock()
        for topic in PAYLOADS:
            project.on(topic, self)

    def __call__(self, topic: str, **payload: Any) -> None:
        with self._lock:
            self.events.append((topic, payload, threading.current_thread().name))

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _, _ in self.events]


# -- current predictions -------------------------------------------------------------
def test_a_repredict_that_finds_nothing_leaves_no_current_boxes(project: dbn.Project, tmp_path: Path) -> None:
    rec = project.add_image(_scene(tmp_path / "scene.png"), split="predict")
    finds = _add_run(project, RectangleDetector())
    project.predict(run=finds, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    assert len(project.predictions(rec, threshold=0.0)) == 2
    assert int(project.statistics(threshold=0.0).loc["total", "total"]) == 2

    nothing = _add_run(project, FindsNothing())
    project.predict(run=nothing, model=FindsNothing()).wait(TIMEOUT, raise_on_error=True)
    assert len(project.predictions(rec, threshold=0.0)) == 0
    assert int(project.statistics(threshold=0.0).loc["total", "total"]) == 0
    out = project.export_predictions(tmp_path / "preds.json", threshold=0.0)
    assert json.loads(out.read_text()) == []
    # the first run's boxes are still there when asked for by run, but not current
    assert len(project.predictions(rec, threshold=0.0, run=finds)) == 2

    project.predict(run=finds, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    assert len(project.predictions(rec, threshold=0.0)) == 2
    project.clear_predictions(rec)
    assert len(project.predictions(rec, threshold=0.0)) == 0
    assert int(project.statistics(threshold=0.0).loc["total", "total"]) == 0


# -- events after commit --------------------------------------------------------------
def test_a_failed_import_announces_nothing(project: dbn.Project, tmp_path: Path) -> None:
    write_png(tmp_path / "data" / "a.png", 64, 48)
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "brand-new"}, {"id": 2, "name": "also-new"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [500, 500, 10, 10]},  # wholly outside
        ],
    }
    path = tmp_path / "data" / "ann.json"
    path.write_text(json.dumps(coco))
    recorder = Recorder(project)
    before = [c.name for c in project.categories]
    with pytest.raises(FormatError):
        project.import_annotations(path)
    assert recorder.topics() == []
    assert [c.name for c in project.categories] == before and project.images() == []

    coco["annotations"] = coco["annotations"][:1]
    path.write_text(json.dumps(coco))
    project.import_annotations(path)
    topics = recorder.topics()
    assert topics.count("categories") == 2 and "images" in topics and topics[-1] == "annotations"


def test_every_event_has_its_topics_one_payload_shape(project: dbn.Project, tmp_path: Path) -> None:
    recorder = Recorder(project)
    rec = project.add_image(_scene(tmp_path / "s.png"), split="predict")
    cat = project.add_category("green")
    project.rename_category(cat, "lime")
    box = project.add_box(rec, "lime", [1, 1, 20, 20])
    project.update_box(box, [2, 2, 20, 20])
    project.delete_box(box)
    project.set_grid(rec, 2, 2)
    project.clear_grid(rec)
    project.threshold = 0.3
    run = _add_run(project, RectangleDetector())
    project.predict(run=run, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    ev = project.add_image(_scene(tmp_path / "e.png"), split="evaluate", name="e.png")
    project.add_box(ev, "red", [30, 20, 90, 60])
    project.evaluate(run=run, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)
    project.prelabel([ev], run=run, threshold=0.0, model=RectangleDetector()).wait(
        TIMEOUT, raise_on_error=True
    )
    project.clear_proposals()
    project.clear_predictions()
    project.remove_category("lime")
    project.set_split(rec, "train")
    project.remove_image(rec)
    seen = set()
    for topic, payload, _ in recorder.events:
        assert set(payload) == set(PAYLOADS[topic]), (topic, payload)
        seen.add(topic)
    assert seen == set(PAYLOADS)


# -- threads and connections under load ------------------------------------------------
def test_annotation_events_during_training_leave_threads_and_connections_flat(
    project: dbn.Project, tmp_path: Path
) -> None:
    from deepblock_nb.widgets import Labeler, PredictPanel, TrainingPanel
    from deepblock_nb.widgets._util import ui_idle

    recs = [project.add_image(write_png(tmp_path / f"t{i}.png", 96, 96, seed=i)) for i in range(3)]
    for r in recs:
        project.add_box(r, "red", [10, 10, 50, 50])
    widgets = [Labeler(project), TrainingPanel(project), PredictPanel(project)]
    target = recs[0]
    # warm up: every long-lived thread (the job worker, the UI thread) exists now
    for _ in range(20):
        project.delete_box(project.add_box(target, "blue", [5, 5, 30, 30]))
    assert ui_idle(10)
    threads_before = _threads()
    job = project.train(epochs=50, model="ssdlite", tile_size=64, batch_size=2, holdout=0.0)
    deadline = time.monotonic() + TIMEOUT
    while job.history.empty and not job.done and time.monotonic() < deadline:
        time.sleep(0.05)  # until its first step: the job's thread and connection exist
    assert ui_idle(10)
    threads_training = _threads()
    connections_training = project._db.open_connections
    counts = []
    for i in range(500):  # 1,000 annotation events while the model trains
        box = project.add_box(target, "blue", [5 + i % 20, 5, 40, 40])
        project.delete_box(box)
        if i % 100 == 0:
            counts.append((_threads(), project._db.open_connections))
    assert job.status in (JobStatus.RUNNING, JobStatus.STOPPING), "training must still run"
    job.stop().wait(TIMEOUT)
    assert ui_idle(10)
    print(
        f"\nthreads, open SQLite connections every 100 events: {counts} (training: {threads_training}, {connections_training})"
    )
    for threads, connections in counts:
        assert threads <= threads_training, counts
        assert connections <= connections_training, counts
    assert _threads() <= threads_before + 2  # the worker may linger; nothing per event
    for w in widgets:
        w.close()


# -- jobs --------------------------------------------------------------------------------
def test_a_queued_train_job_stopped_is_stopped_with_its_run(project: dbn.Project, tmp_path: Path) -> None:
    release = threading.Event()
    blocker = project._jobs.submit("block", lambda job: release.wait(TIMEOUT))
    rec = project.add_image(write_png(tmp_path / "a.png", 64, 64))
    project.add_box(rec, "red", [5, 5, 40, 40])
    job = project.train(epochs=1, model="ssdlite")
    run_id = job.result
    assert job.status is JobStatus.QUEUED
    assert project._store.runs.get(run_id)["status"] == "queued"
    job.stop()
    assert job.status is JobStatus.STOPPED and job.done
    assert project._store.runs.get(run_id)["status"] == "stopped"
    release.set()
    blocker.wait(TIMEOUT)
    assert project._store.runs.get(run_id)["status"] == "stopped"  # the worker never ran it
    assert not (project.run_dir(run_id) / "last.pt").exists()


# -- resume --------------------------------------------------------------------------------
def test_resume_uses_a_passed_value_even_when_it_is_the_default(project: dbn.Project, tmp_path: Path) -> None:
    for i in range(2):
        rec = project.add_image(write_png(tmp_path / f"r{i}.png", 64, 64, seed=i))
        project.add_box(rec, "red", [5, 5, 40, 40])
    first = project.train(epochs=1, model="ssdlite", augment=False, empty_rate=0.5, holdout=0.0)
    first.wait(TIMEOUT, raise_on_error=True)
    run_id = first.result
    # augment=True is TrainConfig's default: passed explicitly, it must be used
    again = project.train(epochs=1, resume=run_id, augment=True).wait(TIMEOUT, raise_on_error=True)
    assert again.status is JobStatus.FINISHED
    config = torch.load(project.run_dir(run_id) / "last.pt", weights_only=True)["config"]
    assert config["augment"] is True
    assert config["empty_rate"] == 0.5  # not passed: the run's saved value
    stored = project._store.runs.get(run_id)["config"]
    assert stored["augment"] is True and stored["empty_rate"] == 0.5


# -- reviewed images ---------------------------------------------------------------------
def test_a_reviewed_empty_evaluate_image_counts_its_false_positives(
    project: dbn.Project, tmp_path: Path
) -> None:
    labelled = project.add_image(_scene(tmp_path / "l.png"), split="evaluate", name="labelled.png")
    project.add_box(labelled, "red", [30, 20, 90, 60])
    project.add_box(labelled, "blue", [200, 120, 260, 180])
    empty = project.add_image(_scene(tmp_path / "e.png"), split="evaluate", name="empty.png")
    run = _add_run(project, RectangleDetector())
    recorder = Recorder(project)

    first = project.evaluate(run=run, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True).result
    assert first.precision == pytest.approx(1.0)  # the unreviewed image without boxes is left out

    assert not empty.reviewed
    empty = project.set_reviewed(empty)
    assert empty.reviewed and project.image("empty.png").reviewed
    assert ("images", "reviewed") in [(t, p.get("action")) for t, p, _ in recorder.events]
    second = project.evaluate(run=run, model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True).result
    # the two rectangles on the reviewed empty image are false positives now
    assert second.recall == pytest.approx(1.0) and second.precision == pytest.approx(0.5)
    assert not project.set_reviewed(empty, False).reviewed


def test_train_tiles_come_from_labelled_or_reviewed_images_only(project: dbn.Project, tmp_path: Path) -> None:
    labelled = project.add_image(write_png(tmp_path / "a.png", 64, 64))
    project.add_box(labelled, "red", [5, 5, 40, 40])
    unlabelled = project.add_image(write_png(tmp_path / "b.png", 64, 64, seed=1))
    ids = [c.id for c in project.categories]
    names = {Path(t.image_path).name for t in project._training._tile_items("train", ids)}
    assert names == {"a.png"}
    project.set_reviewed(unlabelled)
    names = {Path(t.image_path).name for t in project._training._tile_items("train", ids)}
    assert names == {"a.png", "b.png"}
