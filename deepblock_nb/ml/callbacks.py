"""Training hooks. The trainer calls them; they keep the history, write
checkpoints and stop early. Each method is a no-op unless overridden."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deepblock_nb.ml.train import TrainState

__all__ = [
    "Callback",
    "CallbackList",
    "CheckpointCallback",
    "EarlyStopping",
    "HistoryCallback",
    "JobLike",
    "PlateauCooldown",
    "ProgressCallback",
]

log = logging.getLogger(__name__)


class JobLike(Protocol):
    """What training needs of a job (``deepblock_nb.jobs.Job`` offers it)."""

    @property
    def should_stop(self) -> bool: ...

    def set_progress(self, fraction: float, message: str | None = None) -> None: ...

    def add_history(self, rows: list[dict[str, Any]]) -> None: ...


class Callback:
    """Base class of training hooks."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first batch (after a resume too)."""

    def on_batch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        """After each optimiser step; ``row`` is that step's history row."""

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        """After each full epoch and its score; ``row`` is the epoch's history row."""

    def on_record(self, state: TrainState, row: dict[str, Any]) -> None:
        """A history row that is neither a step nor an epoch (``kind == "final"``:
        which weights a run with a weight average kept)."""

    def on_train_end(self, state: TrainState, status: str, error: BaseException | None) -> None:
        """Once, at every ending: ``status`` is "finished", "stopped" or "failed"."""


class CallbackList(Callback):
    """Calls several callbacks in order."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_train_start(state)

    def on_batch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(state, row)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(state, row)

    def on_record(self, state: TrainState, row: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_record(state, row)

    def on_train_end(self, state: TrainState, status: str, error: BaseException | None) -> None:
        for cb in self.callbacks:
            try:
                cb.on_train_end(state, status, error)
            except Exception:
                if error is None:
                    raise
                # the first error is the one to report
                log.exception("callback %r failed while training ended with an error", cb)


class HistoryCallback(Callback):
    """Sends history rows to the job (live curves) and to ``sink`` (the run's record).

    Step rows are batched and sent at most every ``flush_seconds``.
    """

    def __init__(
        self,
        job: JobLike | None,
        sink: Callable[[list[dict[str, Any]]], None] | None = None,
        flush_seconds: float = 0.5,
    ) -> None:
        self.job = job
        self.sink = sink
        self.flush_seconds = flush_seconds
        self._pending: list[dict[str, Any]] = []
        self._last = 0.0

    def _flush(self) -> None:
        rows, self._pending = self._pending, []
        self._last = time.monotonic()
        if not rows:
            return
        if self.job is not None:
            self.job.add_history(rows)
        if self.sink is not None:
            self.sink(rows)

    def on_train_start(self, state: TrainState) -> None:
        if self.job is not None and state.history:
            self.job.add_history([dict(r) for r in state.history])  # the run so far
        self._last = time.monotonic()

    def on_batch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if time.monotonic() - self._last >= self.flush_seconds:
            self._flush()

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self._flush()

    def on_record(self, state: TrainState, row: dict[str, Any]) -> None:
        self._pending.append(row)
        self._flush()

    def on_train_end(self, state: TrainState, status: str, error: BaseException | None) -> None:
        self._flush()


class ProgressCallback(Callback):
    """Keeps ``job.progress`` and its message current."""

    def __init__(self, job: JobLike) -> None:
        self.job = job

    def on_batch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        if state.steps_done % 5 == 0 or state.steps_done == 1:
            self.job.set_progress(state.fraction, state.describe(row.get("loss")))

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self.job.set_progress(state.fraction, state.describe(row.get("loss"), row.get("score")))

    def on_train_end(self, state: TrainState, status: str, error: BaseException | None) -> None:
        if status == "failed":
            return
        self.job.set_progress(state.fraction if status == "stopped" else 1.0, f"{status}: {state.describe()}")


class CheckpointCallback(Callback):
    """``last.pt`` after every epoch and at every ending (resumable: optimiser and
    scheduler state included); ``best.pt`` whenever the score improves."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        from deepblock_nb.ml.checkpoints import save_checkpoint

        improved = bool(row.get("best"))
        ckpt = state.checkpoint()
        save_checkpoint(ckpt, self.run_dir / "last.pt")
        if improved or not (self.run_dir / "best.pt").exists():
            save_checkpoint(ckpt, self.run_dir / "best.pt")

    def on_train_end(self, state: TrainState, status: str, error: BaseException | None) -> None:
        from deepblock_nb.ml.checkpoints import save_checkpoint

        if state.steps_done == 0 and (self.run_dir / "last.pt").exists():
            return  # nothing new since the last checkpoint
        save_checkpoint(state.checkpoint(), self.run_dir / "last.pt")  # best.pt needs a scored epoch


class EarlyStopping(Callback):
    """Ends training when the score has not improved by ``min_delta`` for ``patience`` epochs.

    The score is the epoch row's ``select`` (see
    :func:`~deepblock_nb.ml.train.selection_score`), else its ``score``.
    Subclasses change what a plateau does (:meth:`_on_plateau`) and when one may
    be called (:meth:`_may_end`).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self._best = -math.inf
        self._waited = 0
        self._done = False

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        score = row.get("select", row.get("score"))
        if self._done or score is None or not math.isfinite(score):
            return
        if score > self._best + self.min_delta:
            self._best, self._waited = score, 0
            return
        self._waited += 1
        if self._waited >= self.patience and self._may_end(state):
            self._done = True
            state.early_stopped = True
            self._on_plateau(state)

    def _may_end(self, state: TrainState) -> bool:
        return True

    def _on_plateau(self, state: TrainState) -> None:
        state.request_stop()


class PlateauCooldown(EarlyStopping):
    """Automatic epochs: when the held-out score has not improved by ``min_delta``
    for ``patience`` epochs, decay the learning rate over a few last epochs and end.

    The decay gets a fifth of the epochs done so far (at least ``min_cooldown``),
    never past the planned end; ``best.pt`` still keeps the best epoch. No plateau
    is called before epoch ``min_epochs``, nor while the best score is below
    ``floor``: a model that has learnt nothing yet (from scratch the score stays
    flat for a few hundred steps) trains on to the planned end.
    """

    def __init__(
        self,
        patience: int = 5,
        min_delta: float = 0.002,
        min_cooldown: int = 2,
        min_epochs: int = 0,
        floor: float = 0.05,
    ) -> None:
        super().__init__(patience, min_delta)
        self.min_cooldown = min_cooldown
        self.min_epochs = min_epochs
        self.floor = floor

    def _may_end(self, state: TrainState) -> bool:
        return state.epoch >= self.min_epochs and self._best >= self.floor

    def _on_plateau(self, state: TrainState) -> None:
        state.end_in(max(self.min_cooldown, round(0.2 * state.epoch)))
        log.info(
            "held-out score flat for %d epochs: final decay, ending at epoch %d",
            self.patience,
            state.target_epoch,
        )
