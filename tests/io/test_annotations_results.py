"""COCO results lists and CSV predictions: round trips, pycocotools evaluation, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepblock_nb.errors import FormatError
from deepblock_nb.io.annotations import (
    AnnotatedImage,
    AnnotationSet,
    read_coco,
    read_coco_results,
    read_csv,
    write_coco,
    write_coco_results,
    write_csv,
)

CATEGORIES = ["chat noir", "狗", "no boxes, ever"]


def predictions(seed: int = 0) -> AnnotationSet:
    rng = np.random.default_rng(seed)
    images = []
    for i, name in enumerate(["a.jpg", "dir/b c.png", 'ünï, "quoted".tif']):
        n = 0 if i == 1 else 12
        xy = rng.uniform(0, 900, (n, 2))
        xyxy = np.hstack([xy, xy + rng.uniform(0.5, 100, (n, 2))])
        labels = [CATEGORIES[int(k)] for k in rng.integers(0, 2, n)]
        images.append(AnnotatedImage(name, 1000, 1000, xyxy, labels, scores=rng.uniform(0, 1, n)))
    return AnnotationSet(categories=list(CATEGORIES), images=images)


def assert_same(a: AnnotationSet, b: AnnotationSet) -> None:
    assert [im.file_name for im in a.images] == [im.file_name for im in b.images]
    for x, y in zip(a.images, b.images):
        np.testing.assert_array_equal(x.xyxy, y.xyxy)
        assert x.category == y.category
        assert x.scores is not None and y.scores is not None
        np.testing.assert_array_equal(x.scores, y.scores)


def test_results_round_trip_with_sidecar(tmp_path: Path) -> None:
    preds = predictions()
    write_coco_results(tmp_path / "results.json", preds, reference_path=tmp_path / "images.json")
    rows = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list) and set(rows[0]) == {"image_id", "category_id", "bbox", "score"}
    back = read_coco_results(tmp_path / "results.json", tmp_path / "images.json")
    assert back.categories == CATEGORIES
    assert_same(preds, back)
    assert len(back.images[1]) == 0 and back.images[1].scores is not None


def test_results_resolved_through_an_annotation_set(tmp_path: Path) -> None:
    preds = predictions(1)
    write_coco_results(tmp_path / "results.json", preds)
    assert_same(preds, read_coco_results(tmp_path / "results.json", preds))


def test_results_against_ground_truth_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = predictions(2)
    for im in truth.images:
        im.scores = None
    write_coco(tmp_path / "gt.json", truth)
    gt = read_coco(tmp_path / "gt.json")
    preds = AnnotationSet(
        gt.categories,
        [
            AnnotatedImage(im.file_name, im.width, im.height, im.xyxy, im.category, np.full(len(im), 0.9))
            for im in gt.images
        ],
    )
    write_coco_results(tmp_path / "dt.json", preds)
    coco_gt = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "dt.json")), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    # and our reader names them the same way
    assert_same(preds, read_coco_results(tmp_path / "dt.json", tmp_path / "gt.json"))


def test_write_results_needs_scores(tmp_path: Path) -> None:
    preds = predictions()
    preds.images[0].scores = None
    with pytest.raises(FormatError, match="without scores"):
        write_coco_results(tmp_path / "r.json", preds)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"annotations": []}, "expected a list of results"),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], r"results\[0\] has no 'score'"),
        ([{"image_id": 1, "category_id": 1, "score": 0.5}], "has no 'bbox'"),
        ([{"image_id": 77, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "unknown image_id 77"),
        ([{"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 0.5}], "unknown category_id 9"),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}], "score 'high'"),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}], "negative width"),
    ],
)
def test_bad_results(tmp_path: Path, content: object, message: str) -> None:
    write_coco_results(tmp_path / "ok.json", predictions(), reference_path=tmp_path / "ref.json")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(FormatError, match=message) as info:
        read_coco_results(path, tmp_path / "ref.json")
    assert str(info.value).startswith("results.json: ")


def test_bad_reference(tmp_path: Path) -> None:
    (tmp_path / "ref.json").write_text('{"images": []}', encoding="utf-8")
    (tmp_path / "r.json").write_text("[]", encoding="utf-8")
    with pytest.raises(FormatError, match="ref.json: no 'categories' list"):
        read_coco_results(tmp_path / "r.json", tmp_path / "ref.json")


def test_csv_round_trip_exact_and_readable_by_pandas(tmp_path: Path) -> None:
    import pandas as pd

    preds = predictions(3)
    write_csv(tmp_path / "p.csv", preds)
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns) == ["file_name", "category", "x1", "y1", "x2", "y2", "score"]
    assert len(frame) == preds.num_boxes
    assert set(frame["file_name"]) == {"a.jpg", 'ünï, "quoted".tif'}
    np.testing.assert_array_equal(frame[["x1", "y1", "x2", "y2"]].to_numpy()[:12], preds.images[0].xyxy)
    back = read_csv(tmp_path / "p.csv")
    kept = AnnotationSet(preds.categories, [im for im in preds.images if len(im)])
    assert_same(kept, back)


def test_csv_ground_truth_has_empty_scores(tmp_path: Path) -> None:
    aset = AnnotationSet(["a"], [AnnotatedImage("x.jpg", None, None, np.array([[0, 0, 10, 10]]), ["a"])])
    write_csv(tmp_path / "g.csv", aset)
    assert (tmp_path / "g.csv").read_text(encoding="utf-8").splitlines()[1] == "x.jpg,a,0,0,10,10,"
    assert read_csv(tmp_path / "g.csv").images[0].scores is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,category\n", "header must be"),
        ("file_name,category,x1,y1,x2,y2,score\nx.jpg,a,0,0,1\n", "line 2: 5 fields"),
        ("file_name,category,x1,y1,x2,y2,score\nx.jpg,a,0,0,one,1,\n", "line 2: .* not all numbers"),
        ("file_name,category,x1,y1,x2,y2,score\nx.jpg,a,5,0,1,1,\n", "line 2: box .* empty or inverted"),
        (
            "file_name,category,x1,y1,x2,y2,score\nx.jpg,a,0,0,1,1,0.5\nx.jpg,a,0,0,1,1,\n",
            "some rows have a score",
        ),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.csv").write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=message):
        read_csv(tmp_path / "p.csv")
