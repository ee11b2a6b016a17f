"""Property-based fuzzing of ``Project.import_annotations`` over damaged files.

One real project per test (hypothesis reuses it across examples: a function-scoped
fixture would not be reset between them), with two images and a few boxes. Each
example writes a valid COCO file / YOLO folder / VOC folder naming images of the
project, new images beside it, missing ones and a file that is no image, damages
it (see ``tests/io/_fuzz.py``) and imports it. The property: the import either
raises a ``DeepBlockError`` naming the file, and then the project is exactly as
before (categories, images, boxes, files under ``images/``, no event announced);
or it succeeds, and then the project is consistent (old records untouched, every
box finite, inside its image and of a known category, the report's counts right).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError, DeepBlockError
from tests.conftest import write_png
from tests.io._fuzz import FUZZ, Scratch, dump_json, event, gist, mutated_bytes, mutated_json, mutated_lines

SIZES = {"a.png": (64, 48), "b.png": (80, 60), "new.png": (50, 40), "sub/deep.png": (30, 20)}
NAMES = [*SIZES, "fake.png", "missing.png", "../outside.png"]  # the last three cannot be imported
TOPICS = ("images", "annotations", "categories")


class Workspace:
    """Image files, one project per format, and the events each project announced."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.photos = root / "photos"
        for i, (name, (w, h)) in enumerate(SIZES.items()):
            write_png(self.photos / name, width=w, height=h, seed=i)
        (self.photos / "fake.png").write_bytes(b"not an image at all")
        write_png(root / "outside.png", 10, 10)
        self.scratch = Scratch(root / "files")
        self.projects: dict[str, dbn.Project] = {}
        self.events: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def project(self, key: str) -> dbn.Project:
        if key not in self.projects:
            p = dbn.Project.create(self.root / f"project-{key}", categories=["car", "person"])
            a = p.add_image(self.photos / "a.png")
            b = p.add_image(self.photos / "b.png")
            p.add_box(a, "car", [1, 2, 30, 40])
            p.add_box(a, "person", [10.5, 0.25, 64, 48])
            p.add_box(b, "car", [0, 0, 1, 1])
            log: list[tuple[str, dict[str, Any]]] = []
            for topic in TOPICS:
                p.on(topic, lambda topic=topic, **payload: log.append((topic, payload)))
            self.projects[key], self.events[key] = p, log
        return self.projects[key]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    w = Workspace(tmp_path_factory.mktemp("fuzz_import"))
    yield w
    for p in w.projects.values():
        p.close()


def snapshot(p: dbn.Project) -> dict[str, Any]:
    images = p.images()
    boxes = {}
    for rec in images:
        det = p.annotations(rec)
        boxes[rec.id] = (
            det.xyxy.tolist(),
            det.class_id.tolist(),
            None if det.ids is None else det.ids.tolist(),
        )
    files = sorted(str(f.relative_to(p.path)) for f in (p.path / "images").rglob("*"))
    return {
        "categories": [(c.id, c.name, c.color) for c in p.categories],
        "images": [(r.id, r.name, r.width, r.height, r.split, r.grid, str(r.path)) for r in images],
        "boxes": boxes,
        "files": files,
    }


def run_import(ws: Workspace, key: str, target: Path, fmt: str, names: list[str], draw: st.DrawFn) -> None:
    """Import ``target`` into the project ``key`` and check the property."""
    p = ws.project(key)
    before = snapshot(p)
    log = ws.events[key]
    n_events = len(log)
    # now and then an argument a person might get wrong
    split = draw(st.sampled_from(["train"] * 20 + ["evaluate", "predict", "validation"]))
    fmt = draw(st.sampled_from([fmt] * 20 + [fmt.upper(), "yolov8", "pascal_voc" if fmt == "voc" else fmt]))
    try:
        report = p.import_annotations(target, format=fmt, images_dir=ws.photos, split=split)
    except DeepBlockError as exc:
        message = str(exc)
        bad_argument = split not in ("train", "evaluate", "predict") or fmt == "yolov8"
        if bad_argument and isinstance(exc, ArgumentError):  # it names the argument, not a file
            names = [repr(split), repr(fmt)]
        assert snapshot(p) == before, f"the project changed although the import failed: {message}"
        assert log[n_events:] == [], f"events announced for a failed import: {log[n_events:]}"
        assert any(n in message for n in names), f"{type(exc).__name__} names none of {names}: {message}"
        event(f"{type(exc).__name__}: {gist(message, [*names, str(ws.photos), str(target)])}")
        return
    check_consistent(p, before, report)
    event("clean" + (" (boxes added)" if report.boxes_added else ""))


