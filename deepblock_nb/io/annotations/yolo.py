"""YOLO label folders <-> :class:`AnnotationSet`.

One ``.txt`` per image, one box per line: ``class cx cy w h`` with the class a
0-based index into the class names and the rest normalised to [0, 1] by the image
width and height; a sixth value is a score (prediction files). Pixel boxes are
``x1 = (cx - w/2) * W``, ``x2 = (cx + w/2) * W`` (likewise for y), so image sizes are
needed to read or write. Class names come from ``classes.txt`` (one per line) or a
``data.yaml`` (``names:`` list or ``{index: name}``).

Two layouts: a flat folder of label files (:func:`write_yolo`), and an Ultralytics
dataset (:func:`write_yolo_dataset`): ``data.yaml``, ``images/<split>/`` and
``labels/<split>/``, which :func:`read_yolo` also reads, given the dataset folder.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from deepblock_nb.errors import ArgumentTypeError, FormatError

from ._common import (
    atomic_write_text,
    check_class_names,
    check_set,
    name_problem,
    read_text,
    relative_output_path,
)
from ._records import AnnotatedImage, AnnotationSet

__all__ = [
    "CONVERT_MAX_PIXELS",
    "LINK_FROM_BYTES",
    "TOLERANCE",
    "ULTRALYTICS_SUFFIXES",
    "DatasetImage",
    "YoloDataset",
    "read_yolo",
    "read_yolo_classes",
    "write_yolo",
    "write_yolo_dataset",
]

TOLERANCE = 1e-6
"""How far a normalised value may stray outside [0, 1] (rounding in other tools)."""

ULTRALYTICS_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
"""Image files every Ultralytics 8 release reads (``ultralytics.data.utils.IMG_FORMATS``,
less those only recent releases or some OpenCV builds read: JPEG 2000, AVIF, HEIC)."""

LINK_FROM_BYTES = 2 * 1024**3
"""A dataset image this large or larger is linked to the project's file, not copied."""

CONVERT_MAX_PIXELS = 64 * 1024 * 1024
"""The largest image (width x height) converted to PNG for a dataset (about 200 MB of RGB)."""

_YAML_NAMES = ("data.yaml", "dataset.yaml")

ImageSizes = Mapping[str, tuple[int, int]] | Callable[[str], "tuple[int, int] | None"]


def read_yolo(
    labels_dir: str | Path,
    classes: Sequence[str] | str | Path | None = None,
    image_sizes: ImageSizes | None = None,
) -> AnnotationSet:
    """Read a folder of YOLO label files (sub-folders included).

    Args:
        labels_dir: the folder of ``.txt`` files (``classes.txt`` is not a label file),
            or an Ultralytics dataset folder (a ``data.yaml`` beside ``labels/``), whose
            ``labels/`` folder is read: stems are then ``<split>/<image stem>``.
        classes: class names, or a ``classes.txt`` / ``data.yaml`` path. ``None``
            looks for ``classes.txt``, ``data.yaml`` or ``dataset.yaml`` in
            ``labels_dir`` and up to two folders above it.
        image_sizes: ``(width, height)`` per image, matched by stem: a mapping whose
            keys are file names (``"a/b.jpg"``) or stems (``"a/b"``), or a callable
            ``stem -> (width, height) | None``. Stems are label paths relative to
            ``labels_dir`` without ``.txt``. A mapping key with a suffix becomes the
            image's ``file_name`` (else the stem); mapped images without a label file
            are images without boxes.

    Raises:
        FormatError: no class names; a line without 5 (or 6) numbers; a class index
            that is not an integer in range; a value outside [0, 1] (beyond
            :data:`TOLERANCE`); ``w`` or ``h`` <= 0; boxes without an image size;
            two ``image_sizes`` keys with one stem; a mix of lines with and without
            scores in one file.
    """
    root = Path(labels_dir)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder of YOLO label files", root)
    if is_yolo_dataset(root):
        root = root / "labels"
    names = _resolve_classes(root, classes)
    by_stem: dict[str, str] = {}
    if isinstance(image_sizes, Mapping):
        for name in image_sizes:
            if not isinstance(name, str) or not name:
                raise ArgumentTypeError(f"{root}: image_sizes key {name!r} is not an image file name")
            other = by_stem.setdefault(_stem(name), name)
            if other != name:
                raise FormatError(
                    f"{root}: image_sizes names both {other!r} and {name!r}, which share a label file", root
                )
    label_files = sorted(p for p in root.rglob("*.txt") if p.name != "classes.txt" and p.is_file())
    records: list[AnnotatedImage] = []
    seen: set[str] = set()
    for file in label_files:
        stem = file.relative_to(root).with_suffix("").as_posix()
        seen.add(stem)
        where = file.relative_to(root).as_posix()
        cls, values, scores = _parse_file(file, where, len(names))
        key = by_stem.get(stem)
        size = _size(image_sizes, key, stem, where, file)
        if size is None and len(cls):
            raise FormatError(
                f"{where}: no image size for {stem!r}, which is needed to convert boxes to pixels", file
            )
        w, h = (None, None) if size is None else size
        xyxy = _to_pixels(values, w or 0, h or 0)
        records.append(AnnotatedImage(key or stem, w, h, xyxy, [names[c] for c in cls], scores))
    if isinstance(image_sizes, Mapping):
        for stem, key in by_stem.items():
            if stem not in seen:
                w, h = _check_size(image_sizes[key], key, root)
                records.append(AnnotatedImage(key, w, h, np.zeros((0, 4)), []))
    return AnnotationSet(categories=names, images=records, path=root)


