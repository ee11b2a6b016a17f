"""Prediction on a Dask cluster (``project.predict(..., client=...)``) against a local predict."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ArgumentTypeError, ImageFailures
from deepblock_nb.jobs import Job, JobStatus
from deepblock_nb.store import ImageRecord
from tests.ml.rect_scene import RectangleDetector, make_scene, write_tiff
from tests.project.test_prediction import _add_run, _frame, _png_bytes

distributed = pytest.importorskip("distributed")

TIMEOUT = 180


class SlowRectangleDetector(RectangleDetector):
    """The rectangle detector, a fixed time per model call (time for a Stop to land)."""

    def forward(self, images: list) -> list:  # type: ignore[override,type-arg]
        time.sleep(0.4)
        return super().forward(images)


class UnpicklableDetector(RectangleDetector):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    # Dask's nanny sets its ``pre-spawn-environ`` (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_)
    # in this process's environment for good: every process started later would inherit it
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb, _ = make_scene(3000, 3000, 500, np.random.default_rng(5), big=3)
    return write_tiff(tmp_path_factory.mktemp("scene") / "scene.tif", rgb)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[dbn.Project]:
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    yield p
    p.close()


def _four_images(project: dbn.Project, scene_file: Path) -> list[ImageRecord]:
    big = project.add_image(scene_file, split="predict")
    project.set_grid(big, 6, 6, overlap=0.1)  # 36 tiles: several tasks of tile ranges
    rgb, _ = _frame()
    small = [
        project.add_image(_png_bytes(np.roll(rgb, 40 * k, axis=1)), split="predict", name=f"frame{k}.png")
        for k in range(3)
    ]
    return [big, *small]


def _stored(project: dbn.Project, records: list[ImageRecord]) -> dict[str, Detections]:
    return {rec.name: project.predictions(rec, threshold=0.0) for rec in records}


def _same(a: Detections, b: Detections) -> bool:
    return (
        np.array_equal(a.xyxy, b.xyxy)
        and np.array_equal(a.class_id, b.class_id)
        and a.confidence is not None
        and b.confidence is not None
        and np.array_equal(a.confidence, b.confidence)
    )


def _cluster_tasks(stream: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [t for t in stream if "deepblock-predict" in str(t["key"])]


@pytest.mark.parametrize("accurate", [False, True])
def test_cluster_predict_gives_exactly_the_local_boxes(
    project: dbn.Project,
    scene_file: Path,
    client: distributed.Client,
    monkeypatch: pytest.MonkeyPatch,
    accurate: bool,
) -> None:
    from deepblock_nb.ml import cluster as worker_side
    from deepblock_nb.project import _cluster

    monkeypatch.setattr(_cluster, "TILES_PER_TASK", 8)  # the big image: 5 ranges of tiles
    records = _four_images(project, scene_file)
    run_id = _add_run(project)
    local = project.predict(accurate=accurate, run=run_id, model=RectangleDetector()).wait(TIMEOUT)
    assert local.status is JobStatus.FINISHED, local.error
    expected = _stored(project, records)
    assert sum(len(d) for d in expected.values()) > 20
    project.clear_predictions()

    loads_before = client.run(worker_side.loads)
    detector = RectangleDetector()
    progress: list[float] = []
    with distributed.get_task_stream(client) as ts:
        job = project.predict(accurate=accurate, run=run_id, model=detector, client=client)
        job.on("progress", lambda j: progress.append(j.progress))
        job.wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    assert job.result == [rec.id for rec in records]
    found = _stored(project, records)
    for rec in records:
        assert _same(found[rec.name], expected[rec.name]), rec.name
        assert project._store.predictions.current_run(rec.id) == (True, run_id)

    # the workers did the model calls: this process's module never ran
    assert detector.calls == []
    tasks = _cluster_tasks(ts.data)
    big = [t for t in tasks if f"-{records[0].id}-tiles-" in str(t["key"])]
    assert len(big) == 5
    assert len({t["worker"] for t in tasks}) == 2
    assert any("overview" in str(t["key"]) for t in tasks) is accurate
    # each worker loaded the model once for the whole job
    loads_after = client.run(worker_side.loads)
    assert all(loads_after[w] - loads_before[w] <= 1 for w in loads_after)
    assert sum(loads_after[w] - loads_before[w] for w in loads_after) == 2
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_stop_during_a_cluster_predict_keeps_the_finished_images(
    project: dbn.Project, client: distributed.Client
) -> None:
    rgb, _ = _frame()
    records = [
        project.add_image(_png_bytes(np.roll(rgb, 30 * k, axis=0)), split="predict", name=f"f{k}.png")
        for k in range(10)
    ]
    run_id = _add_run(project, tile_size=700)  # one tile, one model call per image
    holder: list[Job] = []
    project.on("predictions", lambda **event: holder[0].stop() if holder else None)
    job = project.predict(run=run_id, model=SlowRectangleDetector(), client=client)
    holder.append(job)
    job.wait(TIMEOUT)
    assert job.status is JobStatus.STOPPED, job.error
    kept = [rec for rec in records if len(project.predictions(rec, threshold=0.0))]
    assert 1 <= len(kept) < len(records)
    assert job.result == [rec.id for rec in kept]
    # the pending tasks were cancelled: the cluster is idle again
    deadline = time.time() + 30
    while time.time() < deadline and any(client.processing().values()):
        time.sleep(0.1)
    assert not any(client.processing().values())


def test_an_image_a_worker_cannot_read_fails_alone(
    project: dbn.Project, scene_file: Path, client: distributed.Client
) -> None:
    records = _four_images(project, scene_file)
    run_id = _add_run(project)
    gone = records[2]
    project.display(gone)  # its display setting is known; only the workers miss the file
    gone.path.unlink()
    job = project.predict(run=run_id, model=RectangleDetector(), client=client).wait(TIMEOUT)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, ImageFailures)
    assert list(job.error.failures) == [gone.name]
    assert "missing on worker" in str(job.error.failures[gone.name])
    assert job.error.done == [rec.id for rec in records if rec is not gone]
    for rec in records:
        assert (len(project.predictions(rec, threshold=0.0)) > 0) is (rec is not gone), rec.name


def test_a_model_that_does_not_pickle_is_refused_before_the_job(
    project: dbn.Project, client: distributed.Client
) -> None:
    from deepblock_nb.errors import ModelNotPicklableError

    rgb, _ = _frame()
    project.add_image(_png_bytes(rgb), split="predict", name="frame.png")
    run_id = _add_run(project)
    with pytest.raises(
        ModelNotPicklableError, match="UnpicklableDetector.*cannot be sent to the Dask workers"
    ):
        project.predict(run=run_id, model=UnpicklableDetector(), client=client)
    with pytest.raises(ArgumentTypeError, match="dask.distributed.Client"):
        project.predict(run=run_id, model=RectangleDetector(), client="tcp://scheduler:8786")
    assert project._jobs.jobs == []
