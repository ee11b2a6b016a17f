"""Model-assisted labelling through the Project: pre-labelling, accepting, correcting
and rejecting proposals, and the images worth labelling next.

The model is the rectangle detector of ``tests.ml.rect_scene`` behind a real run's
checkpoint: it finds each coloured rectangle, with score ``g / 255``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError, RecordNotFoundError
from deepblock_nb.jobs import JobStatus
from tests.ml.rect_scene import RectangleDetector
from tests.project.test_prediction import TIMEOUT, _add_run

# class 1 ("red") rectangles are (255, g, b < 64), class 2 ("blue") (r < 64, g, 255); score g / 255
BOXES = [((20, 30, 80, 90), 1, 230), ((120, 40, 170, 100), 2, 200), ((60, 130, 150, 180), 1, 40)]


def write_rects(path: Path, boxes: list[tuple[tuple[int, int, int, int], int, int]], size: int = 200) -> Path:
    rgb = np.full((size, size, 3), 255, np.uint8)
    for k, ((x1, y1, x2, y2), cls, g) in enumerate(boxes):
        rgb[y1:y2, x1:x2] = (255, g, k) if cls == 1 else (k, g, 255)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path) -> dbn.Project:
    p = dbn.Project.create(tmp_path / "proj", categories=["red", "blue"])
    yield p
    p.close()


@pytest.fixture
def scene(project: dbn.Project, tmp_path: Path) -> dict[str, dbn.ImageRecord]:
    """One labelled train image, two unlabelled ones and one unlabelled evaluate image."""
    recs = {}
    for name, split in (("labelled", "train"), ("b", "train"), ("c", "train"), ("e", "evaluate")):
        recs[name] = project.add_image(write_rects(tmp_path / f"{name}.png", BOXES), split=split)
    project.add_box(recs["labelled"], "red", BOXES[0][0])
    return recs


def _prelabel(project: dbn.Project, **kw: object) -> dbn.jobs.Job:
    job = project.prelabel(device="cpu", model=RectangleDetector(), **kw).wait(TIMEOUT)
    assert job.status is JobStatus.FINISHED, job.error
    return job


def test_prelabel_stores_proposals_of_unlabelled_images_and_leaves_annotations(
    project: dbn.Project, scene: dict[str, dbn.ImageRecord]
) -> None:
    run = _add_run(project)
    before = {r.id: project.annotations(r).xyxy.tolist() for r in project.images()}
    events: list[tuple[str, object]] = []
    project.on("proposals", lambda topic, action, image, ids: events.append((action, image.name)))
    job = _prelabel(project)
    assert job.kind == "prelabel"
    assert sorted(job.result) == sorted(scene[n].id for n in ("b", "c", "e"))  # not the labelled one
    assert {r.id: project.annotations(r).xyxy.tolist() for r in project.images()} == before
    b = project.proposals(scene["b"])
    assert sorted(map(tuple, b.xyxy.tolist())) == sorted(
        tuple(map(float, box)) for box, _, g in BOXES if g / 255 >= 0.5
    )  # the third box scores 40/255, under the default threshold 0.5
    assert b.confidence is not None and (np.diff(b.confidence) <= 0).all()
    assert len(project.proposals(scene["labelled"]).xyxy) == 0
    assert ("stored", "b.png") in events
    # the predictions themselves are stored too, at the score floor: the low box is among them
    assert len(project.predictions(scene["b"], threshold=0.0, run=run).xyxy) == 3
    low = _prelabel(project, images=[scene["b"]], threshold=0.1)
    assert low.result == [scene["b"].id] and len(project.proposals(scene["b"]).xyxy) == 3  # replaced


def test_prelabel_skips_boxes_already_labelled_and_tiles_marked_done(
    project: dbn.Project, scene: dict[str, dbn.ImageRecord]
) -> None:
    _add_run(project)
    _prelabel(project, images=[scene["labelled"]], threshold=0.1)
    props = project.proposals(scene["labelled"])
    assert len(props.xyxy) == 2 and [20.0, 30.0, 80.0, 90.0] not in props.xyxy.tolist()
    rec = project.set_grid(scene["c"], 2, 2)
    project.set_reviewed(rec, True, tile=0)  # the top-left tile holds box 0's centre
    _prelabel(project, images=[rec], threshold=0.1)
    assert [20.0, 30.0, 80.0, 90.0] not in project.proposals(rec).xyxy.tolist()
    assert len(project.proposals(rec).xyxy) == 2


def test_accept_correct_and_their_sources(project: dbn.Project, scene: dict[str, dbn.ImageRecord]) -> None:
    _add_run(project)
    _prelabel(project)
    rec = scene["b"]
    first, second = (int(i) for i in project.proposals(rec).ids)
    (box,) = project.accept_proposals(rec, [first])
    assert project.annotation_sources([box]) == {int(box): "accepted"}
    assert first not in project.proposals(rec).ids and first in project.proposals(rec, state="accepted").ids
    moved = project.accept_proposal(second, xyxy=[118, 40, 170, 101])
    assert project.annotation_sources([moved]) == {moved: "corrected"}
    assert project.annotations(rec).xyxy.tolist()[-1] == [118.0, 40.0, 170.0, 101.0]
    # an accepted box edited later is corrected too, and so is its proposal
    project.update_box(int(box), category="blue")
    assert project.annotation_sources([box]) == {int(box): "corrected"}
    assert set(project.proposals(rec, state="corrected").ids.tolist()) == {first, second}
    # relabelled on acceptance: corrected
    (third,) = (int(i) for i in project.proposals(scene["c"]).ids[:1])
    relabelled = project.accept_proposal(
        third, category="blue" if project.proposals(scene["c"]).class_id[0] == 1 else "red"
    )
    assert project.annotation_sources([relabelled]) == {relabelled: "corrected"}


def test_accept_all_then_prelabel_again_proposes_nothing(
    project: dbn.Project, scene: dict[str, dbn.ImageRecord]
) -> None:
    _add_run(project)
    _prelabel(project)
    rec = scene["e"]
    ids = project.accept_proposals(rec)
    assert len(ids) == 2 and set(project.annotation_sources(ids).values()) == {"accepted"}
    assert len(project.proposals(rec).xyxy) == 0
    _prelabel(project, images=[rec])
    assert len(project.proposals(rec).xyxy) == 0  # each one is an annotation now


def test_a_rejected_proposal_is_not_proposed_again_by_that_run(
    project: dbn.Project, scene: dict[str, dbn.ImageRecord]
) -> None:
    _add_run(project)
    _prelabel(project)
    rec = scene["b"]
    props = project.proposals(rec)
    gone = int(props.ids[0])
    project.reject_proposals(rec, [gone])
    assert gone in project.proposals(rec, state="rejected").ids
    _prelabel(project, images=[rec])
    again = project.proposals(rec)
    assert len(again.xyxy) == 1 and props.xyxy[0].tolist() not in again.xyxy.tolist()
    _add_run(project)  # another run may propose it again
    _prelabel(project, images=[rec])
    assert props.xyxy[0].tolist() in project.proposals(rec).xyxy.tolist()


def test_reopen_undoes_accept_and_reject(project: dbn.Project, scene: dict[str, dbn.ImageRecord]) -> None:
    _add_run(project)
    _prelabel(project)
    rec = scene["b"]
    a, b = (int(i) for i in project.proposals(rec).ids)
    (box,) = project.accept_proposals(rec, [a])
    project.reject_proposals(rec, [b])
    project.delete_box(int(box))
    project.reopen_proposals([a, b])
    assert sorted(project.proposals(rec).ids.tolist()) == sorted([a, b])
    assert len(project.annotations(rec).xyxy) == 0


def test_bad_decisions_are_refused(project: dbn.Project, scene: dict[str, dbn.ImageRecord]) -> None:
    _add_run(project)
    _prelabel(project)
    pid = int(project.proposals(scene["b"]).ids[0])
    project.accept_proposals(scene["b"], [pid])
    with pytest.raises(ArgumentError, match="already accepted"):
        project.accept_proposal(pid)
    with pytest.raises(RecordNotFoundError, match="no proposal 999"):
        project.reject_proposals(scene["b"], [999])
    other = int(project.proposals(scene["c"]).ids[0])
    with pytest.raises(ArgumentError, match="not one of image"):
        project.accept_proposals(scene["b"], [other])
    with pytest.raises(ArgumentError, match="proposal state"):
        project.proposals(scene["b"], state="maybe")
    with pytest.raises(ArgumentError, match="threshold"):
        project.prelabel(threshold=1.5)
    n = len(project.annotations(scene["b"]).xyxy)
    with pytest.raises(dbn.errors.AnnotationError):
        project.accept_proposal(other, xyxy=[500, 500, 600, 600])  # wholly outside the image
    assert len(project.annotations(scene["b"]).xyxy) == n and other in project.proposals(scene["c"]).ids


def test_prelabel_without_unlabelled_images_or_model(project: dbn.Project, tmp_path: Path) -> None:
    rec = project.add_image(write_rects(tmp_path / "a.png", BOXES))
    with pytest.raises(dbn.errors.ModelError):
        project.prelabel()
    project.add_box(rec, "red", BOXES[0][0])
    _add_run(project)
    with pytest.raises(ArgumentError, match="no unlabelled"):
        project.prelabel()


def test_evaluation_and_exports_see_accepted_boxes_only(
    project: dbn.Project, scene: dict[str, dbn.ImageRecord], tmp_path: Path
) -> None:
    run = _add_run(project)
    ev = scene["e"]
    project.add_box(ev, "red", BOXES[0][0])  # one of its two findable boxes is labelled
    _prelabel(project, images=[ev])
    assert len(project.proposals(ev).xyxy) == 1  # the blue one, open: not ground truth
    report = project.evaluate(run=run, device="cpu", model=RectangleDetector()).wait(TIMEOUT).result
    assert report.per_class["gt"].sum() == 1  # the labelled box only
    pid = int(project.proposals(ev).ids[0])
    project.accept_proposal(pid, xyxy=[120, 40, 171, 100])
    stats = project.annotation_statistics()
    assert stats.loc["blue", "corrected"] == 1 and stats.loc["red", "manual"] == 2
    assert stats.loc["total", "total"] == 3 and stats.loc["total", "accepted"] == 0
    coco = json.loads(project.export_annotations(tmp_path / "out.json").read_text())
    assert sorted(a.get("source") for a in coco["annotations"]) == ["corrected", "manual", "manual"]
    # the file on disk says the same
    with sqlite3.connect(project.path / "project.db") as cx:
        rows = cx.execute("SELECT state, annotation_id FROM proposals WHERE id = ?", (pid,)).fetchall()
    assert rows[0][0] == "corrected" and rows[0][1] is not None


def test_suggest_next_ranks_the_undecided_image_first(project: dbn.Project, tmp_path: Path) -> None:
    # scores g / 255: an easy image (all near 1 or near 0), an ambiguous one (near the threshold)
    easy = [((20, 20, 60, 60), 1, 250), ((100, 100, 150, 150), 2, 245), ((20, 120, 60, 160), 1, 8)]
    hard = [((20, 20, 60, 60), 1, 120), ((100, 100, 150, 150), 2, 140), ((20, 120, 60, 160), 1, 135)]
    labelled = project.add_image(write_rects(tmp_path / "l.png", easy), name="labelled.png")
    project.add_box(labelled, "red", easy[0][0])
    e = project.add_image(write_rects(tmp_path / "e.png", easy), name="easy.png")
    h = project.add_image(write_rects(tmp_path / "h.png", hard), name="hard.png")
    project.threshold = 0.5
    run = _add_run(project)
    listed = project.suggest_next(predict=False, model=RectangleDetector())
    assert listed["uncertainty"].isna().all() and set(listed["image"]) == {e.id, h.id}
    ranked = project.suggest_next(model=RectangleDetector())
    assert ranked["name"].tolist() == ["hard.png", "easy.png"]
    row = ranked.iloc[0]
    assert row["uncertain_boxes"] == 3 and row["confident_boxes"] == 0 and row["tile"] is None
    assert ranked.iloc[1]["confident_boxes"] == 2
    assert project.predictions(h, run=run, threshold=0.0).xyxy.shape == (3, 4)
    # a divided image lists its tiles, but not one with a box in it
    big = project.set_grid(project.add_image(write_rects(tmp_path / "g.png", hard), name="grid.png"), 2, 2)
    project.add_box(big, "red", hard[0][0])
    tiles = project.suggest_next(n=None, model=RectangleDetector())
    grid_rows = tiles[tiles["image"] == big.id]
    assert len(grid_rows) == 3 and (0, 0, 100, 100) not in grid_rows["tile"].tolist()
    assert project.suggest_next(n=1, model=RectangleDetector())["name"].tolist() == ["hard.png"]
    with pytest.raises(ArgumentError):
        project.suggest_next(n=0)


@pytest.mark.slow
def test_suggest_next_with_a_short_trained_model(tmp_path: Path) -> None:
    """The small preset trained briefly on shapes: the same shapes under heavy noise (the model
    scores them around the threshold) rank above the clean image."""
    from tests.ml.conftest import make_shapes

    project = dbn.Project.create(tmp_path / "shapes", categories=["square", "disc"])
    try:
        for shape in make_shapes(tmp_path / "train", 48, (128, 128), seed=11):
            rec = project.add_image(shape.path, split="train")
            project.add_boxes(rec, [int(c) for c in shape.category_ids], shape.xyxy)
        train = project.train(epochs=25, model="small", device="cpu", batch_size=8).wait(900)
        assert train.status is JobStatus.FINISHED, train.error
        (clean,) = make_shapes(tmp_path / "new", 1, (128, 128), objects=(3, 3), seed=7)
        rgb = np.asarray(Image.open(clean.path).convert("RGB"), np.float32)
        noise = np.random.default_rng(0).normal(0, 40, rgb.shape)
        noisy = np.clip(rgb + noise, 0, 255).astype(np.uint8)  # the same shapes, sigma 40 noise
        easy = project.add_image(clean.path, name="clean.png")
        hard = project.add_image(noisy, name="noisy.png")
        project.threshold = 0.5
        ranked = project.suggest_next(device="cpu")
        print(ranked.to_string())
        scores = {r.name: project.predictions(r, threshold=0.0).confidence for r in (easy, hard)}
        print({k: np.round(np.sort(v)[::-1][:8], 2).tolist() for k, v in scores.items()})
        assert scores["clean.png"].max() > 0.5  # the model finds the clean shapes
        assert ranked["name"].tolist() == ["noisy.png", "clean.png"]
        assert ranked.iloc[0]["uncertain_boxes"] > ranked.iloc[1]["uncertain_boxes"]
    finally:
        project.close()
