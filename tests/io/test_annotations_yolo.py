"""YOLO label folders: round trips, agreement with COCO, class files, rejected lines."""

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
    read_yolo,
    read_yolo_classes,
    write_coco,
    write_yolo,
)

CATEGORIES = ["vélo rouge", "人", "empty class"]
SIZES = {"sub dir/ïmage 0.jpg": (640, 480), "sub dir/ïmage 1.jpg": (33, 17), "b c.png": (1, 1)}


def random_set(seed: int = 0) -> AnnotationSet:
    rng = np.random.default_rng(seed)
    images = []
    for i, (name, (w, h)) in enumerate(SIZES.items()):
        n = 0 if i == 1 else 20
        xy = rng.uniform(0, 0.5, (n, 2)) * (w, h)
        xyxy = np.hstack([xy, xy + rng.uniform(0.01, 0.5, (n, 2)) * (w, h)])
        images.append(AnnotatedImage(name, w, h, xyxy, [CATEGORIES[int(k)] for k in rng.integers(0, 2, n)]))
    return AnnotationSet(categories=list(CATEGORIES), images=images)


def test_round_trip(tmp_path: Path) -> None:
    aset = random_set()
    write_yolo(tmp_path / "labels", aset)
    assert (tmp_path / "labels" / "classes.txt").read_text(
        encoding="utf-8"
    ) == "vélo rouge\n人\nempty class\n"
    assert (tmp_path / "labels" / "sub dir" / "ïmage 1.txt").read_text(encoding="utf-8") == ""
    back = read_yolo(tmp_path / "labels", image_sizes=SIZES)
    assert back.categories == CATEGORIES
    assert sorted(im.file_name for im in back.images) == sorted(SIZES)
    for a in aset.images:
        b = back.image(a.file_name)
        assert (b.width, b.height) == (a.width, a.height)
        assert b.category == a.category
        np.testing.assert_allclose(b.xyxy, a.xyxy, rtol=0, atol=1e-12 * max(SIZES[a.file_name]))
        assert b.scores is None