def write_yolo(out_dir: str | Path, annotations: AnnotationSet) -> None:
    """Write one label file per image (empty for images without boxes) and ``classes.txt``.

    Each file is ``out_dir / file_name`` with ``.txt`` for its suffix; sub-folders are
    kept. Every image needs ``width`` and ``height``. Scores, when present, become a
    sixth value. Each file is written atomically.

    Raises:
        FormatError: inconsistent records, an image without size, a category name
            with a line break, or two images that share a label file.
    """
    out = Path(out_dir)
    check_set(annotations, out, need_size=True)
    check_class_names(annotations, out)
    targets = _label_targets(out, annotations)
    _write_labels(annotations, targets)
    atomic_write_text(out / "classes.txt", "".join(f"{name}\n" for name in annotations.categories))


def is_yolo_dataset(folder: Path) -> bool:
    """Whether ``folder`` is an Ultralytics dataset: a ``data.yaml`` beside ``labels/``."""
    return (folder / "labels").is_dir() and any((folder / n).is_file() for n in _YAML_NAMES)


def _label_targets(out: Path, aset: AnnotationSet) -> dict[Path, str]:
    """Label file -> image name, refusing two images that need one file."""
    targets: dict[Path, str] = {}
    for im in aset.images:
        target = relative_output_path(im.file_name, ".txt", out)
        if target in targets or target == out / "classes.txt":
            raise FormatError(
                f"{out}: {im.file_name!r} and {targets.get(target, 'classes.txt')!r} need the same label file",
                out,
            )
        targets[target] = im.file_name
    return targets


def _write_labels(annotations: AnnotationSet, targets: Mapping[Path, str]) -> None:
    index = {name: i for i, name in enumerate(annotations.categories)}
    for im, target in zip(annotations.images, targets):
        wh = np.array([im.width, im.height, im.width, im.height], dtype=np.float64)
        xyxy = im.xyxy
        cxcywh = (
            np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1) / wh
        )  # [N,4]
        lines = []
        for k, (label, row) in enumerate(zip(im.category, cxcywh.tolist())):
            fields = [str(index[label]), *(repr(v) for v in row)]
            if im.scores is not None:
                fields.append(repr(float(im.scores[k])))
            lines.append(" ".join(fields) + "\n")
        atomic_write_text(target, "".join(lines))


@dataclass(frozen=True)
class DatasetImage:
    """One image of an Ultralytics dataset: its boxes and where its pixels come from.

    Attributes:
        record: the boxes (pixels), with ``file_name`` the name the image gets under
            ``images/<split>/`` and ``width``/``height`` set.
        source: the image file, copied or linked when Ultralytics reads its suffix
            (:data:`ULTRALYTICS_SUFFIXES`).
        render: ``() -> (H, W, 3) uint8`` RGB pixels, for a file Ultralytics cannot
            read: the image is then written as ``<stem>.png``. ``None``: such an image
            is left out.
    """

    record: AnnotatedImage
    source: Path
    render: Callable[[], np.ndarray] | None = None


