"""ProjectCore: the project's data (categories, images, boxes, grids) and its events."""

from __future__ import annotations

import contextlib
import io as _io
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.boxes import clip_boxes, valid_boxes
from deepblock_nb.core.detections import Detections
from deepblock_nb.core.metrics import DEFAULT_THRESHOLD
from deepblock_nb.core.tiling import suggest_grid as _suggest_grid
from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.errors import (
    AnnotationError,
    CategoryError,
    DeepBlockError,
    ImageReadError,
    PathError,
    ProjectError,
    ProjectExistsError,
    ProjectNotFoundError,
    RecordNotFoundError,
)
from deepblock_nb.io.images import ImageSource, open_image, probe_image
from deepblock_nb.jobs import JobQueue
from deepblock_nb.store import SPLITS, Category, Database, Events, Grid, ImageRecord
from deepblock_nb.store.files import atomic_write_bytes, content_hash, copy_atomic, safe_image_name
from deepblock_nb.store.records import PALETTE

__all__ = ["CategoryLike", "ImageLike", "ImageSourceLike", "ProjectCore"]

DB_NAME = "project.db"
#: meta keys of the threshold: the user's value (the key older projects already use for
#: it) and the best-F1 threshold of the newest evaluation, the start until the user sets one
USER_THRESHOLD_KEY = "threshold"
EVALUATED_THRESHOLD_KEY = "evaluated_threshold"
CategoryLike = Category | int | str
ImageLike = ImageRecord | int | str
ImageSourceLike = str | Path | bytes | bytearray | np.ndarray

_IMAGE_COLUMNS = (
    "id, name, path, copied, hash, size, width, height, format, split, grid_rows, grid_cols, grid_overlap"
)


