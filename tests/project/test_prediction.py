"""The Predict and Evaluate stages through the Project, with a detector that reads pixels."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ImageFailures, ModelError
from deepblock_nb.io.annotations import read_coco_results, read_csv
from deepblock_nb.jobs import JobStatus
from deepblock_nb.ml.checkpoints import save_checkpoint
from deepblock_nb.ml.models import CUSTOM
from tests.ml.rect_scene import RectangleDetector, best_iou, make_scene, match, write_tiff

TIMEOUT = 120


def _add_run(project: dbn.Project, tile_size: int = 500) -> int:
    """A finished run whose checkpoint holds the rectangle detector (a custom module)."""
    run_id = project._store.runs.create(CUSTOM, {"model": "rectangles"})
    save_checkpoint(
        {
            "model_state": RectangleDetector().state_dict(),
            "preset": CUSTOM,
            "preset_options": {},
            "category_ids": [1, 2],
            "tile_size": tile_size,
            "epoch": 1,
            "best_score": 1.0,
        },
        project.run_dir(run_id) / "best.pt",
    )
    project._store.runs.update(run_id, status="finished", finished=True)
    return run_id


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _frame() -> tuple[np.ndarray, Detections]:
    """A 480 x 640 webcam-like frame with two rectangles."""
    rgb = np.full((480, 640, 3), 255, np.uint8)
    rgb[100:180, 50:200] = (255, 200, 10)  # class 1, score 200/255
    rgb[300:420, 400:460] = (5, 60, 255)  # class 2, score 60/255
    truth = Detections([[50, 100, 200, 180], [400, 300, 460, 420]], [1, 2], [200 / 255, 60 / 255])
    return rgb, truth


@pytest.fixture
def project(tmp_path: Path) -> dbn.Project:
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    yield p
    p.close()


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Detections]:
    rgb, truth = make_scene(3000, 3000, 500, np.random.default_rng(11), big=4)
    return write_tiff(tmp_path_factory.mktemp("scene") / "scene.tif", rgb), truth


def _predict_set(project: dbn.Project, scene_file: tuple[Path, Detections]) -> dict[str, Detections]:
    """Files, an upload and a webcam frame in the predict split; their truths by name."""
    path, truth = scene_file
    big = project.add_image(path, split="predict")
    project.set_grid(big, 6, 6, overlap=0.1)
    rgb, frame_truth = _frame()
    project.add_image(_png_bytes(rgb), split="predict", name="upload.png")
    project.add_image(rgb[:, ::-1].copy(), split="predict", name="webcam.png")
    mirrored = frame_truth.xyxy.copy()
    mirrored[:, [0, 2]] = 640 - frame_truth.xyxy[:, [2, 0]]
    return {
        big.name: truth,
        "upload.png": frame_truth,
        "webcam.png": Detections(mirrored, frame_truth.class_id, frame_truth.confidence),
    }


def test_predict_every_object_once_and_threshold_filters_without_rerunning(
    project: dbn.Project, scene_file: tuple[Path, Detections]
) -> None:
    truths = _predict_set(project, scene_file)
    run_id = _add_run(project)
    detector = RectangleDetector()
    messages: list[str] = []
    job = project.predict(model=detector)
    job.on("progress", lambda j: messages.append(j.message))
    job.wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    assert sorted(job.result) == sorted(r.id for r in project.images("predict"))
    assert sum("tile" in m for m in messages) >= 3  # progress per batch of tiles
    calls = len(detector.calls)

    for name, truth in truths.items():
        pred = project.predictions(name, threshold=0.0)
        hits = match(truth, pred)
        assert (hits == 1).all() and len(pred) == len(truth), name
        assert best_iou(truth, pred).min() > 0.99, name
        assert project._store.predictions.current_run(project.image(name).id) == (True, run_id)

    # the slider filters the stored boxes; the model does not run again
    big = project.images("predict")[0].name
    truth = truths[big]
    assert truth.confidence is not None
    for t in (0.0, 0.3, 0.7):
        project.threshold = t
        assert len(project.predictions(big)) == (truth.confidence >= t - 1e-6).sum()
    assert len(project.predictions(big, threshold=0.9)) == (truth.confidence >= 0.9 - 1e-6).sum()
    assert len(detector.calls) == calls

    project.clear_predictions(big)
    assert len(project.predictions(big, threshold=0.0)) == 0
    assert len(project.predictions("upload.png", threshold=0.0)) == 2
    project.clear_predictions()
    assert len(project.predictions("upload.png", threshold=0.0)) == 0


def test_a_corrupt_image_fails_alone_with_its_name(project: dbn.Project) -> None:
    rgb, _ = _frame()
    good = [project.add_image(_png_bytes(rgb), split="predict", name=f"frame{k}.png") for k in range(3)]
    bad = project.add_image(_png_bytes(rgb), split="predict", name="broken.png")
    data = bad.path.read_bytes()
    bad.path.write_bytes(data[:60] + b"\0" * (len(data) - 60))  # the stored file gets damaged
    _add_run(project)
    job = project.predict(model=RectangleDetector()).wait(TIMEOUT)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, ImageFailures)
    assert "broken.png" in str(job.error) and list(job.error.failures) == ["broken.png"]
    assert sorted(job.result) == sorted(r.id for r in good)
    for rec in good:
        assert len(project.predictions(rec, threshold=0.0)) == 2
    assert len(project.predictions(bad, threshold=0.0)) == 0


def test_stop_keeps_the_finished_images(project: dbn.Project) -> None:
    rgb, _ = _frame()
    recs = [project.add_image(_png_bytes(rgb), split="predict", name=f"frame{k}.png") for k in range(6)]
    for rec in recs:
        project.set_grid(rec, 4, 4)  # 16 tiles each, several batches
    _add_run(project)
    job = project.predict(model=RectangleDetector())

    def stop_in_third_image(j: dbn.jobs.Job) -> None:
        if "image 3/" in j.message:
            j.stop()

    job.on("progress", stop_in_third_image)
    job.wait(TIMEOUT)
    assert job.status is JobStatus.STOPPED
    assert job.result == [recs[0].id, recs[1].id]
    assert [len(project.predictions(r, threshold=0.0)) for r in recs] == [2, 2, 0, 0, 0, 0]


@pytest.mark.parametrize("accurate", [False, True])
def test_progress_counts_the_tiles_of_the_users_grid_and_of_automatic_grids(
    project: dbn.Project, accurate: bool
) -> None:
    rgb, truth = _frame()
    gridded = project.add_image(_png_bytes(rgb), split="predict", name="grid.png")
    project.set_grid(gridded, 3, 4, overlap=0.1)  # cores: the grid without overlap
    project.add_image(_png_bytes(rgb), split="predict", name="auto.png")  # an automatic grid
    _add_run(project, tile_size=256)  # smaller than the frame: the automatic grid has seams
    seen: list[tuple[float, str]] = []
    job = project.predict(model=RectangleDetector(), accurate=accurate)
    job.on("progress", lambda j: seen.append((j.progress, j.message)))
    job.wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    ticks = [(p, re.search(r"image (\d+)/2 .*tile (\d+)/(\d+)", m)) for p, m in seen]
    counts = {int(g[1]): int(g[3]) for _, g in ticks if g}  # tiles of each image, as predicted
    assert counts[1] == 12 and counts[2] > 1
    total = counts[1] + counts[2]
    for p, g in ticks:
        if g:  # the planned counts (the fraction) agree with the tiles run (the message)
            before = 0 if g[1] == "1" else counts[1]
            assert p == pytest.approx((before + int(g[2])) / total)
    assert job.progress == pytest.approx(1.0)
    for name in ("grid.png", "auto.png"):
        pred = project.predictions(name, threshold=0.0)
        assert (match(truth, pred) == 1).all() and len(pred) == len(truth), name


def test_statistics_and_export_round_trip(project: dbn.Project, tmp_path: Path) -> None:
    rgb, truth = _frame()
    names = ["a.png", "b.png"]
    for name in names:
        project.add_image(_png_bytes(rgb), split="predict", name=name)
    empty = project.add_image(np.full((64, 64, 3), 255, np.uint8), split="predict", name="empty.png")
    _add_run(project)
    project.predict(model=RectangleDetector()).wait(TIMEOUT, raise_on_error=True)

    stats = project.statistics(threshold=0.0)
    assert list(stats.columns) == ["red", "blue", "total"]
    assert list(stats.index) == ["a.png", "b.png", "empty.png", "total"]
    assert stats.loc["a.png"].tolist() == [1, 1, 2]
    assert stats.loc[empty.name].tolist() == [0, 0, 0]
    assert stats.loc["total"].tolist() == [2, 2, 4]
    # at 0.5 only the red box (score 0.78) counts
    assert project.statistics(threshold=0.5).loc["total"].tolist() == [2, 0, 2]

    out = project.export_predictions(tmp_path / "preds.json", threshold=0.0)
    back = read_coco_results(out, tmp_path / "preds.reference.json")
    assert sorted(back.categories) == ["blue", "red"]
    for name in names:
        im = back.image(name)
        order = np.argsort(im.xyxy[:, 0])
        assert np.allclose(im.xyxy[order], truth.xyxy)
        assert [im.category[k] for k in order] == ["red", "blue"]
        assert im.scores is not None and np.allclose(im.scores[order], truth.confidence)
    assert len(back.image("empty.png")) == 0

    csv_path = project.export_predictions(tmp_path / "preds.csv", format="csv", threshold=0.5)
    rows = read_csv(csv_path)
    assert sorted(im.file_name for im in rows.images) == names
    assert all(im.category == ["red"] for im in rows.images)
    with pytest.raises(dbn.FormatError, match="yaml"):
        project.export_predictions(tmp_path / "x.yaml", format="yaml")


def test_evaluate_equals_metrics_on_the_stored_predictions(project: dbn.Project) -> None:
    rgb, truth = _frame()
    labels = [
        # both objects labelled right
        (truth.xyxy, [1, 2]),
        # the blue object labelled as red, and an object that is not in the image
        (np.array([[50, 100, 200, 180], [400, 300, 460, 420], [10, 10, 40, 40]]), [1, 1, 2]),
        # only one object labelled (the other prediction is a false positive)
        (truth.xyxy[:1], [1]),
    ]
    for k, (xyxy, cats) in enumerate(labels):
        rec = project.add_image(_png_bytes(rgb), split="evaluate", name=f"eval{k}.png")
        for box, cat in zip(xyxy, cats):
            project.add_box(rec, cat, box)
    project.add_image(_png_bytes(rgb), split="evaluate", name="unlabelled.png")
    run_id = _add_run(project)
    project.threshold = 0.2
    job = project.evaluate(model=RectangleDetector()).wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    report = job.result
    assert isinstance(report, dbn.metrics.EvaluationReport)

    recs = [project.image(f"eval{k}.png") for k in range(3)]
    expected = dbn.metrics.evaluate(
        [project.annotations(r) for r in recs],
        [project.predictions(r, threshold=0.0, run=run_id) for r in recs],
        at_threshold=0.2,  # the headline at the best-F1 threshold, the user's 0.2 beside it
        categories={c.id: c.name for c in project.categories},
    )
    assert report.to_dict() == expected.to_dict()
    at = report.at_threshold
    assert at is not None and (at.threshold, at.tp, at.fp, at.fn) == (0.2, 4, 2, 2)
    assert 0 < report.map50 < 1
    stored = project.evaluations(run_id)
    assert len(stored) == 1 and stored[0].to_dict() == report.to_dict()
    assert len(project.predictions("unlabelled.png", threshold=0.0)) == 0  # left out


def test_evaluate_and_predict_say_what_is_missing(project: dbn.Project) -> None:
    rgb, truth = _frame()
    with pytest.raises(ValueError, match="no images in the evaluate split"):
        project.evaluate()
    rec = project.add_image(_png_bytes(rgb), split="evaluate", name="e.png")
    with pytest.raises(ValueError, match="has boxes"):
        project.evaluate()
    project.add_box(rec, 1, truth.xyxy[0])
    with pytest.raises(ModelError, match=r"no trained model.*project.train"):
        project.evaluate()
    with pytest.raises(ModelError, match="no trained model"):
        project.predict()
    run_id = _add_run(project)
    (project.run_dir(run_id) / "best.pt").unlink()
    with pytest.raises(ModelError, match=f"run {run_id} has no checkpoint"):
        project.predict(run=run_id)
    with pytest.raises(dbn.RecordNotFoundError, match="no run 99"):
        project.predict(run=99)
    _add_run(project)
    with pytest.raises(ValueError, match="no images in the predict split"):
        project.predict()


@pytest.mark.slow
def test_short_trained_model_end_to_end(tmp_path: Path) -> None:
    """Train the small preset briefly, then evaluate and predict through the project."""
    from tests.ml.conftest import make_shapes

    if not hasattr(dbn.Project, "train"):
        pytest.skip("project.train is not available")
    project = dbn.Project.create(tmp_path / "shapes", categories=["square", "disc"])
    try:
        for split, n, seed in (("train", 48, 11), ("evaluate", 8, 12)):
            for shape in make_shapes(tmp_path / split, n, (128, 128), seed=seed):
                rec = project.add_image(shape.path, split=split, name=f"{split}_{shape.path.name}")
                for box, cat in zip(shape.xyxy, shape.category_ids):
                    project.add_box(rec, int(cat), box)
        # a larger image divided into a 4 x 3 grid of 128 px tiles: prediction crosses seams
        big = make_shapes(tmp_path / "big", 1, (512, 384), objects=(10, 14), seed=5)[0]
        rec = project.add_image(big.path, split="predict")
        project.set_grid(rec, 3, 4)

        train = project.train(epochs=40, model="small", device="cpu", batch_size=8).wait(900)
        assert train.status is JobStatus.FINISHED, train.error
        run_id = train.result

        project.threshold = 0.3
        job = project.evaluate(run=run_id, device="cpu").wait(300)
        assert job.status is JobStatus.FINISHED, job.error
        report = job.result
        recs = project.images("evaluate")
        expected = dbn.metrics.evaluate(
            [project.annotations(r) for r in recs],
            [project.predictions(r, threshold=0.0, run=run_id) for r in recs],
            at_threshold=0.3,
            categories={c.id: c.name for c in project.categories},
        )
        assert report.to_dict() == expected.to_dict()
        assert report.threshold_rule == "best F1" and project.threshold == 0.3  # the user's, kept
        assert project.evaluations(run_id)[-1].to_dict() == report.to_dict()

        job = project.predict(device="cpu").wait(300)
        assert job.status is JobStatus.FINISHED, job.error
        pred = project.predictions(rec, threshold=0.0)
        truth = Detections(big.xyxy, big.category_ids)
        found = match(truth, project.predictions(rec, threshold=report.threshold))  # the stated one
        print(f"trained: mAP50 {report.map50:.3f}; {(found > 0).mean():.2f} of the big image's objects found")
        assert report.map50 > 0.5
        assert (found > 0).mean() >= 0.4  # seen through 12 tiles, boxes mapped back to the image
        assert (found > 1).sum() == 0  # no object twice across the seams
        assert pred.confidence is not None and (pred.confidence >= 0.05).all()
        assert (
            (pred.xyxy >= 0).all()
            and (pred.xyxy[:, [0, 2]] <= 600).all()
            and (pred.xyxy[:, [1, 3]] <= 420).all()
        )
        assert set(pred.class_id.tolist()) <= {1, 2}
        kept = project.predictions(rec, threshold=0.5)
        assert len(kept) == (pred.confidence >= 0.5).sum()
        stats = project.statistics(threshold=0.0)
        assert stats.loc["total", "total"] == len(pred)
    finally:
        project.close()
