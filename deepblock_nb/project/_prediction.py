"""The Predict and Evaluate stages of a project.

Predictions are computed tile by tile (``ml.predict``), stored once per image and
run at a low score floor (``ml.predict.SCORE_FLOOR``), made the image's current
predictions in the same transaction, and filtered by the threshold slider
without running the model again. Boxes are ``xyxy`` pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepblock_nb.errors import (
    ArgumentError,
    DeepBlockError,
    DeviceMemoryError,
    FormatError,
    ImageFailures,
    JobError,
    ModelError,
    RecordNotFoundError,
)
from deepblock_nb.project._checks import check_threshold
from deepblock_nb.project._geo import MAP_FORMATS, write_map_file
from deepblock_nb.store import ImageRecord

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.core.detections import Detections
    from deepblock_nb.core.metrics import ErrorAnalysis, EvaluationReport
    from deepblock_nb.jobs import Job
    from deepblock_nb.ml.checkpoints import LoadedModel
    from deepblock_nb.project._project import Project

__all__ = ["ImageFailures", "Prediction"]

CHECKPOINTS = ("best.pt", "last.pt")
PREDICTION_FORMATS = ("coco", "csv", *MAP_FORMATS)
STREAM_CACHE_BYTES = 64 * 2**20


class Prediction:
    """Runs predict and evaluate jobs and reads back the stored predictions."""

    def __init__(self, project: Project) -> None:
        self._p = project
        self._store = project._store

    # -- the model of a run ----------------------------------------------------
    def _checkpoint(self, run: int | None) -> tuple[int, Path]:
        """The run and its checkpoint file: ``run``, else the newest trained run."""
        if run is not None:
            if isinstance(run, bool) or not isinstance(run, (int, np.integer)):
                raise ArgumentError(f"run is a run id (see project.runs()), not {run!r}")
            if self._store.runs.get(int(run)) is None:
                raise RecordNotFoundError(f"no run {run!r} in this project (see project.runs())")
            ckpt = self._checkpoint_file(int(run))
            if ckpt is None:
                raise ModelError(
                    f"run {run} has no checkpoint ({' or '.join(CHECKPOINTS)} in {self._p.path / 'runs' / str(run)}); "
                    "it was stopped before its first epoch ended, or its files were deleted"
                )
            return int(run), ckpt
        runs = sorted(
            self._store.runs.all(), key=lambda r: (r["status"] == "finished", r["id"]), reverse=True
        )
        for record in runs:
            ckpt = self._checkpoint_file(int(record["id"]))
            if ckpt is not None:
                return int(record["id"]), ckpt
        raise ModelError("no trained model in this project: train one first with project.train()")

    def _checkpoint_file(self, run_id: int) -> Path | None:
        folder = self._p.path / "runs" / str(run_id)
        for name in CHECKPOINTS:
            if (folder / name).is_file():
                return folder / name
        return None

    def _predict_images(
        self,
        job: Job,
        loaded: LoadedModel,
        run_id: int,
        records: Sequence[ImageRecord],
        accurate: bool,
        batch_size: int | None,
        verb: str,
        store: Callable[[ImageRecord, Detections], None] | None = None,
    ) -> tuple[list[int], dict[str, BaseException], bool]:
        """Predict and store each image; returns the ids done, the failures, and whether it stopped.

        ``store(record, detections)``: what keeps an image's boxes (default: its current predictions)."""
        keep = self._known_only(store or (lambda rec, det: self.store_predictions(rec, run_id, det)))
        from deepblock_nb.ml.predict import PredictionStopped, plan_tiles, predict_image

        # the grid's windows, computed once per image and passed on
        windows = [None if rec.grid is None else rec.windows() for rec in records]
        counts = [
            len(plan_tiles(rec.image_wh, loaded, w, accurate=accurate)) for rec, w in zip(records, windows)
        ]
        total = max(1, sum(counts))
        done: list[int] = []
        failures: dict[str, BaseException] = {}
        before = 0
        for k, (rec, win, n_tiles) in enumerate(zip(records, windows, counts)):
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
                with self._p.open_image(rec, cache_bytes=STREAM_CACHE_BYTES) as source:
                    det = predict_image(
                        loaded,
                        source,
                        win,
                        batch_size=batch_size,
                        accurate=accurate,
                        should_stop=lambda: job.should_stop,
                        on_progress=progress,
                    )
            except PredictionStopped:
                return done, failures, True
            except DeviceMemoryError:
                raise  # the batch is too large for the device: not this image's fault
            except (DeepBlockError, OSError, ValueError, RuntimeError) as exc:
                failures[rec.name] = exc
                before += n_tiles
                continue
            keep(rec, det)
            done.append(rec.id)
            before += n_tiles
        return done, failures, False

    def _known_only(
        self, store: Callable[[ImageRecord, Detections], None]
    ) -> Callable[[ImageRecord, Detections], None]:
        """``store`` given only the boxes of categories that still exist (not those removed since training)."""
        known = [c.id for c in self._p.categories]
        return lambda rec, det: store(rec, det[np.isin(det.class_id, known)])

    def store_predictions(self, rec: ImageRecord, run_id: int, det: Detections) -> None:
        """Make ``det`` the image's current predictions, by ``run_id``, and say so."""
        self._store.predictions.replace(rec.id, run_id, det)
        self._p._emit("predictions", action="stored", image=rec, run=run_id)

    def _records(self, images: Iterable[Any] | Any | None) -> list[ImageRecord]:
        if images is None:
            records = self._p.images("predict")
            if not records:
                raise ArgumentError(
                    "no images in the predict split: add some with project.add_image(path, split='predict')"
                )
            return records
        if isinstance(images, (ImageRecord, int, str, np.integer)):
            return [self._p.image(int(images) if isinstance(images, np.integer) else images)]
        records = [self._p.image(i) for i in images]
        if not records:
            raise ArgumentError("no images given to predict (an empty list)")
        return records

    # -- Predict -----------------------------------------------------------------
    def predict(
        self,
        images: Iterable[Any] | Any | None,
        accurate: bool,
        run: int | None,
        batch_size: int | None,
        device: str,
        model: Any,
        *,
        kind: str = "predict",
        store: Callable[[ImageRecord, int, Detections], None] | None = None,
        client: Any = None,
    ) -> Job:
        """A job predicting ``images`` with a run; ``store(record, run id, detections)`` keeps
        each image's boxes (default: as its current predictions); ``kind``: the job's kind.

        ``client``: a ``dask.distributed.Client``; the images (and tile ranges of large ones) are
        predicted on its workers (``project._cluster``), which must reach the run's checkpoint, the
        image files and the project's cache/ at the same paths as this process (a shared
        filesystem); a ``model`` module is pickled to them (it must pickle:
        ``ModelNotPicklableError`` otherwise). This process merges and stores the boxes: exactly
        those of a local predict."""
        _check_batch_size(batch_size)
        run_id, ckpt = self._checkpoint(run)
        records = self._records(images)
        keep = store or self.store_predictions
        if client is not None:
            from deepblock_nb.project._cluster import check_cluster_call

            check_cluster_call(client, model)

        def work(job: Job) -> None:
            from deepblock_nb.ml.checkpoints import load_for_inference

            job.set_progress(0.0, f"loading the model of run {run_id}")
            stored = lambda rec, det: keep(rec, run_id, det)  # noqa: E731
            if client is not None:
                from deepblock_nb.project._cluster import predict_on_cluster

                done, failures, stopped = predict_on_cluster(
                    self, job, client, ckpt, device, model, records, accurate, batch_size, "predicting",
                    self._known_only(stored),
                )  # fmt: skip
            else:
                loaded = load_for_inference(ckpt, device, model=model)
                done, failures, stopped = self._predict_images(
                    job, loaded, run_id, records, accurate, batch_size, "predicting", stored
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

        return self._p._jobs.submit(kind, work, description=f"{kind} {len(records)} images with run {run_id}")

    # -- Evaluate ----------------------------------------------------------------
    def evaluate(
        self, run: int | None, accurate: bool, batch_size: int | None, device: str, model: Any
    ) -> Job:
        records = self._p.images("evaluate")
        if not records:
            raise ArgumentError(
                "no images in the evaluate split: add labelled images with "
                "project.add_image(path, split='evaluate') (or import annotations with split='evaluate')"
            )
        regions = self._reviewed_regions(records)
        truth = {rec.id: _within(self._p.annotations(rec), regions.get(rec.id)) for rec in records}
        # labelled, reviewed (maybe without boxes: a true negative) or with reviewed tiles (counted
        # only inside them); others may not be labelled yet
        labelled = [rec for rec in records if len(truth[rec.id]) or rec.reviewed or rec.id in regions]
        if not any(len(truth[rec.id]) for rec in labelled):
            raise ArgumentError(
                f"none of the {len(records)} evaluate images has boxes: label them (project.add_box) "
                "or import their annotations"
            )
        _check_batch_size(batch_size)
        run_id, ckpt = self._checkpoint(run)
        threshold = float(self._p.threshold)
        names = {c.id: c.name for c in self._p.categories}

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
            preds = [
                _within(self._store.predictions.of_image(rec.id, run_id), regions.get(rec.id))
                for rec in labelled
            ]
            report = evaluate(
                [truth[rec.id] for rec in labelled], preds, at_threshold=threshold, categories=names
            )
            with self._store.write():  # the report and the threshold it suggests, together
                scored = {str(i): w.tolist() for i, w in regions.items()}  # errors() reuses them
                self._store.runs.save_evaluation(
                    run_id, {**report.to_dict(), "image_ids": [r.id for r in labelled], "regions": scored}
                )
                self._p._set_evaluated_threshold(report.best_threshold)
                self._p._emit("runs", action="evaluated", run=run_id, report=report)
            job.result = report
            job.set_progress(
                1.0,
                f"mAP50 {report.map50:.3f}, F1 {report.f1:.3f} at {report.threshold:.2f} "
                f"(best F1) on {len(labelled)} images",
            )

        return self._p._jobs.submit(
            "evaluate", work, description=f"evaluate run {run_id} on {len(labelled)} images"
        )

    def _reviewed_regions(self, records: Sequence[ImageRecord]) -> dict[int, np.ndarray]:
        """image id -> ``(R, 4)`` reviewed tile windows of the images Evaluate scores only inside
        them: those with reviewed tiles and not reviewed as a whole."""
        found = {rec.id: self._store.reviews.of_image(rec.id) for rec in records if not rec.reviewed}
        return {i: w for i, w in found.items() if len(w)}

    def evaluations(self, run: int | None) -> list[EvaluationReport]:
        from deepblock_nb.core.metrics import EvaluationReport

        return [EvaluationReport.from_dict(e["report"]) for e in self._store.runs.evaluations(run)]

    def errors(self, threshold: float | None, run: int | None) -> ErrorAnalysis:
        """The errors of the newest evaluation (of ``run``, or of any run) at ``threshold``.

        The same images and predictions the evaluation scored (those of its run);
        ``threshold`` None: the report's headline threshold. The table's ``image`` is
        the image id, with its ``name`` beside it.
        """
        from deepblock_nb.core.metrics import EvaluationReport, errors

        if run is not None and (isinstance(run, bool) or not isinstance(run, (int, np.integer))):
            raise ArgumentError(f"run is a run id (see project.runs()), not {run!r}")
        stored = self._store.runs.evaluations(None if run is None else int(run))
        if not stored:
            which = "this project" if run is None else f"run {run}"
            raise ArgumentError(f"{which} has no evaluation yet: run project.evaluate() first")
        newest = stored[-1]
        report = EvaluationReport.from_dict(newest["report"])
        t = report.threshold if threshold is None else check_threshold(threshold)
        run_id = newest["run_id"]
        known = {rec.id: rec for rec in self._p.images()}
        # images removed since the evaluation are left out
        records = [known[int(i)] for i in newest["report"].get("image_ids", []) if int(i) in known]
        regions = {int(k): np.asarray(v) for k, v in (newest["report"].get("regions") or {}).items()}
        found = errors(
            [_within(self._p.annotations(rec), regions.get(rec.id)) for rec in records],
            [
                _within(self._store.predictions.of_image(rec.id, run_id), regions.get(rec.id))
                for rec in records
            ],
            threshold=t,
            iou_threshold=report.iou_threshold,
            categories={c.id: c.name for c in self._p.categories},
        )
        table = found.errors
        index = table["image"].to_numpy()
        table["image"] = np.array([records[i].id for i in index], np.int64)
        table.insert(1, "name", [records[i].name for i in index])
        return found

    # -- reading the current predictions --------------------------------------------
    def statistics(self, split: str | None, threshold: float | None) -> pd.DataFrame:
        import pandas as pd

        cats = self._p.categories
        col = {c.id: i for i, c in enumerate(cats)}
        recs = self._p.images(split)
        counts = np.zeros((len(recs), len(cats)), np.int64)
        for r, rec in enumerate(recs):
            det = self._p.predictions(rec, threshold)
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
        format: str,
        split: str | None,
        threshold: float | None,
        reference_path: str | Path | None,
    ) -> Path:
        from deepblock_nb.io.annotations import AnnotatedImage, AnnotationSet, write_coco_results, write_csv

        path = Path(path)
        fmt = str(format).lower()
        if fmt not in PREDICTION_FORMATS:
            raise FormatError(
                f"{path.name}: unknown prediction format {format!r}; use one of {', '.join(PREDICTION_FORMATS)}",
                path,
            )
        cats = self._p.categories
        name_of = {c.id: c.name for c in cats}
        records = []
        recs = self._p.images(split)
        for rec in recs:
            det = self._p.predictions(rec, threshold)
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
        if fmt in MAP_FORMATS:
            write_map_file(fmt, path, results, recs)
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


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ArgumentError(f"batch_size is a whole number of at least 1 (or None), got {batch_size!r}")


def _within(det: Detections, regions: np.ndarray | None) -> Detections:
    """The boxes of ``det`` centred inside one of ``regions`` (``(R, 4)`` x, y, w, h); all when None."""
    from deepblock_nb.store.reviews import centres_inside

    return det if regions is None else det[centres_inside(det.xyxy, regions)]
