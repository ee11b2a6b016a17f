"""COCO detection files (``instances_*.json``) <-> :class:`AnnotationSet`.

Reading keeps each ``bbox`` twice: as ``xyxy`` (``x2 = x + w``) and, unchanged, as
``AnnotatedImage.xywh``, so writing back reproduces every number bit for bit.
``info``, ``licenses`` and the per-image ``license``, ``date_captured``, ``coco_url``
and ``flickr_url`` are kept and written back. ``segmentation`` fields are ignored. Annotations with ``iscrowd: 1`` are skipped and
counted in ``AnnotationSet.warnings`` (they mark regions, not objects to detect).
An ``annotations`` list whose entries all carry ``score`` is read as results
(``AnnotatedImage.scores``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.errors import FormatError

from ._common import (
    atomic_write_text,
    check_set,
    is_number,
    name_problem,
    read_text,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from ._records import AnnotatedImage, AnnotationSet

__all__ = ["COCO_IMAGE_FIELDS", "read_coco", "write_coco"]

COCO_IMAGE_FIELDS = ("license", "date_captured", "coco_url", "flickr_url")
"""Per-image fields of the COCO format, beyond id, file name and size, that are kept."""


def read_coco(path: str | Path) -> AnnotationSet:
    """Read a COCO detection file.

    Boxes are kept as given (not clipped to the image); clipping is the caller's job.

    Raises:
        FormatError: the file is not JSON or not a COCO object; a required key
            (``images``, ``annotations``, ``categories``, ``id``, ``file_name``,
            ``name``, ``bbox``, ``category_id``, ``image_id``) is missing; ids or
            names are duplicated; an annotation refers to an unknown image or
            category; a ``bbox`` is not 4 finite numbers or has ``w <= 0`` or
            ``h <= 0`` or reaches past the largest float64; an image ``width``/``height``
            is not a positive integer; a name is blank, or a file name holds a NUL or a
            lone surrogate; ``iscrowd`` is not 0 or 1; only some annotations carry a
            ``score``.
    """
    path = Path(path)
    data = load_json(path)
    ctx = _Ctx(path)
    if not isinstance(data, dict):
        raise ctx.error(
            f"top level is a {type(data).__name__}, expected a COCO object with 'images', 'annotations', 'categories'"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ctx.error(f"no {key!r} list")
        if not isinstance(data[key], list):
            raise ctx.error(f"{key!r} is a {type(data[key]).__name__}, expected a list")
    categories, cat_by_id = parse_categories(data["categories"], ctx)
    images = parse_images(data["images"], ctx)
    has_score = any(isinstance(a, dict) and "score" in a for a in data["annotations"])
    parse_annotations(data["annotations"], ctx, images, cat_by_id, "annotations", score=has_score)
    aset = ctx.result(categories, cat_by_id, images, has_score)
    for key, kind in (("info", dict), ("licenses", list)):
        value = data.get(key)
        if value is not None and not isinstance(value, kind):
            ctx.warnings.append(
                f"{path.name}: {key!r} is a {type(value).__name__}, not a {kind.__name__}; dropped"
            )
            value = None
        setattr(aset, key, value)
    return aset


def write_coco(
    path: str | Path,
    annotations: AnnotationSet,
    category_ids: Mapping[str, int] | None = None,
    image_ids: Mapping[str, int] | None = None,
) -> None:
    """Write a COCO detection file (atomically).

    Args:
        path: the ``.json`` file to write.
        annotations: the records; boxes with scores get a ``score`` key.
        category_ids: category name -> COCO id. Default: ``annotations.category_ids``
            when it covers every category, else 1..K in category order.
        image_ids: file name -> COCO id. Default: each image's ``source_id`` when all
            are distinct integers, else 1..M in image order.

    Raises:
        FormatError: the records are inconsistent (see :func:`check_set`) or the
            given ids are incomplete or duplicated.
    """
    path = Path(path)
    atomic_write_text(
        path,
        json.dumps(
            coco_dict(path, annotations, category_ids, image_ids), ensure_ascii=False, allow_nan=False
        ),
    )


def coco_dict(
    path: Path,
    aset: AnnotationSet,
    category_ids: Mapping[str, int] | None,
    image_ids: Mapping[str, int] | None,
    *,
    with_annotations: bool = True,
) -> dict[str, Any]:
    """The COCO object for ``aset`` (see :func:`write_coco`)."""
    check_set(aset, path)
    cat_ids = resolve_category_ids(path, aset, category_ids)
    img_ids = resolve_image_ids(path, aset, image_ids)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for im in aset.images:
        entry: dict[str, Any] = {"id": img_ids[im.file_name], "file_name": im.file_name}
        if im.width is not None:
            entry["width"] = int(im.width)
        if im.height is not None:
            entry["height"] = int(im.height)
        entry.update((k, im.extra[k]) for k in COCO_IMAGE_FIELDS if im.extra.get(k) is not None)
        images.append(entry)
        if not with_annotations:
            continue
        xywh = xyxy_to_xywh(im.xyxy, im.xywh).tolist()
        for k, (box, label) in enumerate(zip(xywh, im.category)):
            ann: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": img_ids[im.file_name],
                "category_id": cat_ids[label],
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
            if im.scores is not None:
                ann["score"] = float(im.scores[k])
            if im.sources is not None and im.sources[k] is not None:
                ann["source"] = im.sources[k]
            anns.append(ann)
    categories = [{"id": cat_ids[name], "name": name, "supercategory": ""} for name in aset.categories]
    header = {k: v for k, v in (("info", aset.info), ("licenses", aset.licenses)) if v is not None}
    return {**header, "images": images, "annotations": anns, "categories": categories}


def resolve_category_ids(path: Path, aset: AnnotationSet, given: Mapping[str, int] | None) -> dict[str, int]:
    """Category name -> id: ``given``, else the source's ids, else 1..K."""
    if given is None:
        source = aset.category_ids
        given = source if source and all(c in source for c in aset.categories) else None
    if given is None:
        return {name: i + 1 for i, name in enumerate(aset.categories)}
    out = {name: given.get(name) for name in aset.categories}
    missing = [n for n, v in out.items() if v is None]
    if missing:
        raise FormatError(f"{path.name}: no category id for {missing[0]!r}", path)
    return _unique_ints(path, out, "category")