class ProjectCore:
    """Categories, images, annotations and grids of one project folder.

    Thread-safe: cells and background jobs use the same object at once.
    """

    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self._db = db
        self._events = Events()
        self._jobs = JobQueue(name=f"deepblock-jobs-{path.name}")
        self._jobs.on_job(lambda job: self._emit("jobs", job=job))

    # -- opening --------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, categories: Sequence[str] = ()) -> Any:
        """Create a new project folder; refuses a path that exists and is not an empty folder."""
        path = Path(path).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ProjectExistsError(
                f"{path} already exists; open it with Project.open, or choose a new folder"
            )
        for sub in ("images", "cache", "runs"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        project = cls(path, Database(path / DB_NAME, create=True))
        if categories:
            with project._db.write():
                for name in categories:
                    project.add_category(name)
        return project

    @classmethod
    def open(cls, path: str | Path) -> Any:
        """Open an existing project; a clear error when it is missing or corrupt."""
        path = Path(path).expanduser()
        db_path = path / DB_NAME
        if not db_path.is_file():
            raise ProjectNotFoundError(
                f"{path}: no project here (no {DB_NAME}); create one with Project.create"
            )
        for sub in ("images", "cache", "runs"):
            (path / sub).mkdir(exist_ok=True)
        return cls(path, Database(db_path))

    def close(self, timeout: float = 60.0) -> None:
        """Stop running jobs (each ends within one batch, keeping its work), wait for
        them up to ``timeout`` seconds, then close the database connections."""
        self._jobs.stop_all()
        self._jobs.wait_idle(timeout)
        self._db.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            n = self._db.scalar("SELECT count(*) FROM images")
            return f"<Project {str(self.path)!r}: {len(self.categories)} categories, {n} images>"
        except ProjectError:
            return f"<Project {str(self.path)!r} (closed)>"

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    # -- events ---------------------------------------------------------------
    def on(self, topic: str, callback: Callable[..., None]) -> Callable[[], None]:
        """Subscribe to changes: "images", "annotations", "categories", "predictions", "jobs", ...

        ``callback(topic=..., **payload)`` runs on the thread that made the change,
        after it is committed. Returns a function that unsubscribes.
        """
        return self._events.on(topic, callback)

    def _emit(self, topic: str, **payload: Any) -> None:
        self._events.emit(topic, **payload)

    # -- categories -----------------------------------------------------------
    @property
    def categories(self) -> list[Category]:
        rows = self._db.cx.execute("SELECT id, name, color FROM categories ORDER BY id").fetchall()
        return [Category(*r) for r in rows]

    def category(self, category: CategoryLike) -> Category:
        """Look up a category by record, id or name."""
        if isinstance(category, Category):
            category = category.id
        if isinstance(category, (int, np.integer)):
            row = self._db.cx.execute(
                "SELECT id, name, color FROM categories WHERE id = ?", (int(category),)
            ).fetchone()
        else:
            row = self._db.cx.execute(
                "SELECT id, name, color FROM categories WHERE name = ?", (str(category),)
            ).fetchone()
        if row is None:
            known = ", ".join(c.name for c in self.categories) or "none yet"
            raise RecordNotFoundError(f"no category {category!r} in this project (known: {known})")
        return Category(*row)

    def add_category(self, name: str, color: str | None = None) -> Category:
        name = _check_name(name, "category")
        with self._db.write() as cx:
            if cx.execute("SELECT 1 FROM categories WHERE name = ?", (name,)).fetchone():
                raise CategoryError(f"a category named {name!r} already exists")
            if color is None:
                n = cx.execute("SELECT count(*) FROM categories").fetchone()[0]
                color = PALETTE[n % len(PALETTE)]
            cur = cx.execute("INSERT INTO categories(name, color) VALUES (?, ?)", (name, _check_color(color)))
            cat = Category(int(cur.lastrowid), name, color)  # type: ignore[arg-type]
        self._emit("categories", action="added", category=cat)
        return cat

    def rename_category(self, category: CategoryLike, name: str) -> Category:
        cat = self.category(category)
        name = _check_name(name, "category")
        with self._db.write() as cx:
            other = cx.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
            if other and other[0] != cat.id:
                raise CategoryError(f"cannot rename {cat.name!r}: a category named {name!r} already exists")
            cx.execute("UPDATE categories SET name = ? WHERE id = ?", (name, cat.id))
        new = Category(cat.id, name, cat.color)
        self._emit("categories", action="renamed", category=new)
        return new

    def recolor_category(self, category: CategoryLike, color: str) -> Category:
        cat = self.category(category)
        with self._db.write() as cx:
            cx.execute("UPDATE categories SET color = ? WHERE id = ?", (_check_color(color), cat.id))
        new = Category(cat.id, cat.name, color)
        self._emit("categories", action="recolored", category=new)
        return new

    def remove_category(self, category: CategoryLike, force: bool = False) -> None:
        """Remove a category; one that still has boxes needs ``force=True`` (its boxes go too)."""
        cat = self.category(category)
        with self._db.write() as cx:
            n = cx.execute("SELECT count(*) FROM annotations WHERE category_id = ?", (cat.id,)).fetchone()[0]
            if n and not force:
                raise CategoryError(
                    f"category {cat.name!r} still has {n} boxes; pass force=True to remove it with its boxes"
                )
            cx.execute("DELETE FROM annotations WHERE category_id = ?", (cat.id,))
            cx.execute("DELETE FROM categories WHERE id = ?", (cat.id,))
        self._emit("categories", action="removed", category=cat)
        if n:
            self._emit("annotations", action="deleted", image=None)

    def _category_ids(self, categories: Sequence[CategoryLike] | CategoryLike, n: int) -> np.ndarray:
        if isinstance(categories, (Category, int, str, np.integer)):
            return np.full(n, self.category(categories).id, np.int64)
        lookup = {c.name: c.id for c in self.categories}
        ids = {c: c for c in lookup.values()}
        out = np.empty(len(categories), np.int64)
        for i, c in enumerate(categories):
            if isinstance(c, Category):
                c = c.id
            key = ids.get(int(c)) if isinstance(c, (int, np.integer)) else lookup.get(str(c))
            if key is None:
                raise RecordNotFoundError(f"no category {c!r} in this project")
            out[i] = key
        return out

    # -- images ---------------------------------------------------------------
    def images(self, split: str | None = None) -> list[ImageRecord]:
        """The project's images, optionally of one split, in the order they were added."""
        if split is None:
            rows = self._db.cx.execute(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY id").fetchall()
        else:
            rows = self._db.cx.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE split = ? ORDER BY id", (_check_split(split),)
            ).fetchall()
        return [self._image_record(r) for r in rows]

    def image(self, image: ImageLike) -> ImageRecord:
        """Look up an image by record, id or name."""
        if isinstance(image, ImageRecord):
            image = image.id
        column = "id" if isinstance(image, (int, np.integer)) else "name"
        key = int(image) if column == "id" else str(image)
        row = self._db.cx.execute(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {column} = ?", (key,)
        ).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no image {image!r} in this project")
        return self._image_record(row)

    def _image_record(self, r: Sequence[Any]) -> ImageRecord:
        path = Path(r[2])
        if r[3]:
            path = self.path / path
        grid = None if r[10] is None else Grid(int(r[10]), int(r[11]), float(r[12]))
        return ImageRecord(
            id=r[0],
            name=r[1],
            path=path,
            width=r[6],
            height=r[7],
            format=r[8],
            split=r[9],
            grid=grid,
            hash=r[4],
            size=r[5],
            copied=bool(r[3]),
        )

    def add_image(
        self,
        source: ImageSourceLike,
        split: str = "train",
        copy: bool = True,
        name: str | None = None,
    ) -> ImageRecord:
        """Add one image: a file path, the bytes of an image file (an upload), or an
        ``(H, W)``/``(H, W, 3|4)`` uint8 array (a webcam frame, stored as PNG).

        The header is read and checked (size, format, completeness); pixels are not
        decoded. ``copy=True`` copies the file under ``images/``; ``copy=False``
        keeps a reference to the original. The original file is never modified.
        """
        return self.add_images([source], split=split, copy=copy, names=None if name is None else [name])[0]

    def add_images(
        self,
        sources: Iterable[ImageSourceLike],
        split: str = "train",
        copy: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[ImageRecord]:
        """Add several images all-or-nothing: if any file is bad, none is added."""
        split = _check_split(split)
        sources = list(sources)
        if names is not None and len(names) != len(sources):
            raise ValueError(f"got {len(names)} names for {len(sources)} images")
        with self._staging() as staged:
            entries = [
                self._stage_image(src, copy, None if names is None else names[i], staged)
                for i, src in enumerate(sources)
            ]
            with self._db.write() as cx:
                ids = self._insert_images(cx, entries, split, staged)
        records = [self.image(i) for i in ids]
        self._emit("images", action="added", images=records)
        return records

    @contextlib.contextmanager
    def _staging(self) -> Iterator[list[Path]]:
        """Files written under images/ by one call; removed again if the call fails."""
        staged: list[Path] = []
        try:
            yield staged
        except BaseException:
            for p in staged:
                p.unlink(missing_ok=True)
            raise

    def _insert_images(
        self, cx: sqlite3.Connection, entries: list[dict[str, Any]], split: str, staged: list[Path]
    ) -> list[int]:
        """Insert staged images inside the caller's transaction; returns their ids."""
        seen: set[str] = set()
        for e in entries:
            if e["name"] in seen:
                raise PathError(f"two images being added are named {e['name']!r}; give them distinct names")
            seen.add(e["name"])
            if cx.execute("SELECT 1 FROM images WHERE name = ?", (e["name"],)).fetchone():
                raise PathError(
                    f"{e['origin']}: the project already has an image named {e['name']!r}; "
                    "rename the file or pass name=..."
                )
        added_at = time.time()
        ids = []
        for e in entries:
            cur = cx.execute(
                "INSERT INTO images(name, path, copied, hash, size, width, height, format, split, added) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e["name"],
                    e["stored"],
                    int(e["copied"]),
                    e["hash"],
                    e["size"],
                    e["width"],
                    e["height"],
                    e["format"],
                    split,
                    added_at,
                ),
            )
            ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
        for e in entries:  # temporary names become final inside the transaction
            if e["copied"]:
                final = self.path / e["stored"]
                (self.path / e["tmp"]).replace(final)
                staged.append(final)
        return ids

    def _stage_image(
        self, source: ImageSourceLike, copy: bool, name: str | None, staged: list[Path]
    ) -> dict[str, Any]:
        images_dir = self.path / "images"
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(staged)}"
        data: bytes | None = None
        if isinstance(source, (bytes, bytearray)):
            name = safe_image_name(name or f"upload-{stamp}")
            origin, data = f"uploaded image {name!r}", bytes(source)
        elif isinstance(source, np.ndarray):
            name = safe_image_name(name or f"frame-{stamp}.png")
            origin, data = f"frame {name!r}", _encode_png(source, name)
        else:
            src = Path(source).expanduser()
            if not src.is_file():
                raise ImageReadError(f"{src}: no such image file", src)
            name = safe_image_name(name or src.name)
            origin = str(src)
        if self._db.scalar("SELECT 1 FROM images WHERE name = ?", (name,)):
            raise PathError(
                f"{origin}: the project already has an image named {name!r}; rename the file or pass name=..."
            )
        tmp = images_dir / f".incoming-{time.time_ns()}-{len(staged)}"
        if data is not None:  # bytes are written first: the probe reads a file
            atomic_write_bytes(tmp, data, fsync=False)
            staged.append(tmp)
            copy, probe_path = True, tmp
        else:
            probe_path = src
        try:
            info = probe_image(probe_path)  # headers only; refuses a bad file before any copy
        except ImageReadError as exc:
            raise type(exc)(f"{origin}: {_strip_path(str(exc), probe_path)}", origin) from exc
        if data is None:
            if copy:
                copy_atomic(src, tmp)
                staged.append(tmp)
            else:
                tmp = src.resolve()
        stored = f"images/{name}" if copy else str(tmp)
        if copy and (self.path / stored).exists():
            raise PathError(f"{origin}: a file named {name!r} already exists in {images_dir}")
        return {
            "name": name,
            "origin": origin,
            "copied": copy,
            "stored": stored,
            "tmp": str(tmp.relative_to(self.path)) if copy else None,
            "hash": content_hash(tmp),
            "size": tmp.stat().st_size,
            "width": int(info.width),
            "height": int(info.height),
            "format": str(info.format),
        }

    def remove_image(self, image: ImageLike) -> None:
        """Remove an image with its boxes and predictions; a copied file is deleted too."""
        rec = self.image(image)
        with self._db.write() as cx:
            cx.execute("DELETE FROM images WHERE id = ?", (rec.id,))
        if rec.copied:
            rec.path.unlink(missing_ok=True)
        self._emit("images", action="removed", images=[rec])

    def set_split(self, image: ImageLike, split: str) -> ImageRecord:
        rec = self.image(image)
        with self._db.write() as cx:
            cx.execute("UPDATE images SET split = ? WHERE id = ?", (_check_split(split), rec.id))
        new = self.image(rec.id)
        self._emit("images", action="split", images=[new])
        return new

    def open_image(self, image: ImageLike, cache_bytes: int | None = None) -> ImageSource:
        """The image's pixels through a bounded-memory reader (derived caches under cache/).

        ``cache_bytes`` gives this reader a private decoded-tile cache of that size
        instead of the shared one (a one-pass stream needs little).
        """
        rec = self.image(image)
        if not rec.path.is_file():
            raise ImageReadError(
                f"{rec.path}: the file of image {rec.name!r} is missing (was it moved or deleted?)", rec.path
            )
        return open_image(rec.path, cache_dir=self.path / "cache", cache_bytes=cache_bytes)

    # -- annotations ----------------------------------------------------------
    def annotations(self, image: ImageLike) -> Detections:
        """The image's boxes: ``xyxy`` in image pixels, ``class_id`` = category ids, ``ids`` = box ids."""
        rec = self.image(image)
        rows = self._db.cx.execute(
            "SELECT id, category_id, x1, y1, x2, y2 FROM annotations WHERE image_id = ? ORDER BY id",
            (rec.id,),
        ).fetchall()
        if not rows:
            return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), None, np.zeros(0, np.int64))
        a = np.asarray(rows, dtype=np.float64)
        return Detections(a[:, 2:6], a[:, 1].astype(np.int64), None, a[:, 0].astype(np.int64))

    def add_box(self, image: ImageLike, category: CategoryLike, xyxy: npt.ArrayLike) -> int:
        """Add one box (pixels of the full image); returns its id.

        A box partly outside the image is clipped to it; an inverted or empty box,
        or one wholly outside the image, is refused with :class:`AnnotationError`.
        """
        return int(self.add_boxes(image, category, np.asarray(xyxy, dtype=np.float64).reshape(1, 4))[0])

    def add_boxes(
        self, image: ImageLike, categories: Sequence[CategoryLike] | CategoryLike, xyxy: npt.ArrayLike
    ) -> np.ndarray:
        """Add many boxes to one image in one transaction; returns their ids ``(N,)``."""
        rec = self.image(image)
        boxes, _ = clip_checked(
            np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), rec.image_wh, f"image {rec.name!r}"
        )
        cat_ids = self._category_ids(categories, len(boxes))
        if len(cat_ids) != len(boxes):
            raise ValueError(f"got {len(cat_ids)} categories for {len(boxes)} boxes")
        with self._db.write() as cx:
            first = cx.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0]
            ids = np.arange(first, first + len(boxes), dtype=np.int64)
            cx.executemany(
                "INSERT INTO annotations(id, image_id, category_id, x1, y1, x2, y2, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'manual')",
                [(int(i), rec.id, int(c), *b) for i, c, b in zip(ids, cat_ids, boxes.tolist())],
            )
        self._emit("annotations", action="added", image=rec, ids=ids)
        return ids

    def update_box(
        self, box_id: int, xyxy: npt.ArrayLike | None = None, category: CategoryLike | None = None
    ) -> None:
        """Move/resize a box and/or change its category."""
        row = self._db.cx.execute("SELECT image_id FROM annotations WHERE id = ?", (int(box_id),)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no box with id {box_id}")
        rec = self.image(int(row[0]))
        with self._db.write() as cx:
            if xyxy is not None:
                b = clip_checked(
                    np.asarray(xyxy, dtype=np.float64).reshape(1, 4), rec.image_wh, f"image {rec.name!r}"
                )[0][0]
                cx.execute(
                    "UPDATE annotations SET x1=?, y1=?, x2=?, y2=?, src_w=NULL, src_h=NULL WHERE id=?",
                    (*b.tolist(), int(box_id)),
                )
            if category is not None:
                cx.execute(
                    "UPDATE annotations SET category_id = ? WHERE id = ?",
                    (self.category(category).id, int(box_id)),
                )
        self._emit("annotations", action="updated", image=rec, ids=np.array([box_id]))

    def delete_box(self, box_id: int) -> None:
        row = self._db.cx.execute("SELECT image_id FROM annotations WHERE id = ?", (int(box_id),)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no box with id {box_id}")
        with self._db.write() as cx:
            cx.execute("DELETE FROM annotations WHERE id = ?", (int(box_id),))
        self._emit("annotations", action="deleted", image=self.image(int(row[0])), ids=np.array([box_id]))

    def box_counts(self, split: str | None = None) -> dict[str, int]:
        """Boxes per category name (over one split or all)."""
        sql = (
            "SELECT c.name, count(a.id) FROM categories c LEFT JOIN annotations a ON a.category_id = c.id "
            "LEFT JOIN images i ON i.id = a.image_id "
        )
        if split is None:
            rows = self._db.cx.execute(sql + "GROUP BY c.id ORDER BY c.id").fetchall()
        else:
            rows = self._db.cx.execute(
                sql.replace(
                    "LEFT JOIN images i ON i.id = a.image_id",
                    "LEFT JOIN images i ON i.id = a.image_id AND i.split = ?",
                )
                + "GROUP BY c.id ORDER BY c.id",
                (_check_split(split),),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # -- grid ("Divide") --------------------------------------------------------
    def set_grid(self, image: ImageLike, rows: int, cols: int, overlap: float = 0.0) -> ImageRecord:
        """Divide an image into ``rows`` x ``cols`` tiles; the file itself is never altered."""
        rec = self.image(image)
        tile_windows(rec.image_wh, rows, cols, overlap)  # validates
        with self._db.write() as cx:
            cx.execute(
                "UPDATE images SET grid_rows = ?, grid_cols = ?, grid_overlap = ? WHERE id = ?",
                (int(rows), int(cols), float(overlap), rec.id),
            )
        new = self.image(rec.id)
        self._emit("grid", image=new)
        return new

    def clear_grid(self, image: ImageLike) -> ImageRecord:
        rec = self.image(image)
        with self._db.write() as cx:
            cx.execute(
                "UPDATE images SET grid_rows = NULL, grid_cols = NULL, grid_overlap = NULL WHERE id = ?",
                (rec.id,),
            )
        new = self.image(rec.id)
        self._emit("grid", image=new)
        return new

    def suggest_grid(self, image: ImageLike, tile_size: int = 1000) -> tuple[int, int]:
        """Rows and cols giving tiles of about ``tile_size`` pixels a side."""
        rows, cols = _suggest_grid(self.image(image).image_wh, tile_size)
        return int(rows), int(cols)

    def tiles(self, image: ImageLike) -> list[tuple[int, int, int, int]]:
        """The image's tile windows ``(x, y, w, h)``; the whole image when it has no grid."""
        rec = self.image(image)
        if rec.grid is None:
            return [(0, 0, rec.width, rec.height)]
        windows = tile_windows(rec.image_wh, rec.grid.rows, rec.grid.cols, rec.grid.overlap)
        return [tuple(int(v) for v in w) for w in windows]  # type: ignore[misc]

    # -- the prediction threshold ----------------------------------------------
    @property
    def threshold(self) -> float:
        """The confidence threshold (the slider) applied to stored predictions.

        The user's value once one is set (``project.threshold = 0.7``, or a move of
        the Predict slider); until then the best-F1 threshold of the newest evaluation
        (``report.best_threshold``), so each evaluation moves it; before any, 0.5.
        Both are kept in the project. ``project.threshold = None`` forgets the user's
        value and follows the evaluations again.
        """
        user = self._db.get_meta(USER_THRESHOLD_KEY)
        if user is not None:
            return float(user)
        evaluated = self._db.get_meta(EVALUATED_THRESHOLD_KEY)
        return DEFAULT_THRESHOLD if evaluated is None else float(evaluated)

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"threshold must lie in [0, 1] (or None to follow the evaluations), got {value}"
                )
        self._db.set_meta(USER_THRESHOLD_KEY, value)  # None is stored as JSON null: not set
        self._emit("threshold", value=self.threshold)

    def _set_evaluated_threshold(self, value: float) -> None:
        """Record the newest evaluation's best-F1 threshold (joins the caller's transaction).

        The caller emits "threshold" after its commit when :attr:`threshold` moved.
        """
        self._db.set_meta(EVALUATED_THRESHOLD_KEY, float(value))

    # -- jobs ------------------------------------------------------------------
    @property
    def jobs(self) -> list[Any]:
        """Every job started in this session, oldest first."""
        return self._jobs.jobs

    def run_dir(self, run_id: int) -> Path:
        d = self.path / "runs" / str(int(run_id))
        d.mkdir(parents=True, exist_ok=True)
        return d


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def _check_name(name: str, what: str) -> str:
    name = str(name).strip()
    if not name:
        raise CategoryError(f"a {what} name must not be empty")
    return name


def _check_color(color: str) -> str:
    c = str(color)
    if not (c.startswith("#") and len(c) in (4, 7) and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])):
        raise CategoryError(f"colour {color!r} is not a hex colour like '#e6194b'")
    return c


