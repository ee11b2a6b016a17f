from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from tests.conftest import write_png


def _coco(
    tmp_path: Path, n_images: int = 4, seed: int = 0, folder: str = "photos"
) -> tuple[Path, dict[str, Any]]:
    """A COCO file with random float boxes over real PNG files in ``folder``."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    ann_id = 1
    for i in range(n_images):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        name = f"img {i} é.png"
        write_png(tmp_path / folder / name, width=w, height=h, seed=i)
        images.append({"id": 100 + i, "file_name": name, "width": w, "height": h})
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
            bw, bh = rng.uniform(1, w - x), rng.uniform(1, h - y)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": 100 + i,
                    "category_id": int(rng.choice([3, 7])),
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "truck"}, {"id": 9, "name": "unused"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, data


def test_coco_round_trip_is_exact(tmp_path: Path) -> None:
    path, data = _coco(tmp_path, n_images=6)
    p = dbn.Project.create(tmp_path / "p")
    report = p.import_annotations(path, images_dir=tmp_path / "photos")
    assert report.images_added == 6 and report.boxes_added == len(data["annotations"])
    assert set(report.categories_added) == {"car", "truck", "unused"}
    out = tmp_path / "export.json"
    p.export_annotations(out)
    back = json.loads(out.read_text())
    by_name = {im["file_name"]: im for im in back["images"]}
    src_images = {im["id"]: im for im in data["images"]}
    assert set(by_name) == {im["file_name"] for im in data["images"]}
    cat_name = {c["id"]: c["name"] for c in back["categories"]}
    assert set(cat_name.values()) == {"car", "truck", "unused"}
    src_cat = {c["id"]: c["name"] for c in data["categories"]}
    key = lambda name, cat, bbox: (name, cat, tuple(bbox))  # noqa: E731
    want = sorted(
        key(src_images[a["image_id"]]["file_name"], src_cat[a["category_id"]], a["bbox"])
        for a in data["annotations"]
    )
    back_images = {im["id"]: im["file_name"] for im in back["images"]}
    got = sorted(
        key(back_images[a["image_id"]], cat_name[a["category_id"]], a["bbox"]) for a in back["annotations"]
    )
    assert got == want  # every float bit for bit
    p.close()


def test_import_matches_existing_images_by_name(tmp_path: Path) -> None:
    path, _ = _coco(tmp_path, n_images=2)
    p = dbn.Project.create(tmp_path / "p", categories=["car"])
    p.add_image(tmp_path / "photos" / "img 0 é.png")
    report = p.import_annotations(path, images_dir=tmp_path / "photos")
    assert report.images_matched == 1 and report.images_added == 1
    assert len(p.images()) == 2
    p.close()


def _snapshot(p: dbn.Project) -> tuple[Any, ...]:
    return (
        [c.name for c in p.categories],
        [im.name for im in p.images()],
        p._db.scalar("SELECT count(*) FROM annotations"),
        sorted(x.name for x in (p.path / "images").iterdir()),
    )


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d["annotations"][0].pop("bbox"), dbn.FormatError, "bbox"),
        (lambda d: d["annotations"][0].update(image_id=999), dbn.FormatError, "999"),
        (lambda d: d["annotations"][0].update(category_id=42), dbn.FormatError, "42"),
        (
            lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4]),
            dbn.FormatError,
            "width|negative|inverted",
        ),
        (lambda d: d["annotations"][-1].update(bbox=[5000, 5000, 3, 4]), dbn.FormatError, "outside"),
        (lambda d: d.pop("images"), dbn.FormatError, "images"),
        (lambda d: d["images"][0].update(file_name="../../escape.png"), dbn.PathError, "outside"),
        (
            lambda d: d["images"][1].update(file_name=d["images"][0]["file_name"]),
            dbn.FormatError,
            "file|name",
        ),
        (lambda d: d["images"][0].update(file_name="not-there.png"), dbn.FormatError, "not-there.png"),
        (lambda d: d["images"][0].update(width=d["images"][0]["width"] + 1), dbn.FormatError, "on disk"),
    ],
)
def test_bad_coco_changes_nothing(tmp_path: Path, mutate: Any, error: type, match: str) -> None:
    path, data = _coco(tmp_path, n_images=3, seed=1)
    assert data["annotations"], "the generated file needs boxes"
    mutate(data)
    path.write_text(json.dumps(data))
    p = dbn.Project.create(tmp_path / "p", categories=["car"])
    keep = p.add_image(write_png(tmp_path / "keep.png"))
    p.add_box(keep, "car", [0, 0, 3, 3])
    before = _snapshot(p)
    with pytest.raises(error, match=match):
        p.import_annotations(path, images_dir=tmp_path / "photos")
    assert _snapshot(p) == before
    p.close()


def test_truncated_image_named_by_coco_imports_nothing(tmp_path: Path) -> None:
    path, data = _coco(tmp_path, n_images=3)
    victim = tmp_path / "photos" / data["images"][2]["file_name"]
    victim.write_bytes(victim.read_bytes()[:80])
    p = dbn.Project.create(tmp_path / "p")
    with pytest.raises(dbn.ImageReadError, match="img 2"):
        p.import_annotations(path, images_dir=tmp_path / "photos")
    assert p.images() == [] and p.categories == []
    assert list((p.path / "images").iterdir()) == []
    p.close()


def test_not_json_is_a_format_error(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text("{ not json")
    p = dbn.Project.create(tmp_path / "p")
    with pytest.raises(dbn.FormatError, match="broken.json"):
        p.import_annotations(f)
    p.close()


def test_boxes_reaching_outside_are_clipped_and_counted(tmp_path: Path) -> None:
    write_png(tmp_path / "photos" / "a.png", width=50, height=40)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 30, 20, 20]}],
        "categories": [{"id": 1, "name": "car"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    p = dbn.Project.create(tmp_path / "p")
    report = p.import_annotations(tmp_path / "c.json", images_dir=tmp_path / "photos")
    assert report.boxes_clipped == 1 and "clipped" in str(report)
    assert p.annotations("a.png").xyxy.tolist() == [[40, 30, 50, 40]]
    p.close()


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_yolo_and_voc_round_trip_through_the_project(tmp_path: Path, fmt: str) -> None:
    path, _ = _coco(tmp_path, n_images=4, seed=3)
    p = dbn.Project.create(tmp_path / "p")
    p.import_annotations(path, images_dir=tmp_path / "photos")
    out = tmp_path / f"out-{fmt}"
    p.export_annotations(out, format=fmt)
    q = dbn.Project.create(tmp_path / "q")
    q.import_annotations(out, format=fmt, images_dir=tmp_path / "photos")
    for im in p.images():
        a, b = p.annotations(im.name), q.annotations(im.name)
        names_a = [p.category(int(c)).name for c in a.class_id]
        names_b = [q.category(int(c)).name for c in b.class_id]
        order_a, order_b = np.lexsort(a.xyxy.T), np.lexsort(b.xyxy.T)
        np.testing.assert_allclose(b.xyxy[order_b], a.xyxy[order_a], atol=1e-6)
        assert [names_b[i] for i in order_b] == [names_a[i] for i in order_a]
    p.close()
    q.close()