def resolve_image_ids(path: Path, aset: AnnotationSet, given: Mapping[str, int] | None) -> dict[str, int]:
    """File name -> image id: ``given``, else the source ids when distinct ints, else 1..M."""
    if given is None:
        src = [im.source_id for im in aset.images]
        if all(isinstance(s, int) and not isinstance(s, bool) for s in src) and len(set(src)) == len(src):
            return {im.file_name: int(im.source_id) for im in aset.images}  # type: ignore[arg-type]
        return {im.file_name: i + 1 for i, im in enumerate(aset.images)}
    out = {im.file_name: given.get(im.file_name) for im in aset.images}
    missing = [n for n, v in out.items() if v is None]
    if missing:
        raise FormatError(f"{path.name}: no image id for {missing[0]!r}", path)
    return _unique_ints(path, out, "image")


def _unique_ints(path: Path, ids: Mapping[str, int | None], what: str) -> dict[str, int]:
    seen: dict[int, str] = {}
    for name, value in ids.items():
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise FormatError(f"{path.name}: {what} id {value!r} of {name!r} is not an integer", path)
        if value in seen:
            raise FormatError(f"{path.name}: {what}s {seen[value]!r} and {name!r} share id {value}", path)
        seen[value] = name
    return {k: int(v) for k, v in ids.items()}  # type: ignore[arg-type]


# ---------------------------------------------------------------- parsing helpers


def load_json(path: Path) -> Any:
    """Parse ``path`` as UTF-8 JSON (a byte-order mark is allowed), turning every failure
    into a :class:`FormatError`."""
    text = read_text(path, "a .json file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", path
        ) from None
    except RecursionError:
        raise FormatError(f"{path.name}: JSON nested too deeply to be an annotation file", path) from None


@dataclass
class _Image:
    source_id: int | str
    file_name: str
    width: int | None
    height: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