@dataclass
class YoloDataset:
    """What :func:`write_yolo_dataset` wrote.

    Attributes:
        path: the dataset folder; ``data_yaml`` its ``data.yaml``.
        images: split folder -> images written; ``boxes``: split folder -> label lines.
        linked / converted / skipped: image names linked (not copied), converted to
            PNG, or left out (with their boxes).
        notes: one human-readable line per thing a user should know.
    """

    path: Path
    data_yaml: Path
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    linked: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_yolo_dataset(
    out_dir: str | Path,
    categories: Sequence[str],
    splits: Mapping[str, Sequence[DatasetImage]],
    *,
    link_from_bytes: int = LINK_FROM_BYTES,
    convert_max_pixels: int = CONVERT_MAX_PIXELS,
) -> YoloDataset:
    """Write an Ultralytics detection dataset.

    Layout: ``images/<split>/<image>``, ``labels/<split>/<stem>.txt`` (one line per
    box, ``class cx cy w h`` normalised, class the index in ``categories``; an empty
    file for an image without boxes, a background image) and ``data.yaml`` with
    ``path`` (absolute), ``train``/``val``/``test`` for the split folders of those
    names (``val`` falls back to the train images when there is no ``val`` folder)
    and ``names: {0: ..., 1: ...}``.

    Images are copied; a file of :data:`LINK_FROM_BYTES` or more is a symbolic link
    (else a hard link, else a copy). A file whose suffix Ultralytics does not read is
    converted to PNG from ``render`` when it has at most ``convert_max_pixels``
    pixels, else left out. Each of these is named in ``notes``.

    Raises:
        FormatError: inconsistent records, two images needing one label file, or
            a split folder already holding files this export would not write (stale
            labels would be trained on).
    """
    out = Path(out_dir)
    cats = list(categories)
    plan: dict[str, list[tuple[DatasetImage, Path, Path, str]]] = {}
    result = YoloDataset(path=out, data_yaml=out / "data.yaml")
    big: list[str] = []
    for folder, items in splits.items():
        check_set(AnnotationSet(cats, [it.record for it in items]), out, need_size=True)
        check_class_names(AnnotationSet(cats, []), out)
        rows: list[tuple[DatasetImage, Path, Path, str]] = []
        for it in items:
            name = it.record.file_name
            suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
            if suffix in ULTRALYTICS_SUFFIXES:
                how = "place"
            elif (
                it.render is not None
                and (it.record.width or 0) * (it.record.height or 0) <= convert_max_pixels
            ):
                how, name = "convert", str(PurePosixPath(name.replace("\\", "/")).with_suffix(".png"))
            else:
                (big if it.render is not None else result.skipped).append(it.record.file_name)
                continue
            image = relative_output_path(name, PurePosixPath(name).suffix, out / "images" / folder)
            label = relative_output_path(name, ".txt", out / "labels" / folder)
            rows.append((it, image, label, how))
        seen: dict[Path, str] = {}
        for it, _, label, _ in rows:
            if label in seen:
                raise FormatError(
                    f"{out}: {seen[label]!r} and {it.record.file_name!r} need the same label file "
                    f"labels/{folder}/{label.name}; rename one of them",
                    out,
                )
            seen[label] = it.record.file_name
        _refuse_stale(out, folder, {p for _, image, label, _ in rows for p in (image, label)})
        plan[folder] = rows
    result.skipped += big
    for folder, rows in plan.items():
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        (out / "labels" / folder).mkdir(parents=True, exist_ok=True)
        (out / "labels" / f"{folder}.cache").unlink(missing_ok=True)  # Ultralytics' scan of the old labels
        for it, image, _, how in rows:
            if how == "convert" and it.render is not None:
                _write_png(image, it.render())
                result.converted.append(it.record.file_name)
            elif _place(it.source, image, link_from_bytes):
                result.linked.append(it.record.file_name)
        records = [it.record for it, _, _, _ in rows]
        _write_labels(AnnotationSet(cats, records), {label: it.record.file_name for it, _, label, _ in rows})
        result.images[folder] = len(rows)
        result.boxes[folder] = sum(len(r) for r in records)
    result.notes += _notes(result, big, link_from_bytes)
    atomic_write_text(result.data_yaml, _data_yaml(out, cats, list(plan)))
    return result


