"""Annotation exports other tools read: an Ultralytics dataset (read by Ultralytics
itself) and a COCO file with its info and licenses (read by pycocotools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import deepblock_nb as dbn
from deepblock_nb.errors import FormatError
from deepblock_nb.io.annotations import AnnotatedImage, DatasetImage, write_yolo_dataset
from tests.conftest import write_png

# image -> (split, width, height, [(category, xyxy)])
IMAGES: dict[str, tuple[str, int, int, list[tuple[str, list[float]]]]] = {
    "a.png": ("train", 100, 50, [("person", [10, 5, 30, 25]), ("car", [0, 0, 100, 50])]),
    "b.png": ("train", 40, 30, []),  # background: an empty label file
    "c é.png": (
        "evaluate",
        64,
        48,
        [("car", [16, 12, 48, 36]), ("car", [1, 2, 3, 4]), ("person", [60, 40, 64, 48])],
    ),
    "d.png": ("predict", 32, 32, [("car", [0, 0, 16, 16])]),
}
LABELS = {
    "labels/train/a.txt": "1 0.2 0.3 0.2 0.4\n0 0.5 0.5 1.0 1.0\n",
    "labels/train/b.txt": "",
}


@pytest.fixture
def project(tmp_path: Path) -> Any:
    p = dbn.Project.create(tmp_path / "proj", categories=["car", "person"])
    for i, (name, (split, w, h, boxes)) in enumerate(IMAGES.items()):
        rec = p.add_image(write_png(tmp_path / "photos" / name, w, h, seed=i), split=split)
        for cat, xyxy in boxes:
            p.add_box(rec, cat, xyxy)
    yield p
    p.close()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_layout_data_yaml_and_label_lines(project: Any, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert project.export_annotations(out, format="yolo") == out
    assert _files(out) == [
        "data.yaml",
        "images/train/a.png",
        "images/train/b.png",
        "images/val/c é.png",
        "labels/train/a.txt",
        "labels/train/b.txt",
        "labels/val/c é.txt",
    ]  # no predict image, no classes.txt
    assert yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8")) == {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "car", 1: "person"},
    }
    for rel, text in LABELS.items():
        assert (out / rel).read_text(encoding="utf-8") == text
    val = [line.split() for line in (out / "labels/val/c é.txt").read_text(encoding="utf-8").splitlines()]
    assert [row[0] for row in val] == ["0", "0", "1"]
    np.testing.assert_allclose(
        np.array([row[1:] for row in val], float),
        [[0.5, 0.5, 0.5, 0.5], [2 / 64, 3 / 48, 2 / 64, 2 / 48], [62 / 64, 44 / 48, 4 / 64, 8 / 48]],
        rtol=0,
        atol=1e-15,
    )
    image = out / "images/train/a.png"
    assert not image.is_symlink() and image.read_bytes() == project.image("a.png").path.read_bytes()


def test_round_trip_through_import_annotations(project: Any, tmp_path: Path) -> None:
    out = project.export_annotations(tmp_path / "ds", format="yolo")
    q = dbn.Project.create(tmp_path / "q")
    report = q.import_annotations(out, format="yolo")  # images come from the dataset itself
    assert report.images_added == 3 and report.boxes_added == 5
    assert [c.name for c in q.categories] == ["car", "person"]
    for name in ("a.png", "b.png", "c é.png"):
        a, b = project.annotations(name), q.annotations(name)
        assert (q.image(name).width, q.image(name).height) == (
            project.image(name).width,
            project.image(name).height,
        )
        np.testing.assert_allclose(b.xyxy, a.xyxy, rtol=0, atol=1e-9)
        assert [q.category(int(c)).name for c in b.class_id] == [
            project.category(int(c)).name for c in a.class_id
        ]
    q.close()


def test_one_split_and_stale_files(project: Any, tmp_path: Path) -> None:
    out = project.export_annotations(tmp_path / "ds", format="yolo", split="predict")
    assert _files(out) == ["data.yaml", "images/test/d.png", "labels/test/d.txt"]
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert (data["train"], data["val"], data["test"]) == ("images/test", "images/test", "images/test")
    assert (out / "labels/test/d.txt").read_text(encoding="utf-8") == "0 0.25 0.25 0.5 0.5\n"
    project.export_annotations(out, format="yolo", split="predict")  # the same files again: fine
    (out / "labels/test/old.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FormatError, match=r"labels/test/ holds 1 files .*'labels/test/old.txt'"):
        project.export_annotations(out, format="yolo", split="predict")


def test_large_images_are_linked_and_unreadable_formats_converted_or_left_out(tmp_path: Path) -> None:
    src = write_png(tmp_path / "big.png", 20, 10)
    svg = tmp_path / "drawing.svg"
    svg.write_text("<svg/>")
    rgb = np.full((10, 20, 3), 7, np.uint8)
    items = [
        DatasetImage(AnnotatedImage("big.png", 20, 10, [[0, 0, 10, 10]], ["x"]), src),
        DatasetImage(AnnotatedImage("drawing.svg", 20, 10, [[0, 0, 20, 5]], ["x"]), svg, render=lambda: rgb),
        DatasetImage(AnnotatedImage("huge.svg", 21, 10, [], []), svg, render=lambda: rgb),
        DatasetImage(AnnotatedImage("slide.svs", 20, 10, [], []), svg),
    ]
    out = tmp_path / "ds"
    result = write_yolo_dataset(
        out, ["x"], {"train": items}, link_from_bytes=src.stat().st_size, convert_max_pixels=200
    )
    assert (out / "images/train/big.png").is_symlink()
    assert (out / "images/train/big.png").resolve() == src.resolve()
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(out / "images/train/drawing.png")), rgb)
    assert (out / "labels/train/drawing.txt").read_text() == "0 0.5 0.25 1.0 0.5\n"
    assert not (out / "images/train/huge.png").exists() and not (out / "labels/train/huge.txt").exists()
    assert (result.linked, result.converted, result.skipped) == (
        ["big.png"],
        ["drawing.svg"],
        ["slide.svs", "huge.svg"],
    )
    assert result.images == {"train": 2} and result.boxes == {"train": 2}
    text = "\n".join(result.notes)
    assert (
        "links" in text
        and "converted to PNG" in text
        and "too large to convert" in text
        and "'slide.svs'" in text
    )


# ------------------------------------------------------------ Ultralytics reads it


@pytest.fixture
def offline_ultralytics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Ultralytics with no way to reach the network: its settings in a temporary
    folder, YOLO_OFFLINE set, and every download path made to fail the test."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
    # importing ultralytics replaces PIL.Image.open for the whole process (its patches
    # module); the original comes back after this test
    from PIL import Image

    monkeypatch.setattr(Image, "open", Image.open)
    # and sets OMP_NUM_THREADS=1 in os.environ when unset: every process started later
    # (notebook kernels, torchrun) would inherit it; unset again after this test
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.delenv("OMP_NUM_THREADS")
    pytest.importorskip("ultralytics")
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import downloads

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"Ultralytics tried to download: {args} {kwargs}")

    monkeypatch.setattr(downloads, "safe_download", no_download)
    monkeypatch.setattr(downloads, "is_url", no_download)
    monkeypatch.setattr(data_utils, "safe_download", no_download)
    # check_det_dataset fetches Arial.ttf for plots when it is not cached: not needed here
    monkeypatch.setattr(data_utils, "check_font", lambda *a, **k: None)
    return data_utils


def test_ultralytics_reads_the_dataset_and_counts_the_same_boxes(
    project: Any, tmp_path: Path, offline_ultralytics: Any
) -> None:
    from ultralytics.data.dataset import YOLODataset

    out = project.export_annotations(tmp_path / "ds", format="yolo")
    data = offline_ultralytics.check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["nc"] == 2 and data["names"] == {0: "car", 1: "person"}
    for key, split in (("train", "train"), ("val", "evaluate")):
        assert Path(data[key]) == (out / "images" / ("train" if key == "train" else "val")).resolve()
        ds = YOLODataset(img_path=data[key], data=data, task="detect", imgsz=64, augment=False, rect=False)
        counted = {Path(lb["im_file"]).name: len(lb["cls"]) for lb in ds.labels}
        expected = {rec.name: len(project.annotations(rec)) for rec in project.images(split)}
        assert counted == expected
        for lb in ds.labels:
            name = Path(lb["im_file"]).name
            want = [project.category(int(c)).name for c in project.annotations(name).class_id]
            assert [data["names"][int(c)] for c in lb["cls"].ravel()] == want
            assert lb["shape"] == (project.image(name).height, project.image(name).width)


# ------------------------------------------------------------ COCO: info and licenses kept


def test_coco_export_keeps_info_licenses_and_image_fields(tmp_path: Path) -> None:
    COCO = pytest.importorskip("pycocotools.coco").COCO
    info = {
        "description": "street scenes",
        "version": "1.0",
        "year": 2024,
        "contributor": "x",
        "url": "",
        "date_created": "2024-01-02",
    }
    licenses = [{"id": 4, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}]
    extra = {
        "license": 4,
        "date_captured": "2024-01-01 10:00:00",
        "coco_url": "http://h/a.png",
        "flickr_url": "http://f/a.png",
    }
    images = [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30, **extra},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
    ]
    for im in images:
        write_png(tmp_path / "photos" / im["file_name"], 40, 30)
    anns = [
        {"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [k, k, 5, 5], "area": 25, "iscrowd": 0}
        for k in range(3)
    ]
    src = {
        "info": info,
        "licenses": licenses,
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "car"}],
    }
    (tmp_path / "in.json").write_text(json.dumps(src))
    p = dbn.Project.create(tmp_path / "p")
    p.import_annotations(tmp_path / "in.json", images_dir=tmp_path / "photos")
    p.close()
    p = dbn.Project.open(tmp_path / "p")  # kept in the database, not in memory
    out = p.export_annotations(tmp_path / "out.json")
    coco = COCO(str(out))
    assert coco.dataset["info"] == info and coco.dataset["licenses"] == licenses
    by_name = {im["file_name"]: im for im in coco.dataset["images"]}
    assert {k: by_name["a.png"][k] for k in extra} == extra
    assert not set(extra) & set(by_name["b.png"])
    for name, n in (("a.png", 3), ("b.png", 0)):
        assert len(coco.getAnnIds(imgIds=[by_name[name]["id"]])) == n == len(p.annotations(name))
    # a project that never saw a COCO file writes neither key
    q = dbn.Project.create(tmp_path / "q", categories=["car"])
    q.add_image(tmp_path / "photos" / "a.png")
    plain = json.loads(q.export_annotations(tmp_path / "plain.json").read_text())
    assert (
        "info" not in plain
        and "licenses" not in plain
        and set(plain["images"][0]) == {"id", "file_name", "width", "height"}
    )
    p.close()
    q.close()
