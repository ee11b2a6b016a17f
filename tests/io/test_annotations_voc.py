"""Pascal VOC XML: the 1-based convention, exact round trips, rejected files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from deepblock_nb.errors import FormatError
from deepblock_nb.io.annotations import AnnotatedImage, AnnotationSet, read_voc, write_voc

ORIGINAL = """<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <source><database>The VOC2007 Database</database></source>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object>
    <name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
  </object>
  <object>
    <name>pot plant</name><pose>Unspecified</pose><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox>
  </object>
</annotation>
"""


def test_convention_on_an_original_file(tmp_path: Path) -> None:
    (tmp_path / "000005.xml").write_text(ORIGINAL, encoding="utf-8")
    aset = read_voc(tmp_path / "000005.xml")
    (im,) = aset.images
    assert (im.file_name, im.width, im.height) == ("000005.jpg", 500, 375)
    assert aset.categories == ["chair", "pot plant"]
    # pixel columns 0..9 inclusive: xmin=1, xmax=10 in VOC -> x1=0, x2=10 here
    np.testing.assert_array_equal(im.xyxy, [[262, 210, 324, 339], [0, 0, 10, 10]])


def test_convention_on_writing(tmp_path: Path) -> None:
    aset = AnnotationSet(
        ["a"], [AnnotatedImage("x.jpg", 20, 20, np.array([[0, 0, 10, 10], [2.5, 3, 4.75, 5]]), ["a", "a"])]
    )
    write_voc(tmp_path, aset)
    bnd = ET.parse(tmp_path / "x.xml").getroot().findall("object/bndbox")
    assert [[b.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] for b in bnd] == [
        ["1", "1", "10", "10"],
        ["3.5", "4", "4.75", "5"],
    ]


def test_file_round_trip_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    written = {}
    for i in range(3):
        lo = rng.uniform(0.5, 800, (6, 2)) if i else rng.integers(1, 800, (6, 2)).astype(float)
        hi = lo + rng.uniform(0.01, 100, (6, 2))
        vals = np.hstack([lo, hi])[:, [0, 1, 2, 3]]
        objects = "".join(
            f"<object><name>{'ünï cat' if k % 2 else 'dog'}</name><bndbox><xmin>{v[0]!r}</xmin><ymin>{v[1]!r}</ymin>"
            f"<xmax>{v[2]!r}</xmax><ymax>{v[3]!r}</ymax></bndbox></object>"
            for k, v in enumerate(vals.tolist())
        )
        name = f"dir {i}/图 {i}.png"
        (src / f"{i}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>1000</width><height>900</height></size>{objects}</annotation>",
            encoding="utf-8",
        )
        written[name] = vals
    aset = read_voc(src)
    write_voc(tmp_path / "out", aset)
    back = read_voc(tmp_path / "out")
    assert back.categories == aset.categories == ["dog", "ünï cat"]
    for im in back.images:
        bnd = (
            ET.parse(tmp_path / "out" / Path(im.file_name).with_suffix(".xml"))
            .getroot()
            .findall("object/bndbox")
        )
        got = [[float(b.findtext(t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax")] for b in bnd]
        np.testing.assert_array_equal(got, written[im.file_name])  # VOC -> records -> VOC, bit for bit


def test_records_round_trip_keeps_empty_image_and_category(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 500, (10, 2)).astype(float)
    xyxy = np.hstack([xy, xy + rng.integers(1, 50, (10, 2))])
    aset = AnnotationSet(
        ["a b", "人", "unused"],
        [
            AnnotatedImage("one.jpg", 600, 600, xyxy, ["a b", "人"] * 5, scores=rng.uniform(0, 1, 10)),
            AnnotatedImage("empty.jpg", 7, 9, np.zeros((0, 4)), []),
        ],
    )
    write_voc(tmp_path, aset)
    back = read_voc(tmp_path)
    assert back.categories == ["a b", "人", "unused"]
    one, empty = back.image("one.jpg"), back.image("empty.jpg")
    np.testing.assert_array_equal(one.xyxy, xyxy)
    np.testing.assert_array_equal(one.scores, aset.images[0].scores)
    assert (len(empty), empty.width, empty.height) == (0, 7, 9)


def _voc(body: str, size: str = "<size><width>10</width><height>10</height></size>") -> str:
    return f"<annotation><filename>a.jpg</filename>{size}{body}</annotation>"


BOX = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><filename>a.jpg", "not valid XML"),
        ("<data/>", "root element is <data>"),
        (_voc("", size=""), "has no <size>"),
        (_voc("", size="<size><width>10</width></size>"), "<size> has no <height>"),
        (_voc("", size="<size><width>0</width><height>10</height></size>"), "not a positive integer size"),
        ("<annotation><size><width>1</width><height>1</height></size></annotation>", "has no <filename>"),
        (_voc(f"<object>{BOX}</object>"), "object 0 has no <name>"),
        (_voc("<object><name>a</name></object>"), r"object 0 \('a'\) has no <bndbox>"),
        (_voc("<object><name>a</name><bndbox><xmin>1</xmin></bndbox></object>"), "object 0 has no <ymin>"),
        (
            _voc(
                "<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax><ymax>5</ymax></bndbox></object>"
            ),
            "<xmax> 'x' is not a finite number",
        ),
        (
            _voc(
                "<object><name>a</name><bndbox><xmin>6</xmin><ymin>1</ymin><xmax>4</xmax><ymax>5</ymax></bndbox></object>"
            ),
            "empty or inverted",
        ),
        (
            _voc(
                f"<object><name>a</name><score>0.5</score>{BOX}</object><object><name>a</name>{BOX}</object>"
            ),
            "some objects have a <score>",
        ),
    ],
)
def test_bad_voc(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ann 1.xml").write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=message) as info:
        read_voc(tmp_path)
    assert str(info.value).startswith("ann 1.xml: ")


def test_one_pixel_box_is_valid(tmp_path: Path) -> None:
    text = _voc(
        "<object><name>a</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
    )
    (tmp_path / "a.xml").write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(read_voc(tmp_path).images[0].xyxy, [[4, 4, 5, 5]])


def test_duplicates_and_unknown_classes(tmp_path: Path) -> None:
    box = f"<object><name>a</name>{BOX}</object>"
    (tmp_path / "1.xml").write_text(_voc(box), encoding="utf-8")
    with pytest.raises(FormatError, match="unknown class 'a'"):
        read_voc(tmp_path, classes=["b"])
    (tmp_path / "2.xml").write_text(_voc(""), encoding="utf-8")
    with pytest.raises(FormatError, match="2.xml: image 'a.jpg' is also described by 1.xml"):
        read_voc(tmp_path)
    with pytest.raises(FormatError, match="no such file"):
        read_voc(tmp_path / "missing")


def test_write_needs_size(tmp_path: Path) -> None:
    aset = AnnotationSet(["a"], [AnnotatedImage("x.jpg", None, 4, np.zeros((0, 4)), [])])
    with pytest.raises(FormatError, match="no width/height"):
        write_voc(tmp_path / "o", aset)