def _refuse_stale(out: Path, folder: str, planned: set[Path]) -> None:
    for sub in ("images", "labels"):
        where = out / sub / folder
        if not where.is_dir():
            continue
        stale = sorted(p for p in where.rglob("*") if (p.is_file() or p.is_symlink()) and p not in planned)
        if stale:
            shown = ", ".join(repr(p.relative_to(out).as_posix()) for p in stale[:3])
            raise FormatError(
                f"{out}: {sub}/{folder}/ holds {len(stale)} files this export would not write ({shown}"
                f"{' ...' if len(stale) > 3 else ''}); Ultralytics would train on them. Export into a new "
                "or empty folder, or delete them. Nothing was written.",
                out,
            )


def _place(source: Path, target: Path, link_from_bytes: int) -> bool:
    """Copy ``source`` to ``target``, or link it when it is large; True when linked.

    ``target`` is unlinked first: it may be a link to the project's own file, which a
    copy onto it would overwrite.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if source.stat().st_size >= link_from_bytes:
        for link in (lambda: os.symlink(source.resolve(), target), lambda: os.link(source, target)):
            try:
                link()
                return True
            except OSError:  # no symlink privilege (Windows), another file system
                continue
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return False


def _write_png(target: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    tmp = target.with_name(f".{target.name}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _notes(result: YoloDataset, big: list[str], link_from_bytes: int) -> list[str]:
    def names(items: list[str]) -> str:
        return ", ".join(repr(n) for n in items[:5]) + (" ..." if len(items) > 5 else "")

    notes = []
    if result.linked:
        notes.append(
            f"{result.path}: {len(result.linked)} images of {link_from_bytes / 1024**3:g} GB or more are links "
            f"to the project's files, not copies ({names(result.linked)}); moving or deleting the project "
            "breaks them"
        )
    if result.converted:
        notes.append(
            f"{result.path}: {len(result.converted)} images in formats Ultralytics does not read were "
            f"converted to PNG as displayed ({names(result.converted)})"
        )
    if big:
        notes.append(
            f"{result.path}: {len(big)} images in formats Ultralytics does not read are too large to convert "
            f"(over {CONVERT_MAX_PIXELS / 1e6:.0f} Mpx) and were left out with their boxes ({names(big)}); "
            "divide them into tiles or convert them to TIFF first"
        )
    other = [n for n in result.skipped if n not in big]
    if other:
        notes.append(
            f"{result.path}: {len(other)} images in formats Ultralytics does not read were left out with "
            f"their boxes ({names(other)})"
        )
    return notes


def _data_yaml(out: Path, categories: list[str], folders: list[str]) -> str:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with Jupyter
        raise FormatError(f"{out}: writing data.yaml needs PyYAML (pip install pyyaml)", out) from None
    first = folders[0] if folders else "train"
    train = "train" if "train" in folders else first
    val = "val" if "val" in folders else train
    header = "# An Ultralytics detection dataset written by deepblock_nb.\n"
    if val != "val":
        header += f"# No 'val' images were exported: val reuses images/{val}.\n"
    data: dict[str, Any] = {"path": str(out.resolve()), "train": f"images/{train}", "val": f"images/{val}"}
    if "test" in folders:
        data["test"] = "images/test"
    data["names"] = dict(enumerate(categories))
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def read_yolo_classes(path: str | Path) -> list[str]:
    """Class names from a ``classes.txt`` (one per line) or a ``data.yaml`` (``names:``)."""
    path = Path(path)
    text = read_text(path, "a classes.txt or data.yaml file")
    if path.suffix.lower() in (".yaml", ".yml"):
        names = _yaml_names(path, text)
    else:
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
    for i, name in enumerate(names):
        if not name:
            raise FormatError(f"{path.name}: class {i} has an empty name", path)
        problem = name_problem(name, file=False)
        if problem:
            raise FormatError(f"{path.name}: class {i} name {name!r} {problem}", path)
        if name in names[:i]:
            raise FormatError(f"{path.name}: class name {name!r} is listed twice", path)
    return names


def _yaml_names(path: Path, text: str) -> list[str]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with Jupyter
        raise FormatError(
            f"{path.name}: reading YAML needs PyYAML; pass the class names instead", path
        ) from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FormatError(f"{path.name}: not valid YAML ({exc})", path) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # deep nesting, a bad date
        raise FormatError(f"{path.name}: not usable YAML ({type(exc).__name__}: {exc})", path) from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise FormatError(f"{path.name}: 'names' keys must be the integers 0..{len(names) - 1}", path)
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise FormatError(f"{path.name}: 'names' keys must be 0..{len(keys) - 1}", path)
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError(f"{path.name}: no 'names' list of strings", path)
    return [n.strip() for n in names]


def _resolve_classes(root: Path, classes: Sequence[str] | str | Path | None) -> list[str]:
    if isinstance(classes, str | Path):
        return read_yolo_classes(classes)
    if classes is not None:
        names = list(classes)
        usable = all(isinstance(n, str) and not name_problem(n, file=False) for n in names)
        if not usable or len(set(names)) != len(names):
            raise FormatError(f"{root}: class names must be distinct non-empty strings", root)
        return names
    for folder in (root, root.parent, root.parent.parent):
        for candidate in ("classes.txt", "data.yaml", "dataset.yaml"):
            if (folder / candidate).is_file():
                return read_yolo_classes(folder / candidate)
    raise FormatError(
        f"{root}: no classes.txt or data.yaml found; pass classes=[...] with the class names", root
    )


def _stem(key: str) -> str:
    p = PurePosixPath(key.replace("\\", "/"))
    return (p.parent / p.stem).as_posix() if p.suffix else p.as_posix()


def _size(
    image_sizes: ImageSizes | None, key: str | None, stem: str, where: str, file: Path
) -> tuple[int, int] | None:
    if image_sizes is None:
        return None
    if isinstance(image_sizes, Mapping):
        value = None if key is None else image_sizes[key]
    else:
        value = image_sizes(stem)
    return None if value is None else _check_size(value, where, file)


def _check_size(value: Any, where: str, path: Path) -> tuple[int, int]:
    ok = False
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
        try:
            w, h = value
            ok = all(not isinstance(v, bool) and float(v).is_integer() and v > 0 for v in (w, h))
        except (TypeError, ValueError, OverflowError):  # not two items, not numbers, 10**400
            ok = False
    if not ok:
        raise FormatError(f"{where}: image size {value!r} is not (width, height) in positive pixels", path)
    return int(w), int(h)


def _parse_file(file: Path, where: str, num_classes: int) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    text = read_text(file, "a YOLO label file", where)
    cls: list[int] = []
    rows: list[list[float]] = []
    widths: set[int] = set()
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        at = f"{where} line {line_no}"
        if len(parts) not in (5, 6):
            raise FormatError(
                f"{at}: {len(parts)} values, expected 5 (class cx cy w h) or 6 (with score)", file
            )
        widths.add(len(parts))
        if len(widths) > 1:
            raise FormatError(f"{at}: some lines have a score and others do not", file)
        try:
            numbers = [float(v) for v in parts]
        except ValueError:
            raise FormatError(f"{at}: {line.strip()!r} holds a value that is not a number", file) from None
        c = numbers[0]
        if not (c.is_integer() and 0 <= c < num_classes):
            raise FormatError(f"{at}: class {parts[0]!r} is not an index in 0..{num_classes - 1}", file)
        for name, v in zip(("cx", "cy", "w", "h"), numbers[1:5]):
            if not (math.isfinite(v) and -TOLERANCE <= v <= 1 + TOLERANCE):
                raise FormatError(
                    f"{at}: {name} = {parts[1 + ('cx', 'cy', 'w', 'h').index(name)]} is outside [0, 1]", file
                )
        if numbers[3] <= 0 or numbers[4] <= 0:
            raise FormatError(f"{at}: width and height must be > 0", file)
        if len(parts) == 6 and not math.isfinite(numbers[5]):
            raise FormatError(f"{at}: score {parts[5]!r} is not a finite number", file)
        cls.append(int(c))
        rows.append(numbers[1:])
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1) if rows else np.zeros((0, 4))
    scores = values[:, 4].copy() if widths == {6} else None
    return cls, values[:, :4], scores


def _to_pixels(cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(N, 4)`` normalised ``cx, cy, w, h`` -> ``(N, 4)`` pixel ``xyxy``."""
    wh = np.array([width, height], dtype=np.float64)
    centre, size = cxcywh[:, :2] * wh, cxcywh[:, 2:] * wh  # [N,2] each
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)
