"""YOLO label folders <-> :class:`AnnotationSet`.

One ``.txt`` per image, one box per line: ``class cx cy w h`` with the class a
0-based index into the class names and the rest normalised to [0, 1] by the image
width and height; a sixth value is a score (prediction files). Pixel boxes are
``x1 = (cx - w/2) * W``, ``x2 = (cx + w/2) * W`` (likewise for y), so image sizes are
needed to read or write. Class names come from ``classes.txt`` (one per line) or a
``data.yaml`` (``names:`` list or ``{index: name}``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["TOLERANCE", "read_yolo", "read_yolo_classes", "write_yolo"]

TOLERANCE = 1e-6
"""How far a normalised value may stray outside [0, 1] (rounding in other tools)."""

ImageSizes = Mapping[str, tuple[int, int]] | Callable[[str], "tuple[int, int] | None"]


def read_yolo(
    labels_dir: str | Path,
    classes: Sequence[str] | str | Path | None = None,
    image_sizes: ImageSizes | None = None,
) -> AnnotationSet:
    """Read a folder of YOLO label files (sub-folders included).

    Args:
        labels_dir: the folder of ``.txt`` files (``classes.txt`` is not a label file).
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
    index = {name: i for i, name in enumerate(annotations.categories)}
    targets: dict[Path, str] = {}
    for im in annotations.images:
        target = relative_output_path(im.file_name, ".txt", out)
        if target in targets or target == out / "classes.txt":
            raise FormatError(
                f"{out}: {im.file_name!r} and {targets.get(target, 'classes.txt')!r} need the same label file",
                out,
            )
        targets[target] = im.file_name
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
    atomic_write_text(out / "classes.txt", "".join(f"{name}\n" for name in annotations.categories))


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