def check_consistent(p: dbn.Project, before: dict[str, Any], report: Any) -> None:
    after = snapshot(p)
    assert after["categories"][: len(before["categories"])] == before["categories"]
    new_cats = [name for _, name, _ in after["categories"][len(before["categories"]) :]]
    assert new_cats == report.categories_added
    assert len({name for _, name, _ in after["categories"]}) == len(after["categories"])
    assert after["images"][: len(before["images"])] == before["images"]
    assert len(after["images"]) - len(before["images"]) == report.images_added
    cat_ids = {cid for cid, _, _ in after["categories"]}
    added = 0
    for rec in p.images():
        assert rec.path.is_file()
        xyxy, cls, _ = after["boxes"][rec.id]
        old = before["boxes"].get(rec.id, ([], [], []))
        assert xyxy[: len(old[0])] == old[0] and cls[: len(old[1])] == old[1]  # old boxes untouched
        added += len(xyxy) - len(old[0])
        b = np.asarray(xyxy, dtype=float).reshape(-1, 4)
        assert np.isfinite(b).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= rec.width).all() and (b[:, 3] <= rec.height).all()
        assert set(cls) <= cat_ids
    assert added == report.boxes_added
    stored = {Path(r.path).name for r in p.images()}
    assert {Path(f).name for f in after["files"]} <= stored, "stray files under images/"


# ----------------------------------------------------------------- valid inputs


@st.composite
def boxes_for(draw: st.DrawFn, w: int, h: int) -> list[float]:
    """``x, y, w, h`` of a box inside the image, or reaching out of it (to be clipped)."""
    x, y = draw(st.floats(-5, w - 1)), draw(st.floats(-5, h - 1))
    return [x, y, draw(st.floats(0.5, w + 5)), draw(st.floats(0.5, h + 5))]


# names that resolve to a known file, or nearly: each must be found, matched or refused cleanly
NAME_VARIANTS = [".", "/", "sub/../a.png", "./a.png", "A.PNG", "a.png ", "photos/a.png", "sub\\deep.png",
                 "deep.png", "sub/", "\udcff.png", "é.png", "sub//deep.png", "~/a.png"]  # fmt: skip


@st.composite
def coco_docs(draw: st.DrawFn) -> dict[str, Any]:
    pool = st.one_of(st.sampled_from(NAMES[:5]), st.sampled_from(NAMES), st.sampled_from(NAME_VARIANTS))
    names = draw(st.lists(pool, min_size=1, max_size=3, unique=True))
    images = [{"id": i + 1, "file_name": n} for i, n in enumerate(names)]
    for im in images:
        if im["file_name"] in SIZES and draw(st.booleans()):
            im["width"], im["height"] = SIZES[im["file_name"]]
    # names as other tools write them: the project's own, new ones, edge spaces, other case
    second = draw(st.sampled_from(["truck", "truck", "person", "Car", " car", "lorry "]))
    cats = [{"id": 1, "name": "car"}, {"id": 7, "name": second}]
    anns = []
    for k in range(draw(st.integers(0, 5))):
        im = draw(st.sampled_from(images))
        w, h = SIZES.get(im["file_name"], (10, 10))
        anns.append(
            {"id": k + 1, "image_id": im["id"], "category_id": draw(st.sampled_from([1, 7])),
             "bbox": draw(boxes_for(w, h)), "iscrowd": 0}
        )  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}


def _yolo_lines(draw: st.DrawFn, n_classes: int) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        cx, cy = draw(st.floats(0.05, 0.95)), draw(st.floats(0.05, 0.95))
        bw, bh = draw(st.floats(0.01, 0.2)), draw(st.floats(0.01, 0.2))
        lines.append(f"{draw(st.integers(0, n_classes - 1))} {cx!r} {cy!r} {bw!r} {bh!r}")
    return "\n".join(lines) + "\n"


