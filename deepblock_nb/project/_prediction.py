"""PredictionMixin: the Predict and Evaluate stages of a project.

Predictions are computed tile by tile (``ml.predict``), stored once per image and
run at a low score floor, and filtered by the threshold slider without running
the model again. Boxes are ``xyxy`` pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import DeepBlockError, FormatError, ImageFailures, JobError, ModelError
from deepblock_nb.store import ImageRecord

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.core.metrics import EvaluationReport
    from deepblock_nb.jobs import Job
    from deepblock_nb.ml.checkpoints import LoadedModel

__all__ = ["ImageFailures", "PredictionMixin"]

#: Boxes scoring below this are not stored (the slider cannot go lower).
SCORE_FLOOR = 0.05
CHECKPOINTS = ("best.pt", "last.pt")


STREAM_CACHE_BYTES = 64 * 2**20


class PredictionMixin:
    """Predict, evaluate, and read back stored predictions (mixed into ``Project``)."""

    # provided by ProjectCore
    path: Path
    _db: Any
    _jobs: Any
    categories: Any
    if TYPE_CHECKING:  # ProjectCore's property: the user's value, else the newest evaluation's

        @property
        def threshold(self) -> float: ...
        @threshold.setter
        def threshold(self, value: float | None) -> None: ...

    images: Callable[..., list[ImageRecord]]
    image: Callable[[Any], ImageRecord]
    annotations: Callable[[Any], Detections]
    open_image: Callable[..., Any]
    run_dir: Callable[[int], Path]
    _emit: Callable[..., None]
    _set_evaluated_threshold: Callable[[float], None]

    # -- the model of a run ----------------------------------------------------
    def _checkpoint(self, run: int | None) -> tuple[int, Path]:
        """The run and its checkpoint file: ``run``, else the newest trained run."""
        if run is not None:
            record = self._db.run(int(run))
            if record is None:
                from deepblock_nb.errors import RecordNotFoundError

                raise RecordNotFoundError(f"no run {run!r} in this project (see project.runs())")
            ckpt = self._checkpoint_file(int(run))
            if ckpt is None:
                raise ModelError(
                    f"run {run} has no checkpoint ({' or '.join(CHECKPOINTS)} in {self.path / 'runs' / str(run)}); "
                    "it was stopped before its first epoch ended, or its files were deleted"
                )
            return int(run), ckpt
        runs = sorted(self._db.runs(), key=lambda r: (r["status"] == "finished", r["id"]), reverse=True)
        for record in runs:
            ckpt = self._checkpoint_file(int(record["id"]))
            if ckpt is not None:
                return int(record["id"]), ckpt
        raise ModelError("no trained model in this project: train one first with project.train()")

    def _checkpoint_file(self, run_id: int) -> Path | None:
        folder = self.path / "runs" / str(run_id)
        for name in CHECKPOINTS:
            if (folder / name).is_file():
                return folder / name
        return None

    def _windows(
        self, rec: ImageRecord, loaded: LoadedModel, accurate: bool
    ) -> tuple[np.ndarray | None, int]:
        """The image's grid windows (None: automatic grid) and the number of tiles.

        ``ml.predict.plan_tiles`` cuts both alike (cores of the grid without
        overlap, read with a context margin) and counts the tiles.
        """
        from deepblock_nb.core.tiling import tile_windows
        from deepblock_nb.ml.predict import plan_tiles

        win = None
        if rec.grid is not None:
            win = tile_windows(rec.image_wh, rec.grid.rows, rec.grid.cols, rec.grid.overlap)
        return win, len(plan_tiles(rec.image_wh, loaded, win, accurate=accurate))

    def _predict_images(
        self,
        job: Job,
        loaded: LoadedModel,
        run_id: int,
        records: Sequence[ImageRecord],
        accurate: bool,
        batch_size: int | None,
        verb: str,
    ) -> tuple[list[int], dict[str, BaseException], bool]:
        """Predict and store each image; returns the ids done, the failures, and whether it stopped."""
        from deepblock_nb.ml.predict import PredictionStopped, predict_image

        plans = [self._windows(rec, loaded, accurate) for rec in records]
        total = max(1, sum(n for _, n in plans))
        known = {c.id for c in self.categories}
        done: list[int] = []
        failures: dict[str, BaseException] = {}
        before = 0
        for k, (rec, (windows, n_tiles)) in enumerate(zip(records, plans)):
            if job.should_stop:
                return done, failures, True

            def progress(
                tiles: int, n: int, rec: ImageRecord = rec, k: int = k, before: int = before
            ) -> None:
                job.set_progress(
                    (before + tiles) / total,
                    f"{verb} image {k + 1}/{len(records)} ({rec.name}): tile {tiles}/{n}",
                )

            try:
                # one pass in raster order: a row of decoded tiles is all worth keeping
                with self.open_image(rec, cache_bytes=STREAM_CACHE_BYTES) as source:
                    det = predict_image(
                        loaded,
                        source,
                        windows,
                        batch_size=batch_size,
                        accurate=accurate,
                        score_floor=SCORE_FLOOR,
                        should_stop=lambda: job.should_stop,
                        on_progress=progress,
                    )
            except PredictionStopped:
                return done, failures, True
            except (DeepBlockError, OSError, ValueError, RuntimeError) as exc:
                failures[rec.name] = exc
                before += n_tiles
                continue
            det = det[np.isin(det.class_id, list(known))]  # categories removed since training
            self._db.replace_predictions(rec.id, run_id, det)
            self._emit("predictions", image=rec, run=run_id)
            done.append(rec.id)
            before += n_tiles
        return done, failures, False

    # -- Predict -----------------------------------------------------------------
    def predict(
        self,
        images: Iterable[Any] | Any | None = None,
        accurate: bool = False,
        run: int | None = None,
        *,
        batch_size: int | None = None,
        device: str = "auto",
        model: Any = None,
    ) -> Job:
        """Predict the predict split (or ``images``) in the background; returns the Job.

        Each image is cut into its grid's tiles (or an automatic grid of about the
        model's input size), each tile read with a margin of context and keeping the
        boxes centred in it, predicted in batches and merged across tile seams
        (``ml.predict``). ``accurate=True`` ("More accurate") widens the margin,
        adds a mirrored pass of every tile fused with the first and, for objects
        larger than a tile, a full-image pass at reduced scale. Predictions are
        stored per image at a score floor of 0.05; ``project.threshold`` filters them.
        ``job.stop()`` ends within one batch and keeps the images already done. An
        image that cannot be read fails alone: the job then fails with an
        :class:`ImageFailures` naming each such image, the others stay stored.
        ``job.result`` is the list of predicted image ids. ``model``: the torch
        module of a run trained from a custom module (its weights come from the run).

        Raises:
            ModelError: no trained model (or ``run`` has no checkpoint).
            RecordNotFoundError: an unknown image or run.
            ValueError: nothing to predict.
        """
        run_id, ckpt = self._checkpoint(run)
        if images is None:
            records = self.images("predict")
            if not records:
                raise ValueError(
                    "no images in the predict split: add some with project.add_image(path, split='predict')"
                )
        elif isinstance(images, (ImageRecord, int, str, np.integer)):
            records = [self.image(images)]
        else:
            records = [self.image(i) for i in images]

        def work(job: Job) -> None:
            from deepblock_nb.ml.checkpoints import load_for_inference

            job.set_progress(0.0, f"loading the model of run {run_id}")
            loaded = load_for_inference(ckpt, device, model=model)
            done, failures, stopped = self._predict_images(
                job, loaded, run_id, records, accurate, batch_size, "predicting"
            )
            job.result = done
            if failures:
                lines = "; ".join(f"{name}: {exc}" for name, exc in failures.items())
                raise ImageFailures(
                    f"{len(failures)} of {len(records)} images could not be predicted ({lines}). "
                    f"The predictions of the {len(done)} others are stored.",
                    failures,
                    done,
                ) from next(iter(failures.values()))
            job.set_progress(
                job.progress, f"{'stopped after' if stopped else 'predicted'} {len(done)} images"
            )

        return self._jobs.submit(
            "predict", work, description=f"predict {len(records)} images with run {run_id}"
        )

    # -- Evaluate ----------------------------------------------------------------
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

        The images are predicted exactly as :meth:`predict` does (predictions are
        stored for the run) and scored by :func:`deepblock_nb.metrics.evaluate`
        against their boxes: the headline precision, recall and F1 at the best-F1
        threshold, and ``report.at_threshold`` at ``project.threshold`` as it was when
        the evaluation started. The report is stored with the run
        (``project.evaluations(run)``), and its ``best_threshold`` becomes
        ``project.threshold`` unless the user has set one (a "threshold" event says
        so when it moves). Evaluate images without boxes are left out. ``model``: as
        for :meth:`predict`.

        Raises:
            ValueError: no evaluate images, or none with boxes.
            ModelError: no trained model (or ``run`` has no checkpoint).
        """
        records = self.images("evaluate")
        if not records:
            raise ValueError(
                "no images in the evaluate split: add labelled images with "
                "project.add_image(path, split='evaluate') (or import annotations with split='evaluate')"
            )
        truth = {rec.id: self.annotations(rec) for rec in records}
        labelled = [rec for rec in records if len(truth[rec.id])]
        if not labelled:
            raise ValueError(
                f"none of the {len(records)} evaluate images has boxes: label them (project.add_box) "
                "or import their annotations"
            )
        run_id, ckpt = self._checkpoint(run)
        threshold = float(self.threshold)
        names = {c.id: c.name for c in self.categories}

        def work(job: Job) -> None:
            from deepblock_nb.core.metrics import evaluate
            from deepblock_nb.ml.checkpoints import load_for_inference

            job.set_progress(0.0, f"loading the model of run {run_id}")
            loaded = load_for_inference(ckpt, device, model=model)
            _, failures, stopped = self._predict_images(
                job, loaded, run_id, labelled, accurate, batch_size, "evaluating"
            )
            if failures:
                name, exc = next(iter(failures.items()))
                raise JobError(f"evaluation needs every labelled image, but {name} failed: {exc}") from exc
            if stopped:
                return
            preds = [self._db.predictions(rec.id, run_id) for rec in labelled]
            report = evaluate(
                [truth[rec.id] for rec in labelled], preds, at_threshold=threshold, categories=names
            )
            before = self.threshold
            with self._db.write():  # the report and the threshold it suggests, together
                self._db.save_evaluation(run_id, {**report.to_dict(), "image_ids": [r.id for r in labelled]})
                self._set_evaluated_threshold(report.best_threshold)
            self._emit("runs", action="evaluated", run=run_id, report=report)
            after = self.threshold
            if after != before:
                self._emit("threshold", value=after)
            job.result = report
            job.set_progress(
                1.0,
                f"mAP50 {report.map50:.3f}, F1 {report.f1:.3f} at {report.threshold:.2f} "
                f"(best F1) on {len(labelled)} images",
            )

        return self._jobs.submit(
            "evaluate", work, description=f"evaluate run {run_id} on {len(labelled)} images"
        )

    def evaluations(self, run: int | None = None) -> list[EvaluationReport]:
        """The stored evaluation reports, oldest first (of one run, or of all)."""
        from deepblock_nb.core.metrics import EvaluationReport

        return [EvaluationReport.from_dict(e["report"]) for e in self._db.evaluations(run)]

    # -- stored predictions ------------------------------------------------------
    def predictions(self, image: Any, threshold: float | None = None, run: int | None = None) -> Detections:
        """The image's stored predictions scoring ``>= threshold`` (default: ``project.threshold``).

        ``run`` None: the newest run that predicted this image. Instant: the model is
        not run again. ``ids`` are the prediction record ids.
        """
        rec = self.image(image)
        t = self.threshold if threshold is None else float(threshold)
        return self._db.predictions(rec.id, run, min_score=t)  # type: ignore[no-any-return]

    def clear_predictions(self, image: Any = None) -> None:
        """Delete the stored predictions of one image, or of every image."""
        rec = None if image is None else self.image(image)
        self._db.delete_predictions(None if rec is None else rec.id)
        self._emit("predictions", image=rec, run=None)

    def _prediction_images(self, split: str | None) -> list[ImageRecord]:
        return self.images(split)

    def statistics(self, split: str | None = "predict", threshold: float | None = None) -> pd.DataFrame:
        """Boxes per category (columns) per image (rows), with a ``total`` column and row.

        Counts the stored predictions scoring ``>= threshold`` (default:
        ``project.threshold``) of the images of ``split`` (None: all images).
        Images without predictions count zero.
        """
        import pandas as pd

        cats = self.categories
        col = {c.id: i for i, c in enumerate(cats)}
        recs = self._prediction_images(split)
        counts = np.zeros((len(recs), len(cats)), np.int64)
        for r, rec in enumerate(recs):
            det = self.predictions(rec, threshold)
            ids = [col[int(c)] for c in det.class_id if int(c) in col]
            counts[r] = np.bincount(np.asarray(ids, np.int64), minlength=len(cats))
        frame = pd.DataFrame(
            counts, index=pd.Index([r.name for r in recs], name="image"), columns=[c.name for c in cats]
        )
        frame["total"] = frame.sum(axis=1)
        frame.loc["total"] = frame.sum(axis=0)
        return frame

    def export_predictions(
        self,
        path: str | Path,
        format: str = "coco",
        *,
        split: str | None = "predict",
        threshold: float | None = None,
        reference_path: str | Path | None = None,
    ) -> Path:
        """Write the stored predictions scoring ``>= threshold`` of ``split``'s images.

        ``format="coco"``: a COCO results list (``image_id``, ``category_id``,
        ``bbox`` xywh, ``score``) with the project's image and category ids, plus a
        reference file naming them (``reference_path``, default
        ``<name>.reference.json`` beside it; read both back with
        ``io.annotations.read_coco_results``). ``format="csv"``: one row per box,
        ``file_name, category, x1, y1, x2, y2, score``.

        Returns:
            The path written.
        """
        from deepblock_nb.io.annotations import AnnotatedImage, AnnotationSet, write_coco_results, write_csv

        path = Path(path)
        fmt = format.lower()
        if fmt not in ("coco", "csv"):
            raise FormatError(f"{path.name}: unknown prediction format {format!r}; use 'coco' or 'csv'", path)
        cats = self.categories
        name_of = {c.id: c.name for c in cats}
        records = []
        recs = self._prediction_images(split)
        for rec in recs:
            det = self.predictions(rec, threshold)
            det = det[np.isin(det.class_id, list(name_of))]
            records.append(
                AnnotatedImage(
                    rec.name,
                    rec.width,
                    rec.height,
                    det.xyxy,
                    [name_of[int(c)] for c in det.class_id],
                    det.confidence,
                )
            )
        results = AnnotationSet([c.name for c in cats], records, category_ids={c.name: c.id for c in cats})
        if fmt == "csv":
            write_csv(path, results)
            return path
        ref = (
            Path(reference_path)
            if reference_path is not None
            else path.with_name(path.stem + ".reference.json")
        )
        write_coco_results(
            path,
            results,
            reference_path=ref,
            category_ids={c.name: c.id for c in cats},
            image_ids={r.name: r.id for r in recs},
        )
        return path
