"""Import and export of annotation files (COCO JSON, YOLO txt, Pascal VOC XML; export
also GeoJSON and GeoPackage, see ``_geo``).

Imports are all-or-nothing: the file is read and checked completely, the images
it needs are found and probed, and only then are categories, images and boxes
written, in one transaction. Boxes partly outside their image are clipped to it
(counted in the report); inverted boxes and boxes wholly outside are refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepblock_nb.errors import ArgumentError, FormatError, ImageReadError, PathError
from deepblock_nb.io.annotations import (
    AnnotatedImage,
    AnnotationSet,
    DatasetImage,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
    write_yolo_dataset,
)
from deepblock_nb.io.annotations.yolo import is_yolo_dataset
from deepblock_nb.io.images import probe_image
from deepblock_nb.project._checks import clip_checked
from deepblock_nb.project._geo import MAP_FORMATS, write_map_file
from deepblock_nb.store import ImageRecord, ImportedBox
from deepblock_nb.store.files import within

if TYPE_CHECKING:
    from deepblock_nb.project._project import Project

__all__ = ["EXPORT_FORMATS", "FORMATS", "AnnotationIO", "ImportReport"]

FORMATS = ("coco", "yolo", "voc")
#: export also writes map formats (read back by GIS tools, not by import_annotations)
EXPORT_FORMATS = (*FORMATS, *MAP_FORMATS)
#: the folder of each split in an Ultralytics dataset (``images/<folder>``, ``labels/<folder>``)
YOLO_FOLDERS = {"train": "train", "evaluate": "val", "predict": "test"}
_IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ico", ".jp2", ".svg")


@dataclass
class ImportReport:
    """What an import did."""

    path: Path
    format: str
    images_added: int = 0
    images_matched: int = 0
    boxes_added: int = 0
    boxes_clipped: int = 0
    categories_added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"Imported {self.boxes_added} boxes from {self.path.name} ({self.format}): "
            f"{self.images_added} images added, {self.images_matched} matched to existing images"
        ]
        if self.categories_added:
            lines.append(f"new categories: {', '.join(self.categories_added)}")
        if self.boxes_clipped:
            lines.append(f"{self.boxes_clipped} boxes reached outside their image and were clipped to it")
        lines += self.warnings
        return "\n".join(lines)


class AnnotationIO:
    """Reads annotation files into the project, all-or-nothing, and writes them out."""

    def __init__(self, project: Project) -> None:
        self._p = project
        self._store = project._store

    def import_annotations(
        self,
        path: str | Path,
        format: str,
        images_dir: str | Path | None,
        split: str,
        classes: list[str] | str | Path | None,
        copy: bool,
    ) -> ImportReport:
        path = Path(path).expanduser()
        fmt = _check_format(format)
        if images_dir is not None:
            base = Path(images_dir).expanduser()
        elif fmt == "yolo" and is_yolo_dataset(path):
            base = path / "images"  # label stems are <split>/<stem>, as are the images under it
        else:
            base = path if path.is_dir() else path.parent
        if fmt == "coco":
            aset = read_coco(path)
        elif fmt == "voc":
            aset = read_voc(path)
        else:
            aset = read_yolo(path, classes=classes, image_sizes=lambda stem: self._size_by_stem(stem, base))
        return self._apply_annotation_set(aset, fmt, path, base, split, copy)

    def export_annotations(self, path: str | Path, format: str, split: str | None) -> Path:
        """``Project.export_annotations``.

        ``format="yolo"`` writes an Ultralytics dataset in the folder ``path``:
        ``data.yaml`` (``path`` absolute, ``train: images/train``, ``val: images/val``,
        ``names: {0: ..., 1: ...}`` in category order), ``images/<split>/`` and
        ``labels/<split>/<stem>.txt`` (``class cx cy w h`` normalised; an empty file for an
        image without boxes, which Ultralytics trains on as background). ``split=None``
        exports the train images (``train``) and the evaluate images (``val``); predict
        images only with ``split="predict"`` (``images/test``). Without evaluate images,
        ``val`` reuses the train images. Images are copied; one of 2 GB or more is a
        symbolic link to the project's file (a warning says so). Images in formats
        Ultralytics does not read (SVG, GIF, ICO, JPEG 2000, whole-slide files, ...) are
        written as PNG as displayed, up to 64 Mpx; larger ones are left out with their
        boxes, with a warning. A folder that already holds other label or image files
        for a split is refused. ``import_annotations(path, format="yolo")`` reads the
        folder back (images from ``path/images`` unless ``images_dir`` is given).

        COCO also writes back the ``info`` and ``licenses`` of the COCO files imported
        (the last ``info``; licenses merged by id) and each image's ``license``,
        ``date_captured``, ``coco_url`` and ``flickr_url`` when its file gave them.
        """
        path = Path(path).expanduser()
        fmt = _check_format(format, EXPORT_FORMATS, path)
        if fmt == "yolo":
            self._export_yolo(path, split)
            return path
        aset = self._annotation_set(split)
        if fmt in MAP_FORMATS:
            write_map_file(fmt, path, aset, self._p.images(split))
        elif fmt == "coco":
            self._add_coco_provenance(aset, split)
            write_coco(
                path,
                aset,
                category_ids={c.name: c.id for c in self._p.categories},
                image_ids={im.name: im.id for im in self._p.images(split)},
            )
        else:
            write_voc(path, aset)
        return path

    # -- internals ---------------------------------------------------------------
    def _export_yolo(self, path: Path, split: str | None) -> None:
        """An Ultralytics dataset of the train and evaluate images (or of ``split``)."""
        splits: dict[str, list[DatasetImage]] = {}
        for s in (split,) if split is not None else ("train", "evaluate"):
            recs = self._p.images(s)
            if not recs and split is None:
                continue  # only the splits present
            aset = self._annotation_set(s)
            splits[YOLO_FOLDERS[s]] = [
                DatasetImage(item, self._file(rec), render=partial(self._render, rec))
                for item, rec in zip(aset.images, recs)
            ]
        result = write_yolo_dataset(path, [c.name for c in self._p.categories], splits)
        for note in result.notes:
            warnings.warn(note, UserWarning, stacklevel=4)

    @staticmethod
    def _file(rec: ImageRecord) -> Path:
        if not rec.path.is_file():
            raise ImageReadError(
                f"{rec.path}: the file of image {rec.name!r} is missing (was it moved or deleted?); "
                "nothing was exported",
                rec.path,
            )
        return rec.path

    def _render(self, rec: ImageRecord) -> np.ndarray:
        """The whole image as displayed, ``(H, W, 3)`` uint8 (for a dataset's PNG copy)."""
        with self._p.open_image(rec) as source:
            return source.read_region(0, 0, rec.width, rec.height)

    def _add_coco_provenance(self, aset: AnnotationSet, split: str | None) -> None:
        """The ``info``, ``licenses`` and per-image fields kept from COCO imports."""
        aset.info, aset.licenses = self._store.provenance.coco_header()
        recs = self._p.images(split)
        fields = self._store.provenance.coco_image_fields((rec.id, rec.name) for rec in recs)
        for item, rec in zip(aset.images, recs):
            item.extra = dict(fields.get(rec.id, {}))

    def _annotation_set(self, split: str | None) -> AnnotationSet:
        names = {c.id: c.name for c in self._p.categories}
        images: list[AnnotatedImage] = []
        for rec in self._p.images(split):
            boxes = self._store.annotations.for_export(rec.id)
            xyxy = boxes.xyxy
            xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
            exact = ~np.isnan(boxes.src_wh[:, 0])
            xywh[exact, 2:] = boxes.src_wh[exact]  # the exact imported width/height, where kept
            images.append(
                AnnotatedImage(
                    file_name=rec.name,
                    width=rec.width,
                    height=rec.height,
                    xyxy=xyxy,
                    category=[names[int(c)] for c in boxes.category_id],
                    source_id=rec.id,
                    xywh=xywh,
                    # an imported box is written back as its file had it
                    sources=[None if s == "imported" else s for s in boxes.source],
                )
            )
        return AnnotationSet(categories=[c.name for c in self._p.categories], images=images)

    @staticmethod
    def _name_by_stem(stem: str, base: Path, existing: dict[str, ImageRecord]) -> str:
        for name in existing:
            if Path(name).stem == Path(stem).name:
                return name
        for where in dict.fromkeys((stem, Path(stem).name)):  # "val/a" also as "a" in images_dir
            for suffix in _IMAGE_SUFFIXES:
                for candidate in (f"{where}{suffix}", f"{where}{suffix.upper()}"):
                    if (base / candidate).is_file():
                        return candidate
        return stem

    def _size_by_stem(self, stem: str, base: Path) -> tuple[int, int]:
        for rec in self._p.images():
            if Path(rec.name).stem == Path(stem).name:
                return (rec.width, rec.height)
        for where in dict.fromkeys((stem, Path(stem).name)):
            for suffix in _IMAGE_SUFFIXES:
                for candidate in (base / f"{where}{suffix}", base / f"{where}{suffix.upper()}"):
                    if candidate.is_file():
                        info = probe_image(candidate)
                        return (int(info.width), int(info.height))
        raise FormatError(
            f"YOLO label {stem}.txt: no image named {stem}.* in the project or in {base}",
            base / f"{stem}.txt",
        )

    def _apply_annotation_set(
        self, aset: AnnotationSet, fmt: str, path: Path, base: Path, split: str, copy: bool
    ) -> ImportReport:
        report = ImportReport(path=path, format=fmt, warnings=list(aset.warnings))
        existing = {rec.name: rec for rec in self._p.images()}
        # 1. find every image: in the project, else under images_dir
        to_add: list[tuple[AnnotatedImage, Path]] = []
        matched: list[tuple[AnnotatedImage, ImageRecord]] = []
        missing: list[str] = []
        names_seen: set[str] = set()
        for item in aset.images:
            if fmt == "yolo":  # YOLO labels name images by stem only
                item.file_name = self._name_by_stem(item.file_name, base, existing)
            name = Path(item.file_name.replace("\\", "/")).name
            if name in names_seen:
                raise FormatError(
                    f"{path}: two images are named {name!r} (file names must be unique in a project)", path
                )
            names_seen.add(name)
            if name in existing:
                matched.append((item, existing[name]))
                continue
            try:
                file = within(base, item.file_name)
            except PathError as exc:
                raise PathError(f"{path}: image {item.file_name!r}: {exc}") from exc
            if file.is_file():
                to_add.append((item, file))
            else:
                missing.append(item.file_name)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FormatError(
                f"{path}: {len(missing)} images named in the file are neither in the project nor in {base}: "
                f"{shown}. Pass images_dir= the folder that holds them. Nothing was imported.",
                path,
            )
        with self._p._staging() as staging:
            entries = []
            for _, file in to_add:
                try:
                    entries.append(staging.stage(file, copy, Path(file).name))
                except ImageReadError as exc:
                    raise ImageReadError(f"{exc} (named in {path}); nothing was imported", file) from exc
            # 2. sizes stated by the file must match the real images
            sized = [(item, e["width"], e["height"]) for (item, _), e in zip(to_add, entries)]
            sized += [(item, rec.width, rec.height) for item, rec in matched]
            for item, w, h in sized:
                if (item.width is not None and item.width != w) or (
                    item.height is not None and item.height != h
                ):
                    raise FormatError(
                        f"{path}: image {item.file_name!r} is {item.width} x {item.height} in the file "
                        f"but {w} x {h} pixels on disk; the annotations belong to another image",
                        path,
                    )
            # 3. boxes: refuse inverted/outside, clip partial ones
            prepared = [self._prepare_boxes(path, item, w, h) for item, w, h in sized]
            report.boxes_clipped = sum(p[3] for p in prepared)
            # 4. one transaction; its events are announced only once it commits
            with self._store.write():
                # a file's names are matched as the project keeps names: stripped
                known = {c.name: c.id for c in self._p.categories}
                needed = list(aset.categories) + [c for _, cats, _, _ in prepared for c in cats]
                for name in dict.fromkeys(needed):
                    key = str(name).strip()
                    if not key:
                        raise FormatError(f"{path}: a category has an empty name; nothing was imported", path)
                    if key not in known:
                        known[key] = self._p.add_category(key).id
                        report.categories_added.append(key)
                    known[name] = known[key]
                new_ids = self._p._insert_images(staging, entries, split)
                image_ids = new_ids + [rec.id for _, rec in matched]
                boxes = [
                    ImportedBox(image_id, known[c], tuple(b), s[0], s[1], fmt)  # type: ignore[arg-type]
                    for image_id, (xyxy, cats, src_wh, _) in zip(image_ids, prepared)
                    for b, c, s in zip(xyxy.tolist(), cats, src_wh)
                ]
                report.boxes_added = self._store.annotations.add_imported(boxes)
                if fmt == "coco":
                    names = [e["name"] for e in entries] + [rec.name for _, rec in matched]
                    self._store.provenance.keep_coco(
                        aset.info,
                        aset.licenses,
                        {i: (name, item.extra) for i, name, (item, _, _) in zip(image_ids, names, sized)},
                    )
                self._p._emit("annotations", action="imported", image=None, ids=None)
        report.images_added = len(entries)
        report.images_matched = len(matched)
        return report

    @staticmethod
    def _prepare_boxes(
        path: Path, item: AnnotatedImage, width: int, height: int
    ) -> tuple[np.ndarray, list[str], list[tuple[Any, Any]], int]:
        xyxy = item.xyxy
        if len(xyxy) == 0:
            return xyxy, [], [], 0
        clipped, changed = clip_checked(
            xyxy, (width, height), f"{path}: image {item.file_name!r} (nothing was imported)", FormatError
        )
        src: list[tuple[Any, Any]] = [(None, None)] * len(xyxy)
        if item.xywh is not None:
            exact = (
                ~changed
                & (item.xywh[:, 0] + item.xywh[:, 2] == xyxy[:, 2])
                & (item.xywh[:, 1] + item.xywh[:, 3] == xyxy[:, 3])
            )
            src = [
                (float(w), float(h)) if ok else (None, None) for (w, h), ok in zip(item.xywh[:, 2:], exact)
            ]
        return clipped, list(item.category), src, int(changed.sum())


def _check_format(fmt: str, choices: tuple[str, ...] = FORMATS, path: Path | None = None) -> str:
    f = str(fmt).lower().replace("pascal_voc", "voc").replace("pascal-voc", "voc")
    if f not in choices:
        where = f"{path.name}: " if path is not None else ""
        raise ArgumentError(f"{where}unknown annotation format {fmt!r}; choose from {', '.join(choices)}")
    return f