def _voc_xml(draw: st.DrawFn, name: str) -> bytes:
    w, h = SIZES.get(name, (10, 10))
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(w)
    ET.SubElement(size, "height").text = str(h)
    for _ in range(draw(st.integers(0, 3))):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = draw(st.sampled_from(["car", "truck", " person "]))
        bnd = ET.SubElement(obj, "bndbox")
        x1, y1 = draw(st.integers(1, w - 1)), draw(st.integers(1, h - 1))
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, draw(st.integers(x1, w + 3)),
                                                               draw(st.integers(y1, h + 3)))):  # fmt: skip
            ET.SubElement(bnd, tag).text = str(v)
    return ET.tostring(root, encoding="utf-8")


yolo_junk = st.one_of(
    st.lists(
        st.sampled_from(["0", "1", "2", "-1", "0.5", "0.1", "1.5", "nan", "x", "1e400"]), max_size=7
    ).map(" ".join),
    st.text(max_size=12),
)


# ------------------------------------------------------------------------ tests
#


@FUZZ
@given(doc=coco_docs(), data=st.data())
def test_import_coco_all_or_nothing(ws: Workspace, doc: dict[str, Any], data) -> None:
    path = ws.scratch.path("instances.json")
    how = data.draw(st.sampled_from(["keep", "json", "json", "bytes"]))
    if how == "keep":
        path.write_bytes(json.dumps(doc).encode())  # ensure_ascii: a surrogate is written as \\udcff
    elif how == "json":
        path.write_bytes(dump_json(data.draw, data.draw(mutated_json(doc))))
    else:
        path.write_bytes(data.draw(mutated_bytes(json.dumps(doc).encode())))
    run_import(ws, "coco", path, "coco", [path.name], data.draw)


@FUZZ
@given(data=st.data())
def test_import_yolo_all_or_nothing(ws: Workspace, data) -> None:
    root = ws.scratch.path("labels")
    root.mkdir()
    classes = ["car", "person", "truck"][: data.draw(st.integers(1, 3))]
    (root / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    stems = data.draw(
        st.lists(st.sampled_from(["a", "b", "new", "missing", "fake"]), min_size=1, max_size=3, unique=True)
    )
    for stem in stems:
        (root / f"{stem}.txt").write_text(_yolo_lines(data.draw, len(classes)), encoding="utf-8")
    files = sorted(root.glob("*.txt"))
    target = data.draw(st.sampled_from(files))
    how = data.draw(st.sampled_from(["keep", "lines", "lines", "bytes"]))
    if how == "lines":
        target.write_text(
            data.draw(mutated_lines(target.read_text(encoding="utf-8"), yolo_junk)), encoding="utf-8"
        )
    elif how == "bytes":
        target.write_bytes(data.draw(mutated_bytes(target.read_bytes())))
    names = [root.name, *(f.name for f in files), *(f.stem for f in files)]
    run_import(ws, "yolo", root, "yolo", names, data.draw)


@FUZZ
@given(data=st.data())
def test_import_voc_all_or_nothing(ws: Workspace, data) -> None:
    root = ws.scratch.path("voc")
    root.mkdir()
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    for i, name in enumerate(names):
        (root / f"ann{i}.xml").write_bytes(_voc_xml(data.draw, name))
    files = sorted(root.glob("*.xml"))
    target = data.draw(st.sampled_from(files))
    how = data.draw(st.sampled_from(["keep", "tree", "tree", "bytes"]))
    if how == "tree":
        tree = ET.ElementTree(ET.fromstring(target.read_bytes()))
        nodes = list(tree.getroot().iter())
        node = data.draw(st.sampled_from(nodes))
        node.text = data.draw(
            st.sampled_from(["", " ", "0", "-3", "1e400", "nan", "9999", "car", "a.png", "../outside.png"])
        )
        tree.write(target, encoding="utf-8")
    elif how == "bytes":
        target.write_bytes(data.draw(mutated_bytes(target.read_bytes())))
    run_import(ws, "voc", root, "voc", [root.name, *(f.name for f in files)], data.draw)


def test_category_names_with_edge_spaces(tmp_path: Path) -> None:
    """A COCO category ' lorry' becomes 'lorry'; importing the same file again must work."""
    write_png(tmp_path / "a.png", 64, 48)
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 7, "name": " lorry"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with dbn.Project.create(tmp_path / "p", categories=["car"]) as p:
        first = p.import_annotations(tmp_path / "a.json")
        assert first.categories_added == [c.name for c in p.categories[1:]]  # ['lorry'], not [' lorry']
        p.import_annotations(tmp_path / "a.json")  # CategoryError: a category named 'lorry' already exists
        assert p.box_counts()["lorry"] == 2
