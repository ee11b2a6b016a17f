"""The Project: one facade over the data, training and prediction of a project folder.

It checks its arguments, calls the store's repositories (all SQL lives in
``store/``) or the services that train, predict and import (``_training.py``,
``_prediction.py``, ``_annotations.py``), and announces each change once it has
committed. Every widget action and every cell call goes through these methods.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.tiling import suggest_grid as _suggest_grid
from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.errors import (
    ArgumentError,
    ProjectError,
    ProjectExistsError,
    ProjectNotFoundError,
    RecordNotFoundError,
)
from deepblock_nb.io.display import Display
from deepblock_nb.io.images import ImageSource
from deepblock_nb.jobs import Job, JobQueue
from deepblock_nb.project._annotations import AnnotationIO, ImportReport
from deepblock_nb.project._checks import (
    box_array,
    category_id_array,
    check_color,
    check_name,
    check_split,
    check_threshold,
    clip_checked,
)
from deepblock_nb.project._images import ImageService
from deepblock_nb.project._prediction import Prediction
from deepblock_nb.project._proposals import ModelAssisted
from deepblock_nb.project._threshold import ThresholdSetting
from deepblock_nb.project._training import Training
from deepblock_nb.store import Category, Database, Events, Grid, ImageRecord, Store
from deepblock_nb.store.files import ImageSourceLike, Staging

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.core.metrics import EvaluationReport

__all__ = ["CategoryLike", "ImageLike", "Project"]

DB_NAME = "project.db"
#: meta keys of the threshold: the user's value (the key older projects already use for
#: it) and the best-F1 threshold of the newest evaluation, the start until the user sets one
CategoryLike = Category | int | str
ImageLike = ImageRecord | int | str


class Project(ModelAssisted, ThresholdSetting):
    """A deepblock_nb project folder: ``Project.create(path, categories=[...])`` or ``Project.open(path)``.

    Layout on disk::

        project.db   SQLite (WAL): categories, images, boxes, grids, runs, predictions
        images/      imported images (copies; ``copy=False`` keeps a reference)
        cache/       derived tiled caches of images without random access; deletable
        runs/<id>/   config.json, last.pt, best.pt

    Every change is one transaction; a killed kernel leaves everything committed
    before it. The object is safe to use from cells and background jobs at once.
    """

    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self._db = db
        self._store = Store(db, path)
        self._events = Events()
        self._jobs = JobQueue(name=f"deepblock-jobs-{path.name}")
        self._jobs.on_job(lambda job: self._emit("jobs", job=job))
        self._images = ImageService(self)
        self._training = Training(self)
        self._prediction = Prediction(self)
        self._annotation_io = AnnotationIO(self)

    # -- opening --------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, categories: Sequence[str] = ()) -> Project:
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
            with project._store.write():
                for name in categories:
                    project.add_category(name)
        return project

    @classmethod
    def open(cls, path: str | Path) -> Project:
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

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        try:
            n = self._store.images.count()
            return f"<Project {str(self.path)!r}: {len(self.categories)} categories, {n} images>"
        except ProjectError:
            return f"<Project {str(self.path)!r} (closed)>"

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    def app(self) -> Any:
        """The whole workbench in one widget: TRAIN (Preprocess, Divide, Train), EVALUATE, PREDICT."""
        # imported by name: the widgets layer sits above the project
        return importlib.import_module("deepblock_nb.widgets").App(self)

    # -- events ---------------------------------------------------------------
    def on(self, topic: str, callback: Callable[..., None]) -> Callable[[], None]:
        """Subscribe to changes: "images", "annotations", "categories", "predictions",
        "jobs", "runs", "grid", "threshold", "proposals" (payloads: ``store.events.PAYLOADS``).

        ``callback(topic=..., **payload)`` runs after the change has committed, on
        the thread that made it (a cell's, or a background job's). Returns a
        function that unsubscribes.
        """
        return self._events.on(topic, callback)

    def _emit(self, topic: str, **payload: Any) -> None:
        """Announce a change once this thread's transaction commits (at once outside one);
        a rolled-back change announces nothing."""
        from deepblock_nb.store.events import check_payload

        check_payload(topic, payload)  # here, so a wrong payload fails where it is built
        self._db.after_commit(lambda: self._events.emit(topic, **payload))

    # -- categories -----------------------------------------------------------
    @property
    def categories(self) -> list[Category]:
        """Every category (id, name, colour), in the order they were added."""
        return self._store.categories.all()

    def category(self, category: CategoryLike) -> Category:
        """Look up a category by record, id or name."""
        if isinstance(category, Category):
            category = category.id
        if isinstance(category, (int, np.integer)):
            found = self._store.categories.by_id(int(category))
        elif isinstance(category, str):
            found = self._store.categories.by_name(category)
        else:
            raise ArgumentError(f"a category is given by record, id or name, not {type(category).__name__}")
        if found is None:
            known = ", ".join(c.name for c in self.categories) or "none yet"
            raise RecordNotFoundError(f"no category {category!r} in this project (known: {known})")
        return found

    def add_category(self, name: str, color: str | None = None) -> Category:
        """Add a category; ``color`` is a hex colour such as ``"#e6194b"`` (default: the next of a palette)."""
        name = check_name(name, "category")
        cat = self._store.categories.add(name, None if color is None else check_color(color))
        self._emit("categories", action="added", category=cat)
        return cat

    def rename_category(self, category: CategoryLike, name: str) -> Category:
        new = self._store.categories.rename(self.category(category), check_name(name, "category"))
        self._emit("categories", action="renamed", category=new)
        return new

    def recolor_category(self, category: CategoryLike, color: str) -> Category:
        new = self._store.categories.recolor(self.category(category), check_color(color))
        self._emit("categories", action="recolored", category=new)
        return new

    def remove_category(self, category: CategoryLike, force: bool = False) -> None:
        """Remove a category; one that still has boxes needs ``force=True`` (its boxes go too)."""
        cat = self.category(category)
        with self._store.write():
            n = self._store.categories.remove(cat, force=force)
            self._emit("categories", action="removed", category=cat)
            if n:
                self._emit("annotations", action="deleted", image=None, ids=None)

    # -- images ---------------------------------------------------------------
    def images(self, split: str | None = None) -> list[ImageRecord]:
        """The project's images, optionally of one split, in the order they were added."""
        return self._store.images.all(None if split is None else check_split(split))

    def image(self, image: ImageLike) -> ImageRecord:
        """Look up an image by record, id or name."""
        if isinstance(image, ImageRecord):
            image = image.id
        if isinstance(image, (int, np.integer)):
            found = self._store.images.by_id(int(image))
        elif isinstance(image, str):
            found = self._store.images.by_name(image)
        else:
            raise ArgumentError(f"an image is given by record, id or name, not {type(image).__name__}")
        if found is None:
            raise RecordNotFoundError(f"no image {image!r} in this project")
        return found

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
        return self._images.add_images(sources, split, copy, names)

    def _staging(self) -> Staging:
        return self._images.staging()

    def _insert_images(self, staging: Staging, entries: list[dict[str, Any]], split: str) -> list[int]:
        """Record staged images inside the caller's transaction and announce them after it."""
        return self._images.insert(staging, entries, split)

    def remove_image(self, image: ImageLike) -> None:
        """Remove an image with its boxes and predictions; a copied file is deleted too."""
        rec = self.image(image)
        self._store.images.remove(rec.id)
        if rec.copied:
            rec.path.unlink(missing_ok=True)
        self._emit("images", action="removed", images=[rec])

    def set_split(self, image: ImageLike, split: str) -> ImageRecord:
        rec = self.image(image)
        self._store.images.set_split(rec.id, check_split(split))
        new = self.image(rec.id)
        self._emit("images", action="split", images=[new])
        return new

    def set_reviewed(self, image: ImageLike, reviewed: bool = True, tile: Any = None) -> ImageRecord:
        """Mark an image done (``reviewed=True``; False unmarks): its boxes, even none, are all the
        objects it holds. A reviewed image without boxes is a true negative: its tiles train as
        background and Evaluate counts boxes predicted on it as false positives. Images neither reviewed
        nor labelled are left out of both (they may simply not be labelled yet).

        ``tile`` marks one tile of the grid instead (ArgumentError without a grid or out of range): an
        index into :meth:`tiles` (row-major) or ``(row, col)``, stored as its window
        (:meth:`reviewed_tiles`), so it keeps its meaning when the grid changes. Until the whole image is
        reviewed, training reads only its tiles holding boxes and those inside reviewed tiles, and
        Evaluate scores it only inside its reviewed tiles (boxes centred there). Event: "images",
        action "tile_reviewed"."""
        return self._images.set_reviewed(image, reviewed, tile)

    def reviewed_tiles(self, image: ImageLike) -> list[tuple[int, int, int, int]]:
        """Windows ``(x, y, w, h)`` (image pixels) of the image's reviewed tiles, top to bottom."""
        windows = self._store.reviews.of_image(self.image(image).id)
        return [tuple(int(v) for v in w) for w in windows]  # type: ignore[misc]

    def open_image(self, image: ImageLike, cache_bytes: int | None = None) -> ImageSource:
        """The image's pixels through a bounded-memory reader (derived caches under cache/),
        converted to 8-bit RGB under its display setting (:meth:`display`).

        ``cache_bytes`` gives this reader a private decoded-tile cache of that size
        instead of the shared one (a one-pass stream needs little).
        """
        return self._images.open_image(image, cache_bytes)

    def set_display(self, image: ImageLike, bands: Any = None, window: Any = None) -> ImageRecord:
        """Choose how an image's samples are shown, and so read by training and prediction.

        Args:
            bands: 3 band indices shown as red, green, blue, or 1 shown as grey; None: the default
                (the file's colours; bands 0, 1, 2 of a greyscale image of 3 or more bands wider than 8 bits).
            window: the intensity window in sample units, mapped linearly lo -> 0, hi -> 255 and clipped:
                ``(lo, hi)`` for every shown band, a list of one ``(lo, hi)`` per shown band, or "auto"
                (None): robust percentiles (0.5 %, 99.5 %) of the raw samples of a small overview for
                samples wider than 8 bits; 8-bit images are read as they are.

        Raises DisplayError (an ArgumentError) naming the image and the problem (a band it lacks,
        lo >= hi, a non-finite bound, a palette image); nothing is changed then. Event: "images", action
        "display". Rules: ``deepblock_nb.io.display``.
        """
        return self._images.set_display(image, bands, window)

    def display(self, image: ImageLike) -> Display:
        """The effective display setting of an image: the bands and the window every read applies
        (the "auto" window measured once and kept in the project)."""
        return self._images.display(image)

    # -- annotations ----------------------------------------------------------
    def annotations(self, image: ImageLike) -> Detections:
        """The image's boxes: ``xyxy`` in image pixels, ``class_id`` = category ids, ``ids`` = box ids."""
        return self._store.annotations.of_image(self.image(image).id)

    def annotation_sources(self, box_ids: Sequence[int] | npt.ArrayLike) -> dict[int, str]:
        """``{box id: source}`` ("manual", "imported", ...) of the boxes of ``box_ids`` that exist."""
        ids = np.asarray(box_ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ArgumentError(f"box ids are ints, not {ids.dtype}")
        return self._store.annotations.sources(ids.tolist())

    def add_box(
        self, image: ImageLike, category: CategoryLike, xyxy: npt.ArrayLike, *, source: str = "manual"
    ) -> int:
        """Add one box (pixels of the full image); returns its id.

        A box partly outside the image is clipped to it; an inverted or empty box,
        or one wholly outside the image, is refused with :class:`AnnotationError`.
        ``source`` says where it came from ("manual": drawn; see :meth:`annotation_sources`).
        """
        return int(self.add_boxes(image, category, box_array(xyxy, "box").reshape(1, 4), source=source)[0])

    def add_boxes(
        self, image: ImageLike, categories: Sequence[CategoryLike] | CategoryLike, xyxy: npt.ArrayLike, *,
        source: str = "manual",
    ) -> np.ndarray:  # fmt: skip
        """Add many boxes to one image in one transaction; returns their ids ``(N,)``."""
        if not isinstance(source, str) or not source.strip():
            raise ArgumentError(f"a box's source is a non-empty string, not {source!r}")
        rec = self.image(image)
        boxes, _ = clip_checked(box_array(xyxy, "boxes").reshape(-1, 4), rec.image_wh, f"image {rec.name!r}")
        cat_ids = category_id_array(categories, len(boxes), self.categories, self.category)
        if len(cat_ids) != len(boxes):
            raise ArgumentError(f"got {len(cat_ids)} categories for {len(boxes)} boxes")
        ids = self._store.annotations.add(rec.id, cat_ids, boxes, source=source.strip())
        self._emit("annotations", action="added", image=rec, ids=ids)
        return ids

    def update_box(
        self, box_id: int, xyxy: npt.ArrayLike | None = None, category: CategoryLike | None = None
    ) -> None:
        """Move/resize a box and/or change its category."""
        rec = self._box_image(box_id)
        box = None
        if xyxy is not None:
            clipped, _ = clip_checked(
                box_array(xyxy, "box").reshape(1, 4), rec.image_wh, f"image {rec.name!r}"
            )
            box = clipped[0]
        cat_id = None if category is None else self.category(category).id
        self._store.annotations.update(int(box_id), box, cat_id)
        self._emit("annotations", action="updated", image=rec, ids=np.array([int(box_id)]))

    def delete_box(self, box_id: int) -> None:
        """Delete one box by its id (``RecordNotFoundError`` if there is none)."""
        rec = self._box_image(box_id)
        self._store.annotations.delete(int(box_id))
        self._emit("annotations", action="deleted", image=rec, ids=np.array([int(box_id)]))

    def _box_image(self, box_id: int) -> ImageRecord:
        if not isinstance(box_id, (int, np.integer)) or isinstance(box_id, bool):
            raise ArgumentError(f"a box is given by its id (an int), not {type(box_id).__name__}")
        image_id = self._store.annotations.image_of(int(box_id))
        if image_id is None:
            raise RecordNotFoundError(f"no box with id {box_id}")
        return self.image(image_id)

    def image_box_counts(self) -> dict[int, int]:
        """Boxes per image id, in one query; images without boxes are absent (0)."""
        return self._store.annotations.counts_by_image()

    def box_counts(self, split: str | None = None) -> dict[str, int]:
        """Boxes per category name (over one split or all)."""
        return self._store.categories.box_counts(None if split is None else check_split(split))

    # -- annotation files --------------------------------------------------------
    def import_annotations(
        self,
        path: str | Path,
        format: str = "coco",
        images_dir: str | Path | None = None,
        split: str = "train",
        classes: list[str] | str | Path | None = None,
        copy: bool = True,
    ) -> ImportReport:
        """Import boxes (and the images they need) from an annotation file or folder.

        Args:
            path: a COCO JSON file; a folder of YOLO ``.txt`` labels; a VOC ``.xml``
                file or a folder of them.
            format: ``"coco"``, ``"yolo"`` or ``"voc"``.
            images_dir: where the image files named in the annotations lie, for
                images the project does not have yet (default: the folder of
                ``path``). Names that point outside it (``../``) are refused.
            split: the split of newly added images.
            classes: YOLO only: class names, or a ``classes.txt`` / ``data.yaml`` path.
            copy: copy new images into the project (``False`` keeps references).

        Images already in the project are matched by file name; their boxes are
        added to the existing ones. All-or-nothing: on any error nothing is written
        and nothing is announced.
        """
        return self._annotation_io.import_annotations(
            path, format, images_dir, check_split(split), classes, copy
        )

    def export_annotations(self, path: str | Path, format: str = "coco", split: str | None = None) -> Path:
        """Write the project's boxes: a COCO JSON file, a folder for YOLO / VOC, or a map file
        (``"geojson"`` or ``"gpkg"``, as :meth:`export_predictions` without scores).

        COCO keeps the project's category and image ids (and imported info and licenses); boxes
        imported from COCO and not edited since are written with exactly the floats they came with.
        YOLO: an Ultralytics dataset (``data.yaml``, ``images/`` and ``labels/`` per split; see
        ``project._annotations.AnnotationIO.export_annotations``).
        """
        return self._annotation_io.export_annotations(
            path, format, None if split is None else check_split(split)
        )

    # -- grid ("Divide") --------------------------------------------------------
    def set_grid(self, image: ImageLike, rows: int, cols: int, overlap: float = 0.0) -> ImageRecord:
        """Divide an image into ``rows`` x ``cols`` tiles; the file itself is never altered."""
        rec = self.image(image)
        tile_windows(rec.image_wh, rows, cols, overlap)  # validates
        self._store.images.set_grid(rec.id, Grid(int(rows), int(cols), float(overlap)))
        new = self.image(rec.id)
        self._emit("grid", image=new)
        return new

    def clear_grid(self, image: ImageLike) -> ImageRecord:
        rec = self.image(image)
        self._store.images.set_grid(rec.id, None)
        new = self.image(rec.id)
        self._emit("grid", image=new)
        return new

    def suggest_grid(self, image: ImageLike, tile_size: int = 1000) -> tuple[int, int]:
        """Rows and cols giving tiles of about ``tile_size`` pixels a side."""
        rows, cols = _suggest_grid(self.image(image).image_wh, tile_size)
        return int(rows), int(cols)

    def tiles(self, image: ImageLike) -> list[tuple[int, int, int, int]]:
        """The image's tile windows ``(x, y, w, h)``; the whole image when it has no grid."""
        windows = self.image(image).windows()
        return [tuple(int(v) for v in w) for w in windows]  # type: ignore[misc]

    # -- training ------------------------------------------------------------------
    def train(
        self,
        epochs: int | None = None,
        model: Any = "auto",
        batch_size: int | None = None,
        lr: float | None = None,
        device: str = "auto",
        resume: bool | int = False,
        weights: str | Path | None = None,
        download: bool | None = None,
        **options: Any,
    ) -> Job:
        """Train a detector on the train split's tiles in the background.

        Returns at once with a Job: ``job.status``, ``job.progress``, ``job.history`` (a DataFrame: one row
        per step with the loss and its parts, one per epoch with the loss, the training score and seconds),
        ``job.stop()`` (ends within one batch, keeping a resumable ``last.pt``), ``job.wait()``.
        ``job.result`` is the run id. A train asked for while another job runs waits its turn; one stopped
        before it started leaves its run "stopped".

        Images of the train split without boxes train only when marked reviewed (:meth:`set_reviewed`, true
        negatives), or in their reviewed tiles; others may not be labelled yet.

        The training score is mAP@0.5 measured each epoch on a fixed held-out part of the labelled train
        images (whole images; the history's ``score_on`` column says what), and ``best.pt`` is the best epoch
        there. The evaluate split is never read while training: Evaluate alone scores on it.

        How many epochs: by default the trainer decides (at most about 15 with ~1000 boxes per category, more
        for few labels, ending with a short decay once the held-out score stops rising). When the score stops
        rising, label more boxes rather than train longer.

        Args:
            epochs: epochs to run; None (default) lets the trainer decide; with ``resume``, the rest of
                the planned epochs, or this many more.
            model: ``"auto"`` (the small preset on a CPU), a preset name (see
                ``deepblock_nb.ml.models.list_presets()``) or a torch detection module.
            batch_size: None takes the preset's default (or, with ``resume``, the run's saved value).
            lr: the peak learning rate; None takes the preset's default (or, with ``resume``, the run's
                saved value).
            device: ``"auto"`` (CUDA, then MPS, else CPU), ``"cpu"``, ``"cuda"``, ...
            resume: True continues the newest run from its ``last.pt``; a run id continues that run.
                Settings not passed keep the run's saved values; those passed (even defaults) replace them.
            weights: a local weights file to start from (detector or backbone).
            download: fetch missing pretrained weights (None: on unless ``DEEPBLOCK_DOWNLOAD_WEIGHTS=0``).
            **options: more settings of :class:`deepblock_nb.ml.train.TrainConfig` (``tile_size``,
                ``patience``, ``augment``, ``empty_rate``, ``holdout``, ``num_workers``, ``seed``, ...), and
                ``devices=N``: train with N processes (DistributedDataParallel) launched by torchrun in a
                subprocess, one run whose history streams back (see the cluster page of the documentation).
        """
        given = {
            k: v
            for k, v in (("batch_size", batch_size), ("lr", lr), ("weights", weights), ("download", download))
            if v is not None
        }
        return self._training.train(epochs, model, device, resume, {**given, **options})

    def runs(self) -> pd.DataFrame:
        """Every training run: id, model, status, epochs done, best score, times, config."""
        return self._training.runs()

    def run_history(self, run_id: int) -> pd.DataFrame:
        """A run's stored history, one row per logged step, epoch and final choice (``kind``), in order."""
        return self._training.history(run_id)

    def run_dir(self, run_id: int) -> Path:
        d = self.path / "runs" / str(int(run_id))
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- predict and evaluate --------------------------------------------------------
    def predict(
        self,
        images: Iterable[Any] | Any | None = None,
        accurate: bool = False,
        run: int | None = None,
        *,
        batch_size: int | None = None,
        device: str = "auto",
        model: Any = None,
        client: Any = None,
    ) -> Job:
        """Predict the predict split (or ``images``) in the background; returns the Job.

        Each image is cut into its grid's tiles (or an automatic grid of about the model's input size), each
        tile read with a margin of context and keeping the boxes centred in it, predicted in batches and
        merged across tile seams (``ml.predict``). ``accurate=True`` ("More accurate") widens the margin, adds
        a mirrored pass of every tile fused with the first and, for objects larger than a tile, a full-image
        pass at reduced scale. Predictions are stored per image at a score floor (``ml.predict.SCORE_FLOOR``)
        and become the image's current ones; ``project.threshold`` filters them. ``job.stop()`` ends within
        one batch and keeps the images already done. An image that cannot be read fails alone: the job then
        fails with an :class:`ImageFailures` naming each such image, the others stay stored. ``job.result`` is
        the list of predicted image ids. ``model``: the torch module of a run trained from a custom module
        (its weights come from the run). ``client``: a ``dask.distributed.Client``: images (and tile ranges of
        large ones) are predicted on its workers, which must reach the image files; this process merges and
        stores the results exactly as a local predict would (see the cluster page of the documentation).

        Raises:
            ModelError: no trained model (or ``run`` has no checkpoint).
            RecordNotFoundError: an unknown image or run.
            ArgumentError: nothing to predict.
        """
        return self._prediction.predict(images, accurate, run, batch_size, device, model, client=client)

    def evaluate(
        self,
        run: int | None = None,
        *,
        accurate: bool = False,
        batch_size: int | None = None,
        device: str = "auto",
        model: Any = None,
    ) -> Job:
        """Score a run on the labelled evaluate split in the background; ``job.result`` is the report.

        The images are predicted exactly as :meth:`predict` does (predictions are stored for the run) and
        scored by :func:`deepblock_nb.metrics.evaluate` against their boxes: the headline precision, recall
        and F1 at the best-F1 threshold, and ``report.at_threshold`` at ``project.threshold`` as it was when
        the evaluation started. The report is stored with the run (``project.evaluations(run)``), and its
        ``best_threshold`` becomes ``project.threshold`` unless the user has set one (a "threshold" event says
        so when it moves). Evaluate images without boxes are left out unless marked reviewed
        (:meth:`set_reviewed`: boxes predicted there are false positives); one with reviewed tiles only
        counts inside them. ``model``: as for :meth:`predict`.

        Raises:
            ArgumentError: no evaluate images, or none with boxes.
            ModelError: no trained model (or ``run`` has no checkpoint).
        """
        return self._prediction.evaluate(run, accurate, batch_size, device, model)

    def evaluations(self, run: int | None = None) -> list[EvaluationReport]:
        """The stored evaluation reports, oldest first (of one run, or of all)."""
        return self._prediction.evaluations(run)

    def evaluation_errors(self, threshold: float | None = None, run: int | None = None) -> pd.DataFrame:
        """The errors of the newest evaluation (of ``run``): one row per false positive, confusion and missed
        box, worst first (:class:`deepblock_nb.core.metrics.ErrorAnalysis`), over the images and stored
        predictions it scored, matched as its report counts them; ``threshold`` None: the report's (best F1).
        Columns: ``image`` (id), ``name``, ``kind``, ``truth``, ``predicted``, ``score``, ``iou``,
        ``truth_xyxy``, ``predicted_xyxy``, ``area``. Raises ArgumentError when there is no evaluation."""
        return self._prediction.errors(threshold, run).errors

    def confusion_matrix(self, threshold: float | None = None, run: int | None = None) -> pd.DataFrame:
        """Counts as :meth:`evaluation_errors` finds them: rows the true category and
        "background", columns the predicted category and "missed"; the diagonal is the TPs."""
        return self._prediction.errors(threshold, run).confusion

    def predictions(self, image: Any, threshold: float | None = None, run: int | None = None) -> Detections:
        """The image's stored predictions scoring ``>= threshold`` (default: ``project.threshold``).

        ``run`` None: the image's current predictions (those of the run that last predicted it; none after
        :meth:`clear_predictions`). Instant: the model is not run again. ``ids`` are the prediction record
        ids.
        """
        t = self.threshold if threshold is None else check_threshold(threshold)
        return self._store.predictions.of_image(self.image(image).id, run, min_score=t)

    def clear_predictions(self, image: Any = None) -> None:
        """Delete the stored predictions of one image, or of every image."""
        rec = None if image is None else self.image(image)
        self._store.predictions.clear(None if rec is None else rec.id)
        self._emit("predictions", action="cleared", image=rec, run=None)

    def statistics(self, split: str | None = "predict", threshold: float | None = None) -> pd.DataFrame:
        """Boxes per category (columns) per image (rows), with a ``total`` column and row.

        Counts the current predictions scoring ``>= threshold`` (default:
        ``project.threshold``) of the images of ``split`` (None: all images). Images without predictions count
        zero.
        """
        return self._prediction.statistics(split, threshold)

    def export_predictions(
        self,
        path: str | Path,
        format: str = "coco",
        *,
        split: str | None = "predict",
        threshold: float | None = None,
        reference_path: str | Path | None = None,
    ) -> Path:
        """Write the current predictions scoring ``>= threshold`` of ``split``'s images.

        ``format="coco"``: a COCO results list (``image_id``, ``category_id``, ``bbox`` xywh, ``score``) with
        the project's image and category ids, plus a reference file naming them (``reference_path``, default
        ``<name>.reference.json`` beside it; read both back with ``io.annotations.read_coco_results``).
        ``format="csv"``: one row per box, ``file_name, category, x1, y1, x2, y2, score``.
        ``format="geojson"``: RFC 7946, one Polygon per box in WGS 84 lon/lat for georeferenced GeoTIFFs
        (the ``geo`` extra: pyproj), in pixels with a top-level ``"note"`` for other images; ``"gpkg"``: a
        GeoPackage in each raster's own CRS (pyogrio). Properties: image, category, score, x1..y2.

        Returns:
            The path written.
        """
        return self._prediction.export_predictions(path, format, split, threshold, reference_path)

    # -- jobs ------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job]:
        """Every job started in this session, oldest first."""
        return self._jobs.jobs
