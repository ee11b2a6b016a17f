"""project.train(): a background Job over the project's tiles, runs, resume, failures."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentTypeError, ImageReadError, ModelError, RecordNotFoundError
from deepblock_nb.jobs import JobStatus
from deepblock_nb.ml.checkpoints import load_checkpoint, load_for_inference
from tests.ml.conftest import make_shapes

FAST = {"tile_size": 64, "batch_size": 8, "num_workers": 0}


@pytest.fixture
def shapes_project(tmp_path: Path):  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(2)
    project = dbn.Project.create(tmp_path / "proj", categories=["square", "disc"])
    ids = {c.name: c.id for c in project.categories}
    shapes = make_shapes(tmp_path / "src", 8, (128, 128), seed=3)
    for i, s in enumerate(shapes):
        rec = project.add_image(s.path, split="evaluate" if i == 7 else "train")
        if i % 2 == 0:
            project.set_grid(rec, 2, 2)
        cats = [ids["square"] if c == 1 else ids["disc"] for c in s.category_ids]
        project.add_boxes(rec, cats, s.xyxy)
    yield project
    project.close()


def test_training_never_reads_the_evaluate_split(
    shapes_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluate alone scores on the evaluate split: training, its per-epoch score and
    the choice of best.pt read only train images (every pixel passes through open_image)."""
    import deepblock_nb.io.images as images_mod

    project = shapes_project
    opened: list[Path] = []
    real = images_mod.open_image

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images_mod, "open_image", spy)
    job = project.train(epochs=2, model="small", **FAST).wait(300)
    assert job.status is JobStatus.FINISHED, job.error
    evaluate = {Path(r.path) for r in project.images(split="evaluate")}
    train = {Path(r.path) for r in project.images(split="train")}
    assert evaluate and opened and set(opened) <= train and not set(opened) & evaluate
    epochs = job.history.query("kind == 'epoch'")
    assert all(s.startswith("held-out training images") for s in epochs["score_on"])


def test_train_resume_and_runs(shapes_project: Any) -> None:
    project = shapes_project
    job = project.train(epochs=2, model="small", **FAST)
    second = project.train(epochs=1, resume=True, **FAST)  # waits its turn
    assert second.status in (JobStatus.QUEUED, JobStatus.RUNNING) or job.done
    job.wait(300)
    assert job.status is JobStatus.FINISHED, job.error
    run_id = job.result
    epochs = job.history.query("kind == 'epoch'")
    assert epochs["epoch"].tolist() == [1, 2]
    (score_on,) = set(epochs["score_on"])
    assert score_on.startswith("held-out training images (1 of 7")
    ckpt = load_checkpoint(project.run_dir(run_id) / "best.pt")
    assert ckpt["category_ids"] == [c.id for c in project.categories]
    assert load_for_inference(project.run_dir(run_id) / "last.pt", "cpu").tile_size == 64

    second.wait(300)
    assert second.status is JobStatus.FINISHED, second.error
    assert second.result == run_id
    hist = second.history.query("kind == 'epoch'")
    assert hist["epoch"].tolist() == [1, 2, 3]  # the run's history continues
    runs = project.runs()
    row = runs.set_index("id").loc[run_id]
    assert row["status"] == "finished" and row["epochs_done"] == 3
    stored = project.run_history(run_id)
    assert stored.query("kind == 'epoch'")["epoch"].tolist() == [1, 2, 3]
    rows = project._store.runs.history(run_id)
    assert project._store.runs.history(run_id, since=2) == rows[2:]  # what the torchrun follower reads
    with pytest.raises(RecordNotFoundError, match="no training run 999"):
        project.run_history(999)
    with pytest.raises(ArgumentTypeError, match="run_id is an integer"):
        project.run_history("1")


def test_training_while_boxes_are_added(shapes_project: Any) -> None:
    project = shapes_project
    image = project.images(split="train")[1]
    job = project.train(epochs=2, model="small", **FAST)
    added: list[int] = []

    def label() -> None:
        for k in range(20):
            added.append(project.add_box(image, project.categories[0], [k, k, k + 20, k + 20]))

    t = threading.Thread(target=label)
    t.start()
    t.join()
    job.wait(300)
    assert job.status is JobStatus.FINISHED, job.error
    assert len(project.annotations(image)) >= 20 and len(added) == 20


def test_stop_keeps_a_resumable_run(shapes_project: Any) -> None:
    project = shapes_project
    job = project.train(epochs=50, model="small", **FAST)
    job.on("history", lambda j: j.stop())
    job.wait(300)
    assert job.status is JobStatus.STOPPED, job.error
    assert project.runs().iloc[-1]["status"] == "stopped"
    ckpt = load_checkpoint(project.run_dir(job.result) / "last.pt")
    assert ckpt["optimizer_state"]["state"] and ckpt["epoch"] < 50


def test_corrupt_image_fails_with_file_named(shapes_project: Any, tmp_path: Path) -> None:
    project = shapes_project
    rec = project.images(split="train")[0]
    Path(rec.path).write_bytes(Path(rec.path).read_bytes()[:80])
    job = project.train(epochs=1, model="small", **FAST).wait(300)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, ImageReadError) and rec.name in str(job.error)
    assert project.runs().iloc[-1]["status"] == "failed"
    project.close()
    again = dbn.Project.open(project.path)
    assert len(again.images()) == 8 and len(again.annotations(rec.name)) > 0
    again.close()


def test_clear_errors(shapes_project: Any, tmp_path: Path) -> None:
    project = shapes_project
    with pytest.raises(RecordNotFoundError, match="no training run to resume"):
        project.train(resume=True)
    with pytest.raises(TypeError, match="unknown training option"):
        project.train(epochs=1, colour="red")
    with pytest.raises(ModelError, match="unknown model preset"):
        project.train(epochs=1, model="nope", **FAST)
    empty = dbn.Project.create(tmp_path / "empty")
    with pytest.raises(ModelError, match="no categories"):
        empty.train()
    empty.close()