class _Ctx:
    """Error messages and skipped-record notes for one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.warnings: list[str] = []

    def error(self, message: str) -> FormatError:
        return FormatError(f"{self.path.name}: {message}", self.path)

    def result(
        self, categories: list[str], cat_by_id: dict[int, str], images: dict[Any, _Image], scored: bool
    ) -> AnnotationSet:
        records = []
        for im in images.values():
            xywh = np.asarray(im.boxes, dtype=np.float64).reshape(-1, 4)
            records.append(
                AnnotatedImage(
                    file_name=im.file_name,
                    width=im.width,
                    height=im.height,
                    xyxy=xywh_to_xyxy(xywh),
                    category=im.labels,
                    scores=np.asarray(im.scores, dtype=np.float64) if scored else None,
                    source_id=im.source_id,
                    xywh=xywh,
                    extra=im.extra,
                )
            )
        return AnnotationSet(
            categories=categories,
            images=records,
            path=self.path,
            warnings=self.warnings,
            category_ids={name: cid for cid, name in cat_by_id.items()},
        )


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def parse_categories(items: list[Any], ctx: _Ctx) -> tuple[list[str], dict[int, str]]:
    """``categories`` -> (names in file order, id -> name)."""
    names: list[str] = []
    by_id: dict[int, str] = {}
    for i, cat in enumerate(items):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise ctx.error(f"{where} is not an object")
        for key in ("id", "name"):
            if key not in cat:
                raise ctx.error(f"{where} has no {key!r}")
        cid, name = cat["id"], cat["name"]
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise ctx.error(f"{where} has id {cid!r}, expected an integer")
        if not isinstance(name, str) or not name:
            raise ctx.error(f"{where} has name {name!r}, expected a non-empty string")
        problem = name_problem(name, file=False)
        if problem:
            raise ctx.error(f"{where}: category name {name!r} {problem}")
        if cid in by_id:
            raise ctx.error(f"{where}: category id {cid} is used twice ({by_id[cid]!r} and {name!r})")
        if name in names:
            raise ctx.error(f"{where}: category name {name!r} is used twice")
        by_id[cid] = name
        names.append(name)
    return names, by_id


def parse_images(items: list[Any], ctx: _Ctx) -> dict[Any, _Image]:
    """``images`` -> id -> image, in file order."""
    out: dict[Any, _Image] = {}
    names: set[str] = set()
    for i, img in enumerate(items):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            raise ctx.error(f"{where} is not an object")
        for key in ("id", "file_name"):
            if key not in img:
                raise ctx.error(f"{where} has no {key!r}")
        iid, name = img["id"], img["file_name"]
        if not _is_id(iid):
            raise ctx.error(f"{where} has id {iid!r}, expected an integer or string")
        if not isinstance(name, str) or not name:
            raise ctx.error(f"{where} has file_name {name!r}, expected a non-empty string")
        problem = name_problem(name, file=True)
        if problem:
            raise ctx.error(f"{where}: file_name {name!r} {problem}")
        if iid in out:
            raise ctx.error(f"{where}: image id {iid!r} is used twice")
        if name in names:
            raise ctx.error(f"{where}: file_name {name!r} is listed twice")
        size = [img.get(k) for k in ("width", "height")]
        for key, value in zip(("width", "height"), size):
            if value is not None and not (is_number(value) and float(value).is_integer() and value > 0):
                raise ctx.error(f"{where} ({name!r}) has {key} {value!r}, expected a positive integer")
        names.add(name)
        width, height = (None if v is None else int(v) for v in size)
        extra = {k: img[k] for k in COCO_IMAGE_FIELDS if img.get(k) is not None}
        out[iid] = _Image(iid, name, width, height, extra)
    return out


def parse_annotations(
    items: list[Any],
    ctx: _Ctx,
    images: dict[Any, _Image],
    cat_by_id: dict[int, str],
    key: str,
    *,
    score: bool,
) -> None:
    """Validate each entry of ``items`` and append its box to its image."""
    crowd = 0
    for i, ann in enumerate(items):
        if not isinstance(ann, dict):
            raise ctx.error(f"{key}[{i}] is not an object")
        where = f"{key}[{i}]" + (f" (id {ann['id']!r})" if "id" in ann else "")
        for need in ("image_id", "category_id", "bbox", *(("score",) if score else ())):
            if need not in ann:
                raise ctx.error(f"{where} has no {need!r}")
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (None, 0, 1) or not isinstance(iscrowd, int | float | None):
            raise ctx.error(f"{where} has iscrowd {iscrowd!r}, expected 0 or 1")
        if iscrowd == 1:
            crowd += 1
            continue
        if not _is_id(ann["image_id"]) or ann["image_id"] not in images:
            raise ctx.error(f"{where} refers to unknown image_id {ann['image_id']!r}")
        cid = ann["category_id"]
        label = cat_by_id.get(cid) if isinstance(cid, int) and not isinstance(cid, bool) else None
        if label is None:
            raise ctx.error(f"{where} has unknown category_id {ann['category_id']!r}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            raise ctx.error(f"{where} has bbox {bbox!r}, expected 4 finite numbers [x, y, w, h]")
        for name, value in (("width", bbox[2]), ("height", bbox[3])):
            if value < 0:
                raise ctx.error(f"{where} has negative {name} {value!r}")
            if value == 0:
                raise ctx.error(f"{where} has zero {name} (an empty box)")
        x2, y2 = float(bbox[0]) + float(bbox[2]), float(bbox[1]) + float(bbox[3])
        if not (math.isfinite(x2) and math.isfinite(y2)):
            raise ctx.error(f"{where} has bbox {bbox!r}: x + w or y + h is beyond the largest float64")
        if x2 == bbox[0] or y2 == bbox[1]:
            raise ctx.error(f"{where} has bbox {bbox!r}: the size vanishes when added to x or y in float64")
        image = images[ann["image_id"]]
        if score:
            if not is_number(ann["score"]):
                raise ctx.error(f"{where} has score {ann['score']!r}, expected a finite number")
            image.scores.append(float(ann["score"]))
        image.boxes.append([float(v) for v in bbox])
        image.labels.append(label)
    if crowd:
        ctx.warnings.append(f"{ctx.path.name}: skipped {crowd} crowd annotation(s) (iscrowd=1) in {key!r}")
