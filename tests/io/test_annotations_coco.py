"""COCO files: exact round trips, real pycocotools reading, and every rejected input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deepblock_nb.errors import FormatError
from deepblock_nb.io.annotations import (
    AnnotatedImage,
    AnnotationSet,
    read_coco,
    write_coco,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

CATEGORIES = ["vélo rouge", "人", "empty class", "car"]


def random_set(rng: np.random.Generator, n_images: int = 5) -> AnnotationSet:
    """Random float boxes; unicode/space names; an image and a category without boxes."""
    images = []
    for i in range(n_images):
        n = 0 if i == 1 else int(rng.integers(1, 30))
        xy = rng.uniform(0, 3000, (n, 2))
        wh = rng.uniform(0.01, 400, (n, 2))
        labels = [str(rng.choice(["vélo rouge", "人", "car"])) for _ in range(n)]
        images.append(
            AnnotatedImage(f"sub dir/ïmage {i} 图.jpg", 4000, 3500, np.hstack([xy, xy + wh]), labels)
        )
    return AnnotationSet(categories=list(CATEGORIES), images=images)


def coco_file(rng: np.random.Generator) -> dict[str, Any]:
    """A COCO dict as another tool writes it: sparse ids, float bboxes, 2-decimal values."""
    cats = [
        {"id": 7, "name": "ünïcode cat"},
        {"id": 3, "name": "with space"},
        {"id": 12, "name": "never used"},
    ]
    images = [
        {"id": 101, "file_name": "a folder/photo 1.jpg", "width": 640, "height": 480},
        {"id": 5, "file_name": "b.png", "width": 10, "height": 10},
        {"id": 9, "file_name": "фото.tif"},
    ]
    anns = []
    for k in range(200):
        x, y, w, h = rng.uniform(0, 600, 4)
        if k % 2:
            x, y, w, h = (round(v, 2) for v in (x, y, w, h))
        w, h = max(w, 0.01), max(h, 0.01)
        anns.append(
            {
                "id": 1000 + k,
                "image_id": [101, 9][k % 2],
                "category_id": [7, 3][k % 3 == 0],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h]],
            }
        )
    return {"info": {}, "images": images, "annotations": anns, "categories": cats}


def dump(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_naive_xywh_round_trip_is_not_exact() -> None:
    # Guards the point of the tests below: x + w - x differs from w for most random floats.
    rng = np.random.default_rng(0)
    x, w = rng.uniform(0, 5000, 1000), rng.uniform(0.1, 500, 1000)
    assert np.mean((x + w) - x != w) > 0.5


def test_xyxy_to_xywh_is_exact_inverse() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1e4, (5000, 2))
    xyxy = np.hstack([xy, xy + rng.uniform(1e-3, 1e3, (5000, 2))])
    xywh = xyxy_to_xywh(xyxy)
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), xyxy)
    np.testing.assert_allclose(xywh[:, 2:], xyxy[:, 2:] - xyxy[:, :2], rtol=1e-12)
    assert xyxy_to_xywh(np.zeros((0, 4))).shape == (0, 4)


def test_records_to_coco_to_records_exact(tmp_path: Path) -> None:
    aset = random_set(np.random.default_rng(2))
    write_coco(tmp_path / "out.json", aset)
    back = read_coco(tmp_path / "out.json")
    assert back.categories == CATEGORIES
    assert [im.file_name for im in back.images] == [im.file_name for im in aset.images]
    for a, b in zip(aset.images, back.images):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)  # bit for bit
        assert a.category == b.category
        assert (b.width, b.height) == (4000, 3500)
    assert len(back.images[1]) == 0
    assert back.warnings == []


def test_coco_to_records_to_coco_exact(tmp_path: Path) -> None:
    src = coco_file(np.random.default_rng(3))
    aset = read_coco(dump(tmp_path / "in.json", src))
    assert aset.categories == ["ünïcode cat", "with space", "never used"]
    assert [im.source_id for im in aset.images] == [101, 5, 9]
    assert aset.images[2].width is None
    write_coco(tmp_path / "out.json", aset)
    out = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    boxes = np.array([a["bbox"] for a in src["annotations"]])
    assert np.any((boxes[:, 0] + boxes[:, 2]) - boxes[:, 0] != boxes[:, 2])  # the naive way would fail
    # Written grouped by image, in image order; within an image in file order.
    expected = sorted(src["annotations"], key=lambda a: [101, 5, 9].index(a["image_id"]))
    assert [a["bbox"] for a in out["annotations"]] == [[float(v) for v in a["bbox"]] for a in expected]
    assert [(a["image_id"], a["category_id"]) for a in out["annotations"]] == [
        (a["image_id"], a["category_id"]) for a in expected
    ]
    assert [(c["id"], c["name"]) for c in out["categories"]] == [
        (c["id"], c["name"]) for c in src["categories"]
    ]
    assert out["images"][2] == {"id": 9, "file_name": "фото.tif"}


def test_edited_box_is_written_from_xyxy(tmp_path: Path) -> None:
    aset = read_coco(dump(tmp_path / "in.json", coco_file(np.random.default_rng(4))))
    im = aset.images[0]
    im.xyxy[0] = [1.5, 2.25, 11.5, 12.25]  # the stale source xywh must not be used
    write_coco(tmp_path / "out.json", aset)
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["annotations"][0]["bbox"] == [
        1.5,
        2.25,
        10.0,
        10.0,
    ]


def test_written_file_loads_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    aset = random_set(np.random.default_rng(5))
    write_coco(tmp_path / "out.json", aset, category_ids={n: 10 + i for i, n in enumerate(CATEGORIES)})
    coco = COCO(str(tmp_path / "out.json"))
    assert len(coco.getAnnIds()) == aset.num_boxes
    assert sorted(coco.getCatIds()) == [10, 11, 12, 13]
    first = aset.images[0]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    got = np.array([a["bbox"] for a in anns])
    np.testing.assert_array_equal(xywh_to_xyxy(got), first.xyxy)


def test_given_image_ids_and_scores(tmp_path: Path) -> None:
    aset = random_set(np.random.default_rng(6), n_images=2)
    for im in aset.images:
        im.scores = np.linspace(0.1, 0.9, len(im))
    ids = {im.file_name: 40 + i for i, im in enumerate(aset.images)}
    write_coco(tmp_path / "p.json", aset, image_ids=ids)
    back = read_coco(tmp_path / "p.json")
    assert [im.source_id for im in back.images] == [40, 41]
    np.testing.assert_array_equal(back.images[0].scores, aset.images[0].scores)


def test_crowd_skipped_with_warning(tmp_path: Path) -> None:
    src = coco_file(np.random.default_rng(7))
    src["annotations"][0]["iscrowd"] = 1
    src["annotations"][2]["iscrowd"] = 1
    aset = read_coco(dump(tmp_path / "in.json", src))
    assert aset.num_boxes == len(src["annotations"]) - 2
    assert len(aset.warnings) == 1 and "2 crowd" in aset.warnings[0]


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")
    bad = AnnotationSet(["a"], [AnnotatedImage("x.jpg", 5, 5, np.array([[0, 0, 1, 1]]), ["b"])])
    with pytest.raises(FormatError, match="unknown category 'b'"):
        write_coco(target, bad)
    assert target.read_text(encoding="utf-8") == "old"
    write_coco(target, random_set(np.random.default_rng(8), 1))
    assert read_coco(target).num_boxes > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([AnnotatedImage("x.jpg", 5, 5, np.array([[2, 0, 1, 1]]), ["a"])], "empty or inverted"),
        ([AnnotatedImage("x.jpg", 5, 5, np.array([[0, 0, np.nan, 1]]), ["a"])], "non-finite"),
        (
            [
                AnnotatedImage("x.jpg", 5, 5, np.zeros((0, 4)), []),
                AnnotatedImage("x.jpg", 5, 5, np.zeros((0, 4)), []),
            ],
            "listed twice",
        ),
    ],
)
def test_write_rejects_bad_records(tmp_path: Path, records: list[AnnotatedImage], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        write_coco(tmp_path / "o.json", AnnotationSet(["a"], records))


def _drop(path: list[Any]) -> Any:
    def edit(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


def _set(path: list[Any], value: object) -> Any:
    def edit(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop(["images"]), "no 'images'"),
        (_drop(["annotations"]), "no 'annotations'"),
        (_drop(["categories"]), "no 'categories'"),
        (_set(["images"], {}), "'images' is a dict"),
        (_drop(["images", 0, "id"]), r"images\[0\] has no 'id'"),
        (_drop(["images", 1, "file_name"]), r"images\[1\] has no 'file_name'"),
        (_drop(["categories", 0, "id"]), r"categories\[0\] has no 'id'"),
        (_drop(["categories", 1, "name"]), r"categories\[1\] has no 'name'"),
        (_drop(["annotations", 17, "bbox"]), r"annotations\[17\] \(id 1017\) has no 'bbox'"),
        (_drop(["annotations", 3, "image_id"]), r"annotations\[3\] \(id 1003\) has no 'image_id'"),
        (_drop(["annotations", 4, "category_id"]), "has no 'category_id'"),
        (
            _set(["annotations", 5, "image_id"], 99),
            r"annotations\[5\] \(id 1005\) refers to unknown image_id 99",
        ),
        (_set(["annotations", 6, "category_id"], 70), "unknown category_id 70"),
        (_set(["annotations", 6, "category_id"], [7]), r"unknown category_id \[7\]"),
        (_set(["annotations", 6, "image_id"], {"a": 1}), "unknown image_id"),
        (_set(["images", 1, "id"], 101), "image id 101 is used twice"),
        (_set(["images", 1, "file_name"], "фото.tif"), "file_name 'фото.tif' is listed twice"),
        (_set(["categories", 1, "id"], 7), "category id 7 is used twice"),
        (_set(["categories", 1, "name"], "never used"), "category name 'never used' is used twice"),
        (_set(["annotations", 3, "bbox", 2], -4.0), r"annotations\[3\] \(id 1003\) has negative width"),
        (_set(["annotations", 3, "bbox", 3], 0), "has zero height"),
        (_set(["annotations", 3, "bbox"], [1, 2, 3]), "expected 4 finite numbers"),
        (_set(["annotations", 3, "bbox"], [1, 2, "3", 4]), "expected 4 finite numbers"),
        (_set(["annotations", 3, "bbox"], [1, 2, True, 4]), "expected 4 finite numbers"),
        (_set(["annotations", 3, "bbox", 0], float("inf")), "expected 4 finite numbers"),
        (_set(["annotations", 3, "bbox"], [1e17, 0, 1, 1]), "size vanishes"),
        (_set(["images", 0, "width"], 0), "width 0, expected a positive integer"),
        (_set(["images", 0, "height"], -3), "height -3"),
        (_set(["images", 0, "width"], 10.5), "width 10.5"),
        (_set(["annotations", 8], []), r"annotations\[8\] is not an object"),
        (_set(["annotations", 2, "score"], 0.5), r"annotations\[0\] \(id 1000\) has no 'score'"),
    ],
)
def test_bad_coco_is_rejected(tmp_path: Path, edit: Any, message: str) -> None:
    data = copy.deepcopy(coco_file(np.random.default_rng(9)))
    edit(data)
    path = dump(tmp_path / "instances.json", data)
    with pytest.raises(FormatError, match=message) as info:
        read_coco(path)
    assert str(info.value).startswith("instances.json: ")
    assert info.value.path == path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"images": [', "not valid JSON"),
        (b"[1, 2]", "top level is a list"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_not_coco_at_all(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "instances.json"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message):
        read_coco(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        read_coco(tmp_path / "nope.json")
