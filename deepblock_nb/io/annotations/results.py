"""Prediction files: COCO results JSON and CSV.

A COCO results file is the list that ``pycocotools.COCO.loadRes`` reads:
``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``. It names
images and categories by id only, so reading it needs a *reference*: the COCO
dataset file the ids come from, a sidecar written by :func:`write_coco_results`
(``reference_path=``: a COCO file with ``images`` and ``categories`` and no
annotations, also a valid ground-truth skeleton for pycocotools), or an
:class:`AnnotationSet` whose ids are resolved the way :func:`write_coco` assigns them.
A full COCO file whose annotations carry ``score`` is read by ``read_coco`` directly.

The CSV has one row per box: ``file_name, category, x1, y1, x2, y2, score`` (xyxy
pixels; ``score`` empty for ground truth), floats written so they read back exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.errors import FormatError

from ._common import atomic_write_text, check_set, fmt_float, name_problem, read_text, xyxy_to_xywh
from ._records import AnnotatedImage, AnnotationSet
from .coco import (
    _Ctx,
    _Image,
    coco_dict,
    load_json,
    parse_annotations,
    parse_categories,
    parse_images,
    resolve_category_ids,
    resolve_image_ids,
)

__all__ = ["CSV_COLUMNS", "read_coco_results", "read_csv", "write_coco_results", "write_csv"]

CSV_COLUMNS = ("file_name", "category", "x1", "y1", "x2", "y2", "score")


def write_coco_results(
    path: str | Path,
    results: AnnotationSet,
    *,
    reference_path: str | Path | None = None,
    category_ids: Mapping[str, int] | None = None,
    image_ids: Mapping[str, int] | None = None,
) -> None:
    """Write a COCO results list (atomically), and optionally its reference file.

    Args:
        path: the results ``.json``.
        results: records whose boxes all have ``scores``.
        reference_path: where to write the images and categories that the ids point
            to (a COCO file with an empty ``annotations`` list); ``None`` writes none.
        category_ids, image_ids: as for :func:`write_coco`.

    Raises:
        FormatError: boxes without scores, or inconsistent records.
    """
    path = Path(path)
    check_set(results, path)
    for im in results.images:
        if len(im) and im.scores is None:
            raise FormatError(f"{path.name}: image {im.file_name!r} has boxes without scores", path)
    cat_ids = resolve_category_ids(path, results, category_ids)
    img_ids = resolve_image_ids(path, results, image_ids)
    rows: list[dict[str, Any]] = []
    for im in results.images:
        xywh = xyxy_to_xywh(im.xyxy, im.xywh).tolist()
        scores = [] if im.scores is None else im.scores.tolist()
        for box, label, score in zip(xywh, im.category, scores):
            rows.append(
                {
                    "image_id": img_ids[im.file_name],
                    "category_id": cat_ids[label],
                    "bbox": box,
                    "score": score,
                }
            )
    if reference_path is not None:
        ref = Path(reference_path)
        skeleton = coco_dict(ref, results, cat_ids, img_ids, with_annotations=False)
        atomic_write_text(ref, json.dumps(skeleton, ensure_ascii=False, allow_nan=False))
    atomic_write_text(path, json.dumps(rows, ensure_ascii=False, allow_nan=False))


def read_coco_results(path: str | Path, reference: str | Path | AnnotationSet) -> AnnotationSet:
    """Read a COCO results list, naming images and categories through ``reference``.

    Returns every reference image (those without results have no boxes) and every
    reference category; ``scores`` is set on each image.

    Raises:
        FormatError: not a JSON list; an entry lacks ``image_id``, ``category_id``,
            ``bbox`` or ``score``; an unknown id; a bad ``bbox`` or ``score``; or a
            reference file that is not a COCO file.
    """
    path = Path(path)
    ctx = _Ctx(path)
    if isinstance(reference, AnnotationSet):
        categories = list(reference.categories)
        cat_by_id = {cid: name for name, cid in resolve_category_ids(path, reference, None).items()}
        img_ids = resolve_image_ids(path, reference, None)
        images = {
            img_ids[im.file_name]: _Image(img_ids[im.file_name], im.file_name, im.width, im.height)
            for im in reference.images
        }
    else:
        categories, cat_by_id, images = _read_reference(Path(reference))
    data = load_json(path)
    if not isinstance(data, list):
        raise ctx.error(f"top level is a {type(data).__name__}, expected a list of results")
    parse_annotations(data, ctx, images, cat_by_id, "results", score=True)
    return ctx.result(categories, cat_by_id, images, scored=True)


def _read_reference(ref: Path) -> tuple[list[str], dict[int, str], dict[Any, _Image]]:
    ctx = _Ctx(ref)
    data = load_json(ref)
    if not isinstance(data, dict):
        raise ctx.error(
            f"top level is a {type(data).__name__}, expected a COCO object with 'images' and 'categories'"
        )
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ctx.error(f"no {key!r} list")
    categories, cat_by_id = parse_categories(data["categories"], ctx)
    return categories, cat_by_id, parse_images(data["images"], ctx)


def write_csv(path: str | Path, annotations: AnnotationSet) -> None:
    """Write one CSV row per box (atomically): ``file_name, category, x1, y1, x2, y2, score``.

    Images without boxes and categories without boxes leave no row.
    """
    path = Path(path)
    check_set(annotations, path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    # QUOTE_MINIMAL leaves a lone "\r" unquoted, which no CSV reader accepts back
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for im in annotations.images:
        scores = [""] * len(im) if im.scores is None else [fmt_float(s) for s in im.scores]
        for box, label, score in zip(im.xyxy.tolist(), im.category, scores):
            row = [im.file_name, label, *(fmt_float(v) for v in box), score]
            (quoted if "\r" in im.file_name or "\r" in label else writer).writerow(row)
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str | Path) -> AnnotationSet:
    """Read a CSV written by :func:`write_csv` (images and categories in first-seen order).

    Raises:
        FormatError: not UTF-8 CSV, wrong header, a row of the wrong length, a blank
            name (or a file name with a NUL), a coordinate or score
            that is not a finite number, an empty or inverted box, or a score column
            filled on some rows only.
    """
    path = Path(path)
    text = read_text(path, "a .csv file")
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:  # a field over csv.field_size_limit(), a NUL byte, ...
        raise FormatError(f"{path.name} line {reader.line_num}: not valid CSV ({exc})", path) from None
    if not rows or tuple(c.strip() for c in rows[0]) != CSV_COLUMNS:
        raise FormatError(f"{path.name}: the header must be {','.join(CSV_COLUMNS)}", path)
    per_image: dict[str, list[tuple[str, list[float], str]]] = {}
    categories: dict[str, None] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(CSV_COLUMNS):
            raise FormatError(
                f"{path.name} line {line}: {len(row)} fields, expected {len(CSV_COLUMNS)}", path
            )
        name, label = row[0], row[1]
        if not name or not label:
            raise FormatError(f"{path.name} line {line}: empty file_name or category", path)
        for what, value, is_file in (("file_name", name, True), ("category", label, False)):
            problem = name_problem(value, file=is_file)
            if problem:
                raise FormatError(f"{path.name} line {line}: {what} {value!r} {problem}", path)
        try:
            box = [float(v) for v in row[2:6]]
            if row[6]:
                float(row[6])
        except ValueError:
            raise FormatError(f"{path.name} line {line}: {row[2:]!r} are not all numbers", path) from None
        if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise FormatError(f"{path.name} line {line}: box {box} is not finite, or empty or inverted", path)
        per_image.setdefault(name, []).append((label, box, row[6]))
        categories[label] = None
    filled = {bool(s) for entries in per_image.values() for _, _, s in entries}
    if len(filled) > 1:
        raise FormatError(f"{path.name}: some rows have a score and others do not", path)
    scored = filled == {True}
    images = [
        AnnotatedImage(
            file_name=name,
            width=None,
            height=None,
            xyxy=np.array([b for _, b, _ in entries], dtype=np.float64),
            category=[c for c, _, _ in entries],
            scores=np.array([float(s) for _, _, s in entries]) if scored else None,
        )
        for name, entries in per_image.items()
    ]
    if scored and any(not np.isfinite(im.scores).all() for im in images if im.scores is not None):
        raise FormatError(f"{path.name}: a score is not a finite number", path)
    return AnnotationSet(categories=list(categories), images=images, path=path)
