"""Property-based fuzzing of every annotation reader over damaged files.

Each example starts from a valid file (written by our writers or by hand) and
damages it: bytes truncated, flipped, inserted or deleted; JSON values replaced by
ones of the wrong type (text for numbers, null, nested lists, negative, NaN or huge
numbers), keys deleted, entries duplicated; random XML trees; random YOLO and CSV
lines; empty files, folders instead of files, non-UTF-8 text. The property: every
input ends in a clean read or a ``DeepBlockError`` naming the file, never in any
other exception; and what a clean read returns is consistent (finite, non-inverted
boxes of listed categories) and can be written back and read again unchanged.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from deepblock_nb.errors import ArgumentTypeError, DeepBlockError, FormatError
from deepblock_nb.io.annotations import (
    AnnotatedImage,
    AnnotationSet,
    read_coco,
    read_coco_results,
    read_csv,
    read_voc,
    read_yolo,
    write_coco,
    write_csv,
    write_voc,
    write_yolo,
)

from ._fuzz import FUZZ, Scratch, check_outcome, dump_json, mutated_bytes, mutated_json, mutated_lines


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("fuzz_annotations"))


def assert_consistent(aset: AnnotationSet, *, scored: bool | None = None) -> None:
    """What every reader promises about a set it returns."""
    assert len(set(aset.categories)) == len(aset.categories)
    assert all(isinstance(c, str) and c for c in aset.categories)
    names = [im.file_name for im in aset.images]
    assert len(set(names)) == len(names)
    for im in aset.images:
        assert isinstance(im.file_name, str) and im.file_name
        for v in (im.width, im.height):
            assert v is None or (isinstance(v, int) and v > 0)
        assert im.xyxy.shape == (len(im), 4) and im.xyxy.dtype == np.float64
        assert np.isfinite(im.xyxy).all(), im.xyxy
        assert (im.xyxy[:, 2] > im.xyxy[:, 0]).all() and (im.xyxy[:, 3] > im.xyxy[:, 1]).all()
        assert all(c in aset.categories for c in im.category)
        if im.scores is not None:
            assert im.scores.shape == (len(im),) and np.isfinite(im.scores).all()
        if scored:
            assert im.scores is not None


def same_boxes(a: AnnotationSet, b: AnnotationSet, exact: bool = True) -> None:
    """Every image of ``a`` is in ``b`` with the same boxes (bit for bit if ``exact``) and labels."""
    by_name = {im.file_name: im for im in b.images}
    for im in a.images:
        other = by_name[im.file_name]
        if exact:
            np.testing.assert_array_equal(im.xyxy, other.xyxy)
        else:  # YOLO stores boxes normalised by the image size: x / W * W may differ in the last bit
            np.testing.assert_allclose(im.xyxy, other.xyxy, rtol=1e-12, atol=1e-9)
        assert im.category == other.category


# ------------------------------------------------------------------------- COCO


@st.composite
def coco_docs(draw: st.DrawFn, scored: bool = False) -> dict[str, Any]:
    """A valid COCO detection object: a few images, categories and boxes inside them."""
    n_img, n_cat = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    images = []
    for i in range(n_img):
        entry: dict[str, Any] = {"id": i + 1, "file_name": f"sub/img {i}.png"}
        if draw(st.booleans()):
            entry.update(width=draw(st.integers(1, 500)), height=draw(st.integers(1, 500)))
        images.append(entry)
    cats = [{"id": 10 + k, "name": f"cat {k}", "supercategory": ""} for k in range(n_cat)]
    anns = []
    if images and cats:
        for k in range(draw(st.integers(0, 6))):
            img = draw(st.sampled_from(images))
            w, h = img.get("width", 500), img.get("height", 500)
            x, y = draw(st.floats(0, w - 0.5)), draw(st.floats(0, h - 0.5))
            bw, bh = draw(st.floats(0.25, max(0.25, w - x))), draw(st.floats(0.25, max(0.25, h - y)))
            ann: dict[str, Any] = {
                "id": k + 1,
                "image_id": img["id"],
                "category_id": draw(st.sampled_from(cats))["id"],
                "bbox": [x, y, bw, bh],
                "area": bw * bh,
                "iscrowd": 0,
            }
            if scored:
                ann["score"] = draw(st.floats(0, 1))
            anns.append(ann)
    return {"images": images, "annotations": anns, "categories": cats}


@st.composite
def damaged_json_file(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> bytes:
    doc = draw(docs)
    how = draw(st.sampled_from(["json", "json", "json", "bytes", "raw"]))
    if how == "json":
        return dump_json(draw, draw(mutated_json(doc)))
    if how == "bytes":
        return draw(mutated_bytes(dump_json(draw, doc)))
    return draw(
        st.sampled_from(
            [b"", b" ", b"\xff\xfe{}", b"[" * 3000 + b"]" * 3000, b'{"images": ' * 5000, b"null", b"NaN"]
        )
    )


def write_case(scratch: Scratch, name: str, data: bytes | None) -> Path:
    """``data`` written to a fresh file; ``None`` makes a folder of that name instead."""
    path = scratch.path(name)
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(damaged_json_file(coco_docs()), st.none()))
@example(data=b'{"images": [], "annotations": [], "categories": []}')
def test_read_coco_never_crashes(scratch: Scratch, data: bytes | None) -> None:
    path = write_case(scratch, "instances.json", data)
    aset, _ = check_outcome(lambda: read_coco(path), [path.name])
    if aset is not None:
        assert_consistent(aset)
        back = path.with_name("back.json")
        write_coco(back, aset)
        again = read_coco(back)
        assert again.categories == aset.categories
        same_boxes(aset, again)


@FUZZ
@given(
    target=st.sampled_from(["results", "reference"]),
    ref=coco_docs(),
    data=st.data(),
)
def test_read_coco_results_never_crashes(scratch: Scratch, target: str, ref: dict[str, Any], data) -> None:
    cats, images = ref["categories"], ref["images"]
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": data.draw(st.floats(0, 1)),
        }
        for a in ref["annotations"]
    ]
    skeleton = {"images": images, "annotations": [], "categories": cats}
    res_bytes, ref_bytes = dump_json(data.draw, results), dump_json(data.draw, skeleton)
    if target == "results":
        res_bytes = data.draw(damaged_json_file(st.just(results)))
    else:
        ref_bytes = data.draw(damaged_json_file(st.just(skeleton)))
    res_path = write_case(scratch, "results.json", res_bytes)
    ref_path = res_path.with_name("reference.json")
    ref_path.write_bytes(ref_bytes)
    aset, _ = check_outcome(lambda: read_coco_results(res_path, ref_path), [res_path.name, ref_path.name])
    if aset is not None:
        assert_consistent(aset, scored=True)


# -------------------------------------------------------------------------- CSV


@st.composite
def annotation_sets(
    draw: st.DrawFn,
    scored: bool | None = None,
    sized: bool = True,
    min_images: int = 0,
    names: st.SearchStrategy[str] | None = None,
) -> AnnotationSet:
    """A small valid set: unicode names, boxes inside their images, maybe scores."""
    cats = draw(
        st.lists(
            st.sampled_from(["car", "person", "vélo rouge", "人"]) if names is None else names,
            unique=True,
            max_size=3,
        )
    )
    with_scores = draw(st.booleans()) if scored is None else scored
    images = []
    files = draw(
        st.lists(
            st.just("") if names is None else names, min_size=3, max_size=3, unique=names is not None
        )
    )  # fmt: skip
    for i in range(draw(st.integers(min_images, 3))):
        w, h = draw(st.integers(2, 300)), draw(st.integers(2, 300))
        n = draw(st.integers(0, 4)) if cats else 0
        boxes, labels = [], []
        for _ in range(n):
            x1, y1 = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
            boxes.append([x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))])
            labels.append(draw(st.sampled_from(cats)))
        scores = np.array([draw(st.floats(0, 1)) for _ in range(n)]) if with_scores else None
        images.append(
            AnnotatedImage(
                files[i] or f"dir/im {i}.png", w if sized else None, h if sized else None,
                np.asarray(boxes, float).reshape(-1, 4), labels, scores,
            )
        )  # fmt: skip
    return AnnotationSet(categories=cats, images=images)


csv_junk = st.one_of(
    st.lists(
        st.sampled_from(["a.png", "car", "1", "2.5", "-3", "nan", "inf", "1e400", "", '"', "x,y", "0"]),
        max_size=9,
    ).map(",".join),
    st.text(max_size=30),
    st.just("a" * 140_000 + ",car,1,1,2,2,"),
)


@FUZZ
@given(aset=annotation_sets(sized=False), data=st.data())
def test_read_csv_never_crashes(scratch: Scratch, aset: AnnotationSet, data) -> None:
    path = scratch.path("boxes.csv")
    write_csv(path, aset)
    how = data.draw(st.sampled_from(["lines", "lines", "bytes", "bytes", "folder", "keep"]))
    if how == "lines":
        path.write_text(
            data.draw(mutated_lines(path.read_text(encoding="utf-8"), csv_junk)), encoding="utf-8"
        )
    elif how == "bytes":
        path.write_bytes(data.draw(mutated_bytes(path.read_bytes())))
    elif how == "folder":
        path.unlink()
        path.mkdir()
    out, _ = check_outcome(lambda: read_csv(path), [path.name])
    if out is not None:
        assert_consistent(out)
        if how == "keep":
            assert out.num_boxes == aset.num_boxes


# ------------------------------------------------------------------------- YOLO

yolo_junk = st.one_of(
    st.lists(
        st.sampled_from(
            ["0", "1", "2", "-1", "0.5", "0.25", "1.5", "nan", "inf", "x", "1e400", "0x1", "1_0"]
        ),
        max_size=7,
    ).map(" ".join),
    st.text(max_size=20),
)


def _yaml_text(draw: st.DrawFn, names: list[str]) -> str:
    doc: Any = (
        {"names": names} if draw(st.booleans()) else {"names": dict(enumerate(names)), "nc": len(names)}
    )
    doc = draw(mutated_json(doc)) if draw(st.booleans()) else doc
    if isinstance(doc, dict) and "names" in doc and isinstance(doc["names"], dict) and draw(st.booleans()):
        doc["names"] = {(int(k) if str(k).isdigit() else k): v for k, v in doc["names"].items()}
        if draw(st.booleans()):
            doc["names"]["x"] = "mixed keys"
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(aset=annotation_sets(min_images=1), data=st.data())
def test_read_yolo_never_crashes(scratch: Scratch, aset: AnnotationSet, data) -> None:
    root = scratch.path("labels")
    write_yolo(root, aset)
    sizes: Any = {im.file_name: (im.width, im.height) for im in aset.images}
    files = sorted(root.rglob("*.txt"))
    target = data.draw(st.sampled_from(["label", "label", "classes", "yaml", "sizes", "layout", "keep"]))
    if target == "label" and files:
        f = data.draw(st.sampled_from(files))
        if data.draw(st.booleans()):
            f.write_text(data.draw(mutated_lines(f.read_text(encoding="utf-8"), yolo_junk)), encoding="utf-8")
        else:
            f.write_bytes(data.draw(mutated_bytes(f.read_bytes())))
    elif target == "classes":
        f = root / "classes.txt"
        f.write_bytes(data.draw(mutated_bytes(f.read_bytes())))
    elif target == "yaml":
        (root / "classes.txt").unlink()
        (root / "data.yaml").write_text(_yaml_text(data.draw, list(aset.categories)), encoding="utf-8")
    elif target == "sizes" and sizes:
        key = data.draw(st.sampled_from(sorted(sizes)))
        sizes[key] = data.draw(
            st.one_of(
                st.tuples(st.integers(-5, 10**6), st.integers(-5, 10**6)),
                st.sampled_from(
                    [(10**400, 5), (5.5, 5), (float("nan"), 5), "ab", None, (1, 2, 3), {1: 2, 3: 4}]
                ),
                st.just((True, 5)),
            )
        )
        if data.draw(st.booleans()):
            table = dict(sizes)
            sizes = lambda stem: next((v for k, v in table.items() if k.rsplit(".", 1)[0] == stem), None)  # noqa: E731
    elif target == "layout":
        what = data.draw(
            st.sampled_from(["dir.txt", "classes-dir", "empty-classes", "no-classes", "root-file"])
        )
        if what == "dir.txt":
            (root / "folder.txt").mkdir()
        elif what == "classes-dir":
            (root / "classes.txt").unlink()
            (root / "classes.txt").mkdir()
        elif what == "empty-classes":
            (root / "classes.txt").write_bytes(b"")
        elif what == "no-classes":
            (root / "classes.txt").unlink()
        else:
            root = root / "classes.txt"
    names = [root.name, "classes.txt", "data.yaml", *(f.name for f in files), *(f.stem for f in files)]
    out, _ = check_outcome(lambda: read_yolo(root, image_sizes=sizes), names)
    if out is not None:
        assert_consistent(out)
        if target == "keep":
            assert out.num_boxes == aset.num_boxes


# -------------------------------------------------------------------------- VOC

VOC_TAGS = ["annotation", "filename", "size", "width", "height", "depth", "object", "name", "bndbox",
            "xmin", "ymin", "xmax", "ymax", "score", "difficult"]  # fmt: skip
voc_text = st.one_of(
    st.none(),
    st.sampled_from(
        ["1", "10", "0", "-1", "2.5", "nan", "inf", "1e400", "1e300", " ", "a.png", "car", "../x.png"]
    ),
    st.text(max_size=8),
)
xml_trees = st.recursive(
    st.builds(lambda tag, text: (tag, text, []), st.sampled_from(VOC_TAGS), voc_text),
    lambda children: st.builds(
        lambda tag, text, kids: (tag, text, kids),
        st.sampled_from(VOC_TAGS),
        voc_text,
        st.lists(children, max_size=4),
    ),
    max_leaves=20,
)


def _build(node: tuple[str, str | None, list[Any]]) -> ET.Element:
    tag, text, kids = node
    el = ET.Element(tag)
    el.text = text
    el.extend(_build(k) for k in kids)
    return el


def _mutate_tree(draw: st.DrawFn, root: ET.Element) -> None:
    for _ in range(draw(st.integers(1, 3))):
        nodes = list(root.iter())
        node = draw(st.sampled_from(nodes))
        op = draw(st.sampled_from(["text", "text", "tag", "remove", "dup", "graft"]))
        parent = next((p for p in nodes if node in list(p)), None)
        if op == "text":
            node.text = draw(voc_text)
        elif op == "tag":
            node.tag = draw(st.sampled_from(VOC_TAGS))
        elif op == "remove" and parent is not None:
            parent.remove(node)
        elif op == "dup" and parent is not None:
            parent.append(copy.deepcopy(node))
        elif op == "graft":
            node.append(_build(draw(xml_trees)))


@FUZZ
@given(aset=annotation_sets(), data=st.data())
def test_read_voc_never_crashes(scratch: Scratch, aset: AnnotationSet, data) -> None:
    root = scratch.path("voc")
    write_voc(root, aset)
    files = sorted(root.rglob("*.xml"))
    how = data.draw(st.sampled_from(["tree", "tree", "random", "bytes", "classes", "layout", "keep"]))
    target = data.draw(st.sampled_from(files)) if files else root / "new.xml"
    if how == "tree" and files:
        tree = ET.parse(target)
        _mutate_tree(data.draw, tree.getroot())
        tree.write(target, encoding="utf-8")
    elif how == "random":
        target.write_bytes(ET.tostring(_build(data.draw(xml_trees)), encoding="utf-8"))
    elif how == "bytes" and files:
        target.write_bytes(data.draw(mutated_bytes(target.read_bytes())))
    elif how == "classes":
        (root / "classes.txt").write_bytes(data.draw(mutated_bytes((root / "classes.txt").read_bytes())))
    elif how == "layout":
        what = data.draw(st.sampled_from(["dir.xml", "empty", "encoding", "one-file"]))
        if what == "dir.xml":
            (root / "folder.xml").mkdir()
        elif what == "empty":
            target.write_bytes(b"")
        elif what == "encoding":
            target.write_bytes(b'<?xml version="1.0" encoding="bogus"?><annotation/>')
        elif files:
            root = target
    names = [root.name, "classes.txt", target.name, *(f.name for f in files)]
    out, _ = check_outcome(lambda: read_voc(root), names)
    if out is not None:
        assert_consistent(out)
        if how == "keep":
            assert out.num_boxes == aset.num_boxes
            same_boxes(aset, out)


# --------------------------------------------------------------------- writers

# names as a user or a file system gives them: control characters, line breaks,
# edge spaces, lone surrogates (how Python decodes a file name that is not UTF-8)
odd_names = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=8),
    st.sampled_from(["a\x1fb", "line\nbreak", " edge ", "\udcff.png", "a/../b.png", "dir/x.png", "x\\y.png"]),
)


@FUZZ
@given(aset=annotation_sets(names=odd_names), fmt=st.sampled_from(["coco", "csv", "voc", "yolo"]))
def test_writers_refuse_or_round_trip(scratch: Scratch, aset: AnnotationSet, fmt: str) -> None:
    """A writer refuses (DeepBlockError) what its reader would not read back, else it round-trips."""
    target = scratch.path({"coco": "out.json", "csv": "out.csv", "voc": "voc", "yolo": "yolo"}[fmt])
    write = {"coco": write_coco, "csv": write_csv, "voc": write_voc, "yolo": write_yolo}[fmt]
    written, _ = check_outcome(lambda: write(target, aset) or True, [target.name, *aset.categories])
    if not written:
        return
    sizes = {im.file_name: (im.width, im.height) for im in aset.images}
    read = {
        "coco": lambda: read_coco(target),
        "csv": lambda: read_csv(target),
        "voc": lambda: read_voc(target),
        "yolo": lambda: read_yolo(target, image_sizes=sizes),
    }[fmt]
    back = read()
    assert_consistent(back)
    if fmt == "csv":  # a CSV has rows for boxes only: categories in first-seen order
        assert back.categories == list(dict.fromkeys(c for im in aset.images for c in im.category))
    else:
        assert back.categories == aset.categories
    with_boxes = [im for im in aset.images if len(im)] if fmt == "csv" else aset.images
    assert sorted(im.file_name for im in back.images) == sorted(im.file_name for im in with_boxes)
    same_boxes(AnnotationSet(aset.categories, with_boxes), back, exact=fmt != "yolo")


# --------------------------------------------------------------------- paths


@pytest.mark.parametrize("kind", ["missing", "folder", "under-a-file", "nul", "empty"])
@pytest.mark.parametrize("reader", ["coco", "results", "csv", "yolo", "voc"])
def test_odd_paths(tmp_path: Path, reader: str, kind: str) -> None:
    """Every reader turns a path that is not a readable file into a DeepBlockError."""
    base = tmp_path / "ann.json"
    if kind == "missing":
        path = base
    elif kind == "folder":
        base.mkdir()
        path = base
    elif kind == "under-a-file":
        base.write_text("{}")
        path = base / "inner.json"
    elif kind == "nul":
        path = tmp_path / "a\x00b.json"
    else:
        base.write_bytes(b"")
        path = base
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"images": [], "categories": []}))
    run = {
        "coco": lambda: read_coco(path),
        "results": lambda: read_coco_results(path, ref),
        "csv": lambda: read_csv(path),
        "yolo": lambda: read_yolo(path, classes=["a"]),
        "voc": lambda: read_voc(path),
    }[reader]
    try:
        run()
    except DeepBlockError as exc:
        assert path.name.split("\x00")[0] in str(exc) or "ann" in str(exc)
    if reader == "results":  # the reference path too
        with pytest.raises(DeepBlockError):
            read_coco_results(ref, path)


# ----------------------------------------------- inputs the fuzzing found, pinned

_COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
    "categories": [{"id": 1, "name": "car"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
}


def _coco_with(where: tuple[Any, ...], value: Any) -> bytes:
    doc = json.loads(json.dumps(_COCO))
    target = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_coco_with(("annotations", 0, "bbox", 0), 10**400), "bbox"),  # was OverflowError
        (_coco_with(("images", 0, "width"), 10**400), "width"),  # was OverflowError
        (_coco_with(("annotations", 0, "bbox"), [1e308, 1, 1e308, 2]), "largest float64"),  # x + w = inf
        (_coco_with(("annotations", 0, "iscrowd"), [1]), "iscrowd"),  # was read as not crowd
        (_coco_with(("images", 0, "file_name"), "a\x00.png"), "NUL"),  # was ValueError in the project
        (_coco_with(("images", 0, "file_name"), "\udcff.png"), "surrogate"),  # was UnicodeEncodeError
        (_coco_with(("categories", 0, "name"), " "), "empty"),  # was CategoryError without the file
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),  # was RecursionError
    ],
)
def test_coco_found_by_fuzzing(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "instances.json"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=match) as info:
        read_coco(path)
    assert "instances.json" in str(info.value)


def test_coco_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_COCO).encode())
    assert read_coco(path).num_boxes == 1


def test_csv_found_by_fuzzing(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("file_name,category,x1,y1,x2,y2,score\n" + "a" * 200_000 + ",c,1,1,2,2,\n")
    with pytest.raises(FormatError, match=r"long\.csv line 2: not valid CSV"):  # was _csv.Error
        read_csv(path)
    with pytest.raises(FormatError, match="is a folder"):  # was IsADirectoryError
        read_csv(tmp_path)
    # a lone carriage return in a name: csv.writer left it unquoted, which no reader accepts
    aset = AnnotationSet(
        ["c\rar"], [AnnotatedImage("a\rb.png", None, None, np.array([[0, 0, 1, 1.5]]), ["c\rar"])]
    )
    write_csv(tmp_path / "cr.csv", aset)
    back = read_csv(tmp_path / "cr.csv")
    assert back.categories == ["c\rar"] and back.images[0].file_name == "a\rb.png"


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("names: {0: a, x: b}\n", "keys must be the integers"),  # was TypeError from sorted()
        ("names: " + "[" * 3000 + "]" * 3000 + "\n", "YAML"),  # was RecursionError
        ("names: [2001-02-30]\n", "YAML"),  # a date that does not exist: was ValueError
    ],
)
def test_yolo_yaml_found_by_fuzzing(tmp_path: Path, yaml_text: str, match: str) -> None:
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(FormatError, match=match) as info:
        read_yolo(tmp_path, image_sizes={"a.png": (10, 10)})
    assert "data.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("sizes", "classes", "error"),
    [
        ({"a.png": (10**400, 5)}, ["a"], FormatError),  # was OverflowError
        ({"a.png": {1: 2, 3: 4}}, ["a"], FormatError),  # a dict was unpacked into its keys
        ({"a.png": (True, 5)}, ["a"], FormatError),
        ({1: (10, 10)}, ["a"], ArgumentTypeError),  # was AttributeError
        ({"a.png": (10, 10)}, [["a"]], FormatError),  # was TypeError: unhashable list
    ],
)
def test_yolo_arguments_found_by_fuzzing(tmp_path: Path, sizes: Any, classes: Any, error: type) -> None:
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(error):
        read_yolo(tmp_path, classes=classes, image_sizes=sizes)


def test_voc_found_by_fuzzing(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(b'<?xml version="1.0" encoding="bogus"?><annotation/>')
    with pytest.raises(FormatError, match=r"a\.xml: not readable XML"):  # was LookupError
        read_voc(tmp_path)
    (tmp_path / "a.xml").write_text("<annotation><filename> </filename></annotation>")
    with pytest.raises(FormatError, match="filename"):
        read_voc(tmp_path)


@pytest.mark.parametrize(
    ("write", "aset", "match"),
    [
        (write_voc, AnnotationSet([], [AnnotatedImage("a\x1fb.png", 5, 5, np.zeros((0, 4)), [])]), "XML"),
        (write_voc, AnnotationSet([], [AnnotatedImage(" a.png", 5, 5, np.zeros((0, 4)), [])]), "XML"),
        (write_yolo, AnnotationSet(["a\x1cb"], []), "classes.txt"),  # splitlines() breaks at \x1c
        (
            write_yolo,
            AnnotationSet([], [AnnotatedImage("\ud800.png", 5, 5, np.zeros((0, 4)), [])]),
            "Unicode",
        ),
        (write_coco, AnnotationSet(["\udcff"], []), "Unicode"),  # was UnicodeEncodeError
    ],
)
def test_writers_found_by_fuzzing(tmp_path: Path, write: Any, aset: AnnotationSet, match: str) -> None:
    """Each wrote a file its own reader refuses, or crashed with a non-DeepBlockError."""
    with pytest.raises(FormatError, match=match):
        write(tmp_path / "out", aset)