def test_yolo_and_coco_agree(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("a\nb\n", encoding="utf-8")
    lines = "0 0.5 0.5 0.2 0.4\n1 0.123456789 0.987 0.0123 0.02\n0 0.1 0.2 0.2 0.4\n"
    (labels / "img.txt").write_text(lines, encoding="utf-8")
    aset = read_yolo(labels, image_sizes={"img.jpg": (1920, 1080)})
    expected = []
    for line in lines.splitlines():
        _, cx, cy, w, h = (float(v) for v in line.split())
        expected.append([(cx - w / 2) * 1920, (cy - h / 2) * 1080, w * 1920, h * 1080])
    write_coco(tmp_path / "c.json", aset)
    bboxes = np.array([a["bbox"] for a in json.loads((tmp_path / "c.json").read_text())["annotations"]])
    np.testing.assert_allclose(bboxes, expected, rtol=0, atol=1e-9)
    # and back: COCO -> YOLO reproduces the normalised values
    write_yolo(tmp_path / "again", read_coco(tmp_path / "c.json"))
    again = np.loadtxt(tmp_path / "again" / "img.txt")
    np.testing.assert_allclose(again, np.loadtxt(labels / "img.txt"), rtol=0, atol=1e-9)


def test_scores_callable_sizes_and_data_yaml(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "labels" / "val").mkdir(parents=True)
    (root / "data.yaml").write_text("path: .\nnames:\n  0: cat\n  1: dog\n", encoding="utf-8")
    (root / "labels" / "val" / "x.txt").write_text("1 0.5 0.5 1 1 0.75\n", encoding="utf-8")
    aset = read_yolo(root / "labels", image_sizes=lambda stem: {"val/x": (10, 20)}.get(stem))
    assert aset.categories == ["cat", "dog"]
    (im,) = aset.images
    assert im.file_name == "val/x" and im.category == ["dog"]
    np.testing.assert_array_equal(im.xyxy, [[0, 0, 10, 20]])
    np.testing.assert_array_equal(im.scores, [0.75])
    write_yolo(tmp_path / "out", aset)
    assert (tmp_path / "out" / "val" / "x.txt").read_text() == "1 0.5 0.5 1.0 1.0 0.75\n"


def test_class_files(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("a b\n ünï \n\n", encoding="utf-8")
    assert read_yolo_classes(tmp_path / "c.txt") == ["a b", "ünï"]
    (tmp_path / "d.yaml").write_text("names: [x, y]\nnc: 2\n", encoding="utf-8")
    assert read_yolo_classes(tmp_path / "d.yaml") == ["x", "y"]
    (tmp_path / "bad.yaml").write_text("nc: 2\n", encoding="utf-8")
    with pytest.raises(FormatError, match="bad.yaml: no 'names'"):
        read_yolo_classes(tmp_path / "bad.yaml")
    (tmp_path / "dup.txt").write_text("a\na\n", encoding="utf-8")
    with pytest.raises(FormatError, match="'a' is listed twice"):
        read_yolo_classes(tmp_path / "dup.txt")


def test_mapped_images_without_labels_are_empty(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    aset = read_yolo(tmp_path / "l", classes=["a"], image_sizes={"bg.jpg": (5, 5)})
    assert [(im.file_name, len(im)) for im in aset.images] == [("bg.jpg", 0)]


def test_no_classes(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er" / "labels").mkdir(parents=True)
    with pytest.raises(FormatError, match="no classes.txt or data.yaml"):
        read_yolo(tmp_path / "deep" / "er" / "labels", image_sizes={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2\n", "line 1: 4 values, expected 5"),
        ("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1 0.1 0.1 0.1\n", "line 2: 8 values"),
        ("2 0.5 0.5 0.2 0.2\n", "class '2' is not an index in 0..1"),
        ("-1 0.5 0.5 0.2 0.2\n", "class '-1'"),
        ("0.5 0.5 0.5 0.2 0.2\n", "class '0.5'"),
        ("0 1.5 0.5 0.2 0.2\n", "cx = 1.5 is outside"),
        ("0 0.5 -0.01 0.2 0.2\n", "cy = -0.01 is outside"),
        ("0 0.5 0.5 0 0.2\n", "width and height must be > 0"),
        ("0 0.5 0.5 0.2 nan\n", "h = nan is outside"),
        ("0 0.5 0.5 0.2 x\n", "not a number"),
        ("0 0.5 0.5 0.2 0.2 0.9\n1 0.5 0.5 0.2 0.2\n", "line 2: some lines have a score"),
    ],
)
def test_bad_lines(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "img 1.txt").write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=message) as info:
        read_yolo(tmp_path / "labels", classes=["a", "b"], image_sizes={"img 1": (10, 10)})
    assert str(info.value).startswith("img 1.txt line ")


def test_tolerance_and_missing_size(tmp_path: Path) -> None:
    (tmp_path / "img.txt").write_text("0 1.0000000001 0.5 0.2 0.2\n", encoding="utf-8")
    assert read_yolo(tmp_path, classes=["a"], image_sizes={"img": (10, 10)}).num_boxes == 1
    with pytest.raises(FormatError, match="img.txt: no image size for 'img'"):
        read_yolo(tmp_path, classes=["a"], image_sizes={"other": (10, 10)})
    with pytest.raises(FormatError, match="image size"):
        read_yolo(tmp_path, classes=["a"], image_sizes={"img": (0, 10)})


def test_write_needs_sizes_and_safe_names(tmp_path: Path) -> None:
    no_size = AnnotationSet(["a"], [AnnotatedImage("x.jpg", None, None, np.array([[0, 0, 1, 1]]), ["a"])])
    with pytest.raises(FormatError, match="no width/height"):
        write_yolo(tmp_path / "o", no_size)
    escape = AnnotationSet(["a"], [AnnotatedImage("../x.jpg", 5, 5, np.zeros((0, 4)), [])])
    with pytest.raises(FormatError, match="cannot write a file"):
        write_yolo(tmp_path / "o", escape)
    clash = AnnotationSet(
        ["a"],
        [
            AnnotatedImage("x.jpg", 5, 5, np.zeros((0, 4)), []),
            AnnotatedImage("x.png", 5, 5, np.zeros((0, 4)), []),
        ],
    )
    with pytest.raises(FormatError, match="same label file"):
        write_yolo(tmp_path / "o", clash)
    assert not (tmp_path / "o").exists()


def test_ambiguous_sizes_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="names both 'a.jpg' and 'a.png'"):
        read_yolo(tmp_path, classes=["a"], image_sizes={"a.jpg": (5, 5), "a.png": (5, 5)})
    with pytest.raises(FormatError, match="not a folder"):
        read_yolo(tmp_path / "missing", classes=["a"], image_sizes={})
