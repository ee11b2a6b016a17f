"""Training for the Project: ``project.train(...)`` starts a background Job.

With ``devices=N`` (N > 1) the job runs ``torchrun`` in a subprocess
(:mod:`deepblock_nb.project._ddp`); that subprocess's processes come back here
through the CLI, find torchrun's ranks in their environment
(:func:`deepblock_nb.ml.distributed.env_ranks`) and each trains one rank of the
run, rank 0 alone writing its record and history.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepblock_nb.errors import ArgumentError, ArgumentTypeError, ModelError, RecordNotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.jobs import Job
    from deepblock_nb.ml.data import TileItem
    from deepblock_nb.project._project import Project

__all__ = ["Training"]

#: run settings kept in the run's config that are not TrainConfig fields
_RUN_ONLY = ("weights", "download")
#: options of a call that are not kept as such: processes to train with, and the
#: run record (created by the launching process) that a torchrun rank trains
_CALL_ONLY = ("devices", "_run")


class Training:
    """Plans runs, starts their jobs and records them in the store."""

    def __init__(self, project: Project) -> None:
        self._p = project
        self._runs = project._store.runs

    def train(
        self, epochs: int | None, model: Any, device: str, resume: bool | int, given: dict[str, Any]
    ) -> Job:
        """Start a training job; ``given``: the settings the caller passed (by name)."""
        from deepblock_nb.ml import distributed
        from deepblock_nb.ml.train import TrainConfig

        devices = _devices(given.get("devices"))
        into = given.get("_run")
        given = {k: v for k, v in given.items() if k not in _CALL_ONLY}
        known = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs"}
        unknown = sorted(set(given) - known - set(_RUN_ONLY))
        if unknown:
            raise ArgumentTypeError(
                f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if epochs is not None:
            if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
                raise ArgumentError(
                    f"epochs must be a whole number of at least 1 (or None: automatic), got {epochs!r}"
                )
            epochs = int(epochs)
        if not self._category_ids():
            raise ModelError("the project has no categories; add one with project.add_category(name)")
        if isinstance(model, str):
            from deepblock_nb.ml.models import resolve_preset_name

            resolve_preset_name(model)  # an unknown name fails here, not in the thread
        ranks = distributed.env_ranks()
        if devices > 1 and ranks is not None:
            raise ArgumentError(
                f"devices={devices} launches torchrun, but this process already is rank {ranks.rank} "
                f"of {ranks.world_size} under torchrun; leave devices out"
            )
        if devices > 1 and not isinstance(model, str):
            raise ArgumentTypeError(
                "devices=N trains in other processes, which cannot receive a torch module; "
                "pass a preset name as model= (or train it with devices=None)"
            )
        main = ranks is None or ranks.is_main
        world = devices if devices > 1 else (1 if ranks is None else ranks.world_size)
        run_id: int | None
        resume_from: Path | None
        if into is not None:
            run_id, resume_from = self._planned_run(into), None
        else:
            run_id, resume_from = self._plan_run(resume)
        settings = {k: v for k, v in given.items() if k in known}
        cfg = TrainConfig(epochs=epochs, **settings)
        weights = given.get("weights")
        download = given.get("download")
        config = {**cfg.to_dict(), "device": device, "weights": None if weights is None else str(weights)}
        config["world_size"] = world
        if main and run_id is None:  # (rank 0 alone keeps the record)
            config["target_epochs"] = cfg.epochs
            run_id = self._runs.create(model if isinstance(model, str) else "custom", config, status="queued")
            self._p._emit("runs", action="created", run=run_id, report=None)
        elif main and run_id is not None:
            old = dict((self._runs.get(run_id) or {}).get("config") or {})
            # a resume keeps the run's saved settings but for those passed now
            passed = {k: config[k] for k in (*settings, *(k for k in _RUN_ONLY if k in given))}
            passed.update(device=device, world_size=world)
            self._runs.update(run_id, status="queued", config={**old, **passed})
            self._p._emit("runs", action="queued", run=run_id, report=None)
        if devices > 1:
            from deepblock_nb.project._ddp import launch

            assert run_id is not None
            options = {**settings, **{k: given[k] for k in _RUN_ONLY if k in given}}
            job = launch(
                self._p, run_id, devices, epochs, str(model), device, resume_from is not None, options
            )
        else:
            job, run_id = self._submit(
                run_id, cfg, epochs, settings, model, weights, device, resume_from, download, main
            )
        job.result = run_id
        if main:
            job.on("done", lambda j: self._ended_unstarted(j, run_id))
        return job

    def _submit(
        self,
        run_id: int | None,
        cfg: Any,
        epochs: int | None,
        settings: dict[str, Any],
        model: Any,
        weights: Any,
        device: str,
        resume_from: Path | None,
        download: bool | None,
        main: bool,
    ) -> tuple[Job, int]:
        """The job that trains here (in this process, or as one torchrun rank), and its run id."""
        from deepblock_nb.ml import distributed

        ranks = distributed.env_ranks()
        train_device: Any = device
        if ranks is not None:  # every rank joins the group and learns rank 0's run id
            train_device = distributed.setup(device, ranks)
            run_id = distributed.broadcast_object(run_id)
        assert run_id is not None

        def work(job: Job) -> None:
            run_cfg = cfg
            if resume_from is not None:
                more = self._epochs_to_resume(run_id, epochs, write=main)
                run_cfg = dataclasses.replace(cfg, epochs=distributed.broadcast_object(more))
            self._train_work(
                job, run_id, run_cfg, set(settings), model, weights, train_device, resume_from, download, main
            )

        return self._p._jobs.submit("train", work, description=f"train run {run_id}"), run_id

    def runs(self) -> pd.DataFrame:
        """Every training run: id, model, status, epochs done, best score, times, config."""
        import pandas as pd

        frame = pd.DataFrame(self._runs.all())
        if frame.empty:
            return pd.DataFrame(
                columns=["id", "model", "status", "epochs_done", "best_score", "created", "finished"]
            )
        for col in ("created", "finished"):
            if col in frame:
                frame[col] = pd.to_datetime(frame[col], unit="s", errors="coerce")
        return frame

    def history(self, run_id: int) -> pd.DataFrame:
        import pandas as pd

        if isinstance(run_id, bool) or not isinstance(run_id, numbers.Integral):
            raise ArgumentTypeError(f"run_id is an integer, not {run_id!r}")
        if self._runs.get(int(run_id)) is None:
            raise RecordNotFoundError(f"no training run {run_id} in the project {self._p.path}")
        return pd.DataFrame(self._runs.history(int(run_id)))

    # -- internals ----------------------------------------------------------------
    def _category_ids(self) -> list[int]:
        return sorted(int(c.id) for c in self._p.categories)

    def _ended_unstarted(self, job: Job, run_id: int) -> None:
        """A train job stopped while queued never ran: its run is marked stopped."""
        if job.started is None and (self._runs.get(run_id) or {}).get("status") == "queued":
            self._runs.update(run_id, status="stopped", finished=True)
            self._p._emit("runs", action="ended", run=run_id, report=None)

    def _plan_run(self, resume: bool | int) -> tuple[int | None, Path | None]:
        """(run id, checkpoint to resume) or (None, None) for a new run."""
        if resume is False or resume is None:
            return None, None
        if not isinstance(resume, (bool, int)):
            raise ArgumentTypeError(f"resume is True, False or a run id, not {type(resume).__name__}")
        run_id = self._runs.last_id(status=None) if resume is True else int(resume)
        if run_id is None or self._runs.get(run_id) is None:
            raise RecordNotFoundError(
                "no training run to resume; call project.train(...) without resume"
                if resume is True
                else f"no run {resume} to resume"
            )
        last = self._p.run_dir(run_id) / "last.pt"
        if not last.is_file() and self._p._jobs.active is None:
            raise ModelError(f"run {run_id} has no {last.name} to resume from ({last}); start a new run")
        return int(run_id), last

    def _planned_run(self, run_id: Any) -> int:
        """A run record made for this call by the process that launched torchrun (queued, unstarted)."""
        run = self._runs.get(int(run_id))
        if run is None:
            raise RecordNotFoundError(f"no run {run_id} to train into; start a new run without --run-id")
        if run["status"] not in ("created", "queued") or (self._p.run_dir(int(run_id)) / "last.pt").exists():
            raise ModelError(
                f"run {run_id} is {run['status']} and has started already; continue it with --resume {run_id}"
            )
        return int(run_id)

    def _epochs_to_resume(self, run_id: int, more: int | None, write: bool = True) -> int:
        """Epochs for a resumed run: ``more``, else the rest of its planned epochs."""
        run = self._runs.get(run_id) or {}
        done = int(run.get("epochs_done") or 0)
        config = dict(run.get("config") or {})
        if more is None:
            planned = int(config.get("target_epochs") or 0)
            more = planned - done
            if more < 1:
                raise ModelError(
                    f"run {run_id} already finished its {planned} epochs; pass epochs=N to train N more"
                )
        if write:
            self._runs.update(run_id, config={**config, "target_epochs": done + more})
        return more

    def _tile_items(self, split: str, category_ids: list[int]) -> list[TileItem]:
        """The training tiles of ``split``'s images (grid windows, image pixels).

        Each item carries its image's display setting (``project.display``), so training reads
        the pixels the viewer and prediction read.
        Every tile of an image reviewed as a whole, or of one with boxes and no reviewed tiles.
        An image with reviewed tiles and not reviewed as a whole gives only its tiles that hold
        (overlap) a box and those inside a reviewed tile's window (``store.reviews.windows_inside``):
        its other empty tiles may not be labelled yet. Images without either are left out.
        """
        import numpy as np

        from deepblock_nb.ml.data import TileItem
        from deepblock_nb.store.reviews import windows_inside

        items = []
        for rec in self._p.images(split=split):
            det = self._p.annotations(rec)
            windows = rec.windows()  # [T,4] x, y, w, h
            if not rec.reviewed:
                reviewed = self._p._store.reviews.of_image(rec.id)
                if len(reviewed):
                    windows = windows[_holding(windows, det.xyxy) | windows_inside(windows, reviewed)]
                elif not len(det):
                    continue  # never labelled: its objects must not train as background
            keep = np.isin(det.class_id, category_ids)
            xyxy, cids = det.xyxy[keep], det.class_id[keep]
            display = self._p.display(rec)
            for window in windows:
                x, y, w, h = (int(v) for v in window)
                items.append(
                    TileItem(Path(rec.path), (x, y, w, h), xyxy, cids, (rec.width, rec.height), display)
                )
        return items

    def _store_history(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        epochs = [r for r in rows if r.get("kind") == "epoch"]
        final = [r for r in rows if r.get("kind") == "final" and r.get("best")]
        with self._p._store.write():
            self._runs.add_history(run_id, rows)
            if epochs:
                best = next((r for r in reversed(epochs) if r.get("best")), None)  # the newest best
                self._runs.update(
                    run_id,
                    epochs_done=int(epochs[-1]["epoch"]),
                    best_score=None if best is None else best["score"],
                )
            if final:  # the trained weights beat every scored average
                self._runs.update(run_id, best_score=final[-1]["trained_score"])
            if epochs or final:
                self._p._emit("runs", action="progress", run=run_id, report=None)

    def _train_work(
        self,
        job: Job,
        run_id: int,
        cfg: Any,
        given: set[str],
        model: Any,
        weights: str | Path | None,
        device: Any,
        resume_from: Path | None,
        download: bool | None = None,
        main: bool = True,
    ) -> None:
        """Train the run in this job; ``main``: this process writes the run (False:
        a torchrun rank other than 0, which trains and writes nothing)."""
        from deepblock_nb.ml import distributed
        from deepblock_nb.ml.train import train_detector

        status = "failed"
        try:
            if main:
                self._runs.update(run_id, status="running")
                self._p._emit("runs", action="running", run=run_id, report=None)
            category_ids = self._category_ids()
            # a snapshot: boxes added while training are used by the next run
            train_items = self._tile_items("train", category_ids)
            job.set_progress(0.0, f"run {run_id}: {len(train_items)} training tiles")
            result = train_detector(
                job,
                train_items,
                category_ids,
                self._p.run_dir(run_id),
                config=cfg,
                given=given,
                model=model,
                weights=weights,
                device=device,
                resume_from=resume_from,
                history_sink=(lambda rows: self._store_history(run_id, rows)) if main else None,
                cache_dir=self._p.path / "cache",
                download=download,
            )
            status = result.status
            if status == "stopped" and not job.should_stop:
                job.stop()  # a stop that reached this rank through the others: the job ends STOPPED too
            if not main:
                return
            (self._p.run_dir(run_id) / distributed.STOP_FILE).unlink(missing_ok=True)  # it was read
            with self._p._store.write():
                if cfg.epochs is None:  # the trainer chose: a resume continues its plan
                    config = dict((self._runs.get(run_id) or {}).get("config") or {})
                    self._runs.update(run_id, config={**config, "target_epochs": result.target_epoch})
                self._runs.update(
                    run_id,
                    status=status,
                    best_score=result.best_score if result.best_score >= 0 else None,
                    epochs_done=result.epochs_done,
                    finished=True,
                )
            job.result = run_id
        finally:
            if distributed.env_ranks() is not None:
                distributed.cleanup()
            if main:
                if status == "failed":
                    self._runs.update(run_id, status="failed", finished=True)
                self._p._emit("runs", action="ended", run=run_id, report=None)


def _devices(devices: Any) -> int:
    """The ``devices=`` option as a number of processes (None: 1, in this process)."""
    if devices is None:
        return 1
    if isinstance(devices, bool) or not isinstance(devices, numbers.Integral) or devices < 1:
        raise ArgumentError(
            f"devices must be a whole number of processes, at least 1 (or None: train in this process), "
            f"got {devices!r}"
        )
    return int(devices)


def _holding(windows: Any, xyxy: Any) -> Any:
    """``(T,)`` whether each window ``x, y, w, h`` overlaps one of the boxes ``(N, 4)`` xyxy by some area."""
    import numpy as np

    win = np.asarray(windows, np.float64).reshape(-1, 4)
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    lo = np.maximum(win[:, None, :2], b[None, :, :2])  # [T,N,2]
    hi = np.minimum(win[:, None, :2] + win[:, None, 2:], b[None, :, 2:])  # [T,N,2]
    return np.any(np.all((hi - lo) > 0, axis=2), axis=1)
