"""Pascal VOC XML files <-> :class:`AnnotationSet`.

Convention: Pascal VOC numbers pixels from 1 and its boxes include both edge
pixels; our boxes are 0-based with an exclusive right/bottom edge. Reading gives
``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``; writing gives the inverse.
A box over pixel columns 0..9 is ``xmin=1, xmax=10`` in VOC and ``x1=0, x2=10`` here.
VOC -> records -> VOC is exact for every ``xmin, ymin >= 0.5`` (then ``xmin - 1`` is
exact in float64); integral coordinates round-trip exactly both ways.

Each XML names its image in ``<filename>`` (written with any sub-folders) and its
size in ``<size>``. ``difficult``, ``truncated`` and ``pose`` are ignored on reading;
an optional ``<score>`` per object is read and written for predictions. Since VOC has
no category list, :func:`write_voc` also writes ``classes.txt``, and :func:`read_voc`
uses it (or ``classes=``) to keep categories without boxes and their order.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepblock_nb.errors import FormatError

from ._common import (
    atomic_write_text,
    check_class_names,
    check_set,
    check_xml_text,
    fmt_float,
    name_problem,
    read_bytes,
    relative_output_path,
)
from ._records import AnnotatedImage, AnnotationSet
from .yolo import read_yolo_classes

__all__ = ["read_voc", "write_voc"]


def read_voc(path: str | Path, classes: Sequence[str] | str | Path | None = None) -> AnnotationSet:
    """Read one VOC ``.xml`` file or a folder of them (sub-folders included).

    Args:
        path: an ``.xml`` file or a folder.
        classes: category names (or a ``classes.txt``) fixing the order and keeping
            categories without boxes; a box of another name is then an error.
            ``None``: ``classes.txt`` in the folder if present, else names in order
            of first appearance.

    Raises:
        FormatError: XML that does not parse or whose root is not ``<annotation>``;
            a missing ``filename``, ``size``, ``width``, ``height``, ``name``,
            ``bndbox`` or coordinate; a size that is not a positive integer; a
            coordinate that is not a finite number; an empty or inverted box; an
            unknown class; a file name used by two XML files.
    """
    path = Path(path)
    if path.is_dir():
        root = path
        files = sorted(p for p in path.rglob("*.xml") if p.is_file())
        if classes is None and (path / "classes.txt").is_file():
            classes = path / "classes.txt"
    elif path.is_file():
        root, files = path.parent, [path]
    else:
        raise FormatError(f"{path}: no such file or folder", path)
    if isinstance(classes, str | Path):
        classes = read_yolo_classes(classes)
    fixed = classes is not None
    categories: dict[str, None] = dict.fromkeys(classes or ())
    images: list[AnnotatedImage] = []
    owner: dict[str, str] = {}
    for file in files:
        where = file.relative_to(root).as_posix()
        record = _read_one(file, where)
        if record.file_name in owner:
            raise FormatError(
                f"{where}: image {record.file_name!r} is also described by {owner[record.file_name]}", file
            )
        owner[record.file_name] = where
        for name in record.category:
            if name not in categories:
                if fixed:
                    raise FormatError(f"{where}: object of unknown class {name!r}", file)
                categories[name] = None
        images.append(record)
    return AnnotationSet(categories=list(categories), images=images, path=path)


def write_voc(out_dir: str | Path, annotations: AnnotationSet) -> None:
    """Write one VOC ``.xml`` per image, plus ``classes.txt`` (each file atomically).

    Each file is ``out_dir / file_name`` with ``.xml`` for its suffix (sub-folders
    kept). Every image needs ``width`` and ``height``.

    Raises:
        FormatError: inconsistent records, an image without size, or two images
            that share an XML file.
    """
    out = Path(out_dir)
    check_set(annotations, out, need_size=True)
    check_class_names(annotations, out)
    for name in annotations.categories:
        check_xml_text(name, "category", out)
    targets: dict[Path, str] = {}
    for im in annotations.images:
        check_xml_text(im.file_name, "image name", out)
        target = relative_output_path(im.file_name, ".xml", out)
        if target in targets:
            raise FormatError(f"{out}: {im.file_name!r} and {targets[target]!r} need the same XML file", out)
        targets[target] = im.file_name
    for im, target in zip(annotations.images, targets):
        atomic_write_text(target, _to_xml(im))
    atomic_write_text(out / "classes.txt", "".join(f"{name}\n" for name in annotations.categories))


def _to_xml(im: AnnotatedImage) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = im.file_name
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(im.width)
    ET.SubElement(size, "height").text = str(im.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    voc = np.concatenate([im.xyxy[:, :2] + 1, im.xyxy[:, 2:]], axis=1)  # [N,4] 1-based inclusive
    for k, (label, box) in enumerate(zip(im.category, voc.tolist())):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        if im.scores is not None:
            ET.SubElement(obj, "score").text = fmt_float(im.scores[k])
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, tag).text = fmt_float(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _read_one(file: Path, where: str) -> AnnotatedImage:
    data = read_bytes(file, "a Pascal VOC .xml file")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise FormatError(f"{where}: not valid XML ({exc})", file) from None
    except LookupError as exc:  # <?xml encoding="..."?> names an encoding Python lacks
        raise FormatError(f"{where}: not readable XML ({exc})", file) from None
    if root.tag != "annotation":
        raise FormatError(f"{where}: root element is <{root.tag}>, expected <annotation>", file)

    def text(parent: ET.Element, tag: str, at: str) -> str:
        node = parent.find(tag)
        if node is None or node.text is None or not node.text.strip():
            raise FormatError(f"{where}: {at}has no <{tag}>", file)
        return node.text.strip()

    def number(parent: ET.Element, tag: str, at: str) -> float:
        raw = text(parent, tag, at)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise FormatError(f"{where}: {at}<{tag}> {raw!r} is not a finite number", file)
        return value

    file_name = text(root, "filename", "")
    problem = name_problem(file_name, file=True)
    if problem:
        raise FormatError(f"{where}: <filename> {file_name!r} {problem}", file)
    size = root.find("size")
    if size is None:
        raise FormatError(f"{where}: has no <size>", file)
    wh = [number(size, tag, "<size> ") for tag in ("width", "height")]
    if not all(v.is_integer() and v > 0 for v in wh):
        raise FormatError(f"{where}: <size> {wh[0]:g} x {wh[1]:g} is not a positive integer size", file)
    boxes: list[list[float]] = []
    labels: list[str] = []
    scores: list[float] = []
    objects = root.findall("object")
    for i, obj in enumerate(objects):
        at = f"object {i} "
        name = text(obj, "name", at)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise FormatError(f"{where}: {at}({name!r}) has no <bndbox>", file)
        xmin, ymin, xmax, ymax = (number(bnd, t, at) for t in ("xmin", "ymin", "xmax", "ymax"))
        box = [xmin - 1, ymin - 1, xmax, ymax]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise FormatError(
                f"{where}: {at}({name!r}) is empty or inverted: xmin {xmin:g} xmax {xmax:g} ymin {ymin:g} ymax {ymax:g}",
                file,
            )
        if obj.find("score") is not None:
            scores.append(number(obj, "score", at))
        boxes.append(box)
        labels.append(name)
    if scores and len(scores) != len(objects):
        raise FormatError(f"{where}: some objects have a <score> and others do not", file)
    return AnnotatedImage(
        file_name=file_name,
        width=int(wh[0]),
        height=int(wh[1]),
        xyxy=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        category=labels,
        scores=np.asarray(scores, dtype=np.float64) if scores else None,
    )