def clip_checked(
    boxes: np.ndarray, image_wh: tuple[int, int], where: str, error: type[DeepBlockError] = AnnotationError
) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``(N, 4)`` boxes to the image; refuse non-finite, inverted, empty or wholly outside ones.

    Returns:
        ``(N, 4)`` clipped boxes and an ``(N,)`` mask of the boxes clipping changed.

    Raises:
        ``error`` naming ``where`` and the first bad box.
    """
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise error(f"{where}: box {i} {boxes[i].tolist()} has coordinates that are not finite numbers")
    inverted = ~valid_boxes(boxes)
    if inverted.any():
        i = int(np.argmax(inverted))
        raise error(f"{where}: box {i} {boxes[i].tolist()} is inverted or empty (need x2 > x1 and y2 > y1)")
    clipped = clip_boxes(boxes, image_wh)
    outside = ~valid_boxes(clipped)
    if outside.any():
        i = int(np.argmax(outside))
        raise error(
            f"{where}: box {i} {boxes[i].tolist()} lies outside the image "
            f"({image_wh[0]} x {image_wh[1]} pixels)"
        )
    return clipped, (clipped != boxes).any(axis=1)


def _encode_png(frame: np.ndarray, name: str) -> bytes:
    from PIL import Image

    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(
            f"frame {name!r}: expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), "
            f"got {arr.dtype} {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"frame {name!r}: the array is empty ({arr.shape})")
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _strip_path(message: str, path: Path) -> str:
    return message.replace(f"{path}: ", "").replace(str(path), "the file")
