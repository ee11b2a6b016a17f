"""Training from the Project: ``project.train(...)`` starts a background Job."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepblock_nb.errors import ModelError, RecordNotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.jobs import Job
    from deepblock_nb.ml.data import TileItem

__all__ = ["TrainingMixin"]


class TrainingMixin:
    """``train`` and ``runs``; mixed into :class:`deepblock_nb.Project`."""

    path: Path
    _db: Any
    _jobs: Any
    if TYPE_CHECKING:
        categories: list[Any]

        def images(self, split: str | None = None) -> list[Any]: ...
        def annotations(self, image: Any) -> Any: ...
        def tiles(self, image: Any) -> list[tuple[int, int, int, int]]: ...
        def run_dir(self, run_id: int) -> Path: ...
        def _emit(self, topic: str, **payload: Any) -> None: ...

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

        Returns at once with a Job: ``job.status``, ``job.progress``, ``job.history``
        (a DataFrame: one row per step with the loss and its parts, one per epoch
        with the loss, the training score and seconds), ``job.stop()`` (ends within
        one batch, keeping a resumable ``last.pt``), ``job.wait()``. ``job.result``
        is the run id. A train asked for while another job runs waits its turn.

        The training score is mAP@0.5 measured each epoch on a fixed held-out part
        of the labelled train images (whole images; the history's ``score_on``
        column says what), and ``best.pt`` is the best epoch there. The evaluate
        split is never read while training: Evaluate alone scores on it.

        How many epochs: by default the trainer decides (at most about 15 with
        ~1000 boxes per category, more for few labels, ending with a short decay
        once the held-out score stops rising). When the score stops rising, label
        more boxes rather than train longer.

        Args:
            epochs: epochs to run; None (default) lets the trainer decide; with
                ``resume``, the rest of the planned epochs, or this many more.
            model: ``"auto"`` (the small preset on a CPU), a preset name (see
                ``deepblock_nb.ml.models.list_presets()``) or a torch detection module.
            batch_size, lr: None takes the preset's defaults.
            device: ``"auto"`` (CUDA, then MPS, else CPU), ``"cpu"``, ``"cuda"``, ...
            resume: True continues the newest run from its ``last.pt``; a run id
                continues that run.
            weights: a local weights file to start from (detector or backbone).
            download: fetch missing pretrained weights (None: on unless ``DEEPBLOCK_DOWNLOAD_WEIGHTS=0``).
            **options: more settings of :class:`deepblock_nb.ml.train.TrainConfig`
                (``tile_size``, ``patience``, ``augment``, ``empty_rate``, ``holdout``,
                ``num_workers``, ``seed``, ...).
        """
        from deepblock_nb.ml.train import TrainConfig

        known = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs", "batch_size", "lr"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if epochs is not None and int(epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        if not self._categories_ids():
            raise ModelError("the project has no categories; add one with project.add_category(name)")

        if isinstance(model, str):
            from deepblock_nb.ml.models import resolve_preset_name

            resolve_preset_name(model)  # an unknown name fails here, not in the thread
        run_id, resume_from = self._plan_run(resume)
        cfg = TrainConfig(epochs=None if epochs is None else int(epochs), batch_size=batch_size, lr=lr, **options)
        config = {**cfg.to_dict(), "device": device, "weights": None if weights is None else str(weights)}
        if run_id is None:
            name = model if isinstance(model, str) else "custom"
            config["target_epochs"] = cfg.epochs
            run_id = int(self._db.create_run(name, config))
        else:
            run = self._db.run(run_id) or {}
            old = dict(run.get("config") or {})
            config["target_epochs"] = old.get("target_epochs")
            self._db.update_run(run_id, status="queued", config={**old, **config})
        self._emit("runs", run_id=run_id)
        more = None if epochs is None else int(epochs)

        def work(job: Job) -> None:
            if resume_from is not None:
                cfg.epochs = self._epochs_to_resume(run_id, more)
            self._train_work(job, run_id, cfg, model, weights, device, resume_from, download)

        job = self._jobs.submit("train", work, description=f"train run {run_id}")
        job.result = run_id
        return job

    def runs(self) -> pd.DataFrame:
        """Every training run: id, model, status, epochs done, best score, times, config."""
        import pandas as pd

        rows = self._db.runs()
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(
                columns=["id", "model", "status", "epochs_done", "best_score", "created", "finished"]
            )
        for col in ("created", "finished"):
            if col in frame:
                frame[col] = pd.to_datetime(frame[col], unit="s", errors="coerce")
        return frame

    # -- internals ----------------------------------------------------------------
    def _categories_ids(self) -> list[int]:
        return sorted(int(c.id) for c in self.categories)

    def _plan_run(self, resume: bool | int) -> tuple[int | None, Path | None]:
        """(run id, checkpoint to resume) or (None, None) for a new run."""
        if resume is False or resume is None:
            return None, None
        run_id = self._db.last_run_id(status=None) if resume is True else int(resume)
        if run_id is None or self._db.run(run_id) is None:
            raise RecordNotFoundError(
                "no training run to resume; call project.train(...) without resume"
                if resume is True
                else f"no run {resume} to resume"
            )
        last = self.run_dir(run_id) / "last.pt"
        if not last.is_file() and self._jobs.active is None:
            raise ModelError(f"run {run_id} has no {last.name} to resume from ({last}); start a new run")
        return int(run_id), last

    def _epochs_to_resume(self, run_id: int, more: int | None) -> int:
        """Epochs for a resumed run: ``more``, else the rest of its planned epochs."""
        run = self._db.run(run_id) or {}
        done = int(run.get("epochs_done") or 0)
        config = dict(run.get("config") or {})
        if more is None:
            planned = int(config.get("target_epochs") or 0)
            more = planned - done
            if more < 1:
                raise ModelError(
                    f"run {run_id} already finished its {planned} epochs; pass epochs=N to train N more"
                )
        config["target_epochs"] = done + more
        self._db.update_run(run_id, config=config)
        return more

    def _tile_items(self, split: str, category_ids: list[int]) -> list[TileItem]:
        import numpy as np

        from deepblock_nb.ml.data import TileItem

        items = []
        for rec in self.images(split=split):
            det = self.annotations(rec)
            keep = np.isin(det.class_id, category_ids)
            xyxy, cids = det.xyxy[keep], det.class_id[keep]
            for window in self.tiles(rec):
                x, y, w, h = (int(v) for v in window)
                items.append(TileItem(Path(rec.path), (x, y, w, h), xyxy, cids, (rec.width, rec.height)))
        return items

    def _store_history(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        self._db.add_history(run_id, rows)
        epochs = [r for r in rows if r.get("kind") == "epoch"]
        if epochs:
            best = next((r for r in reversed(epochs) if r.get("best")), None)  # the newest best
            self._db.update_run(
                run_id,
                epochs_done=int(epochs[-1]["epoch"]),
                best_score=None if best is None else best["score"],
            )
            self._emit("runs", run_id=run_id)

    def _train_work(
        self,
        job: Job,
        run_id: int,
        cfg: Any,
        model: Any,
        weights: str | Path | None,
        device: str,
        resume_from: Path | None,
        download: bool | None = None,
    ) -> None:
        from deepblock_nb.ml.train import train_detector

        status = "failed"
        try:
            self._db.update_run(run_id, status="running")
            self._emit("runs", run_id=run_id)
            category_ids = self._categories_ids()
            # a snapshot: boxes added while training are used by the next run
            train_items = self._tile_items("train", category_ids)
            job.set_progress(0.0, f"run {run_id}: {len(train_items)} training tiles")
            result = train_detector(
                job,
                train_items,
                category_ids,
                self.run_dir(run_id),
                config=cfg,
                model=model,
                weights=weights,
                device=device,
                resume_from=resume_from,
                history_sink=lambda rows: self._store_history(run_id, rows),
                cache_dir=self.path / "cache",
                download=download,
            )
            status = result.status
            if cfg.epochs is None:  # the trainer chose: a resume continues its plan
                run = self._db.run(run_id) or {}
                self._db.update_run(
                    run_id, config={**dict(run.get("config") or {}), "target_epochs": result.target_epoch}
                )
            self._db.update_run(
                run_id,
                status=status,
                best_score=result.best_score if result.best_score >= 0 else None,
                epochs_done=result.epochs_done,
                finished=True,
            )
            job.result = run_id
        finally:
            if status == "failed":
                self._db.update_run(run_id, status="failed", finished=True)
            self._emit("runs", run_id=run_id)
