"""Background jobs: a worker thread, cooperative stop, progress, history, errors.

A :class:`Job` wraps one piece of heavy work (train, evaluate, predict). The work
function runs in a worker thread and receives the job; it checks
``job.should_stop`` between batches, reports with ``job.set_progress`` and
``job.add_history``, and sets ``job.result``. Every ending goes through one place
(``Job._finish``) that sets the status and fires the "done" callbacks.

One :class:`JobQueue` per project runs one heavy job at a time; later ones wait
in the QUEUED state.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from deepblock_nb.errors import JobError

__all__ = ["Job", "JobQueue", "JobStatus"]

log = logging.getLogger(__name__)

Callback = Callable[["Job"], None]


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.STOPPED, JobStatus.FAILED)

    def __str__(self) -> str:
        return self.value


class Job:
    """One background task. Thread-safe; callbacks run on the worker thread."""

    _EVENTS = ("progress", "history", "done", "status")

    def __init__(self, kind: str, work: Callable[[Job], Any], *, description: str = "") -> None:
        self.kind = kind
        self.description = description or kind
        self._work = work
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._status = JobStatus.QUEUED
        self._progress = 0.0
        self.message = "queued"
        self.error: BaseException | None = None
        self.result: Any = None
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self._history_rows: list[dict[str, Any]] = []
        self._history_cache: pd.DataFrame | None = None
        self._thread: threading.Thread | None = None
        self._callbacks: dict[str, list[Callback]] = {e: [] for e in self._EVENTS}

    # -- state seen by users -------------------------------------------------
    @property
    def status(self) -> JobStatus:
        return self._status

    @property
    def progress(self) -> float:
        return self._progress

    @property
    def history(self) -> pd.DataFrame:
        """One row per step/epoch; grows while the job runs."""
        with self._lock:
            if self._history_cache is None or len(self._history_cache) != len(self._history_rows):
                self._history_cache = pd.DataFrame(self._history_rows)
            return self._history_cache.copy()

    @property
    def should_stop(self) -> bool:
        """True once ``stop()`` was called; the work checks it between batches."""
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def __repr__(self) -> str:
        pct = f"{100 * self._progress:.0f}%"
        return f"<Job {self.kind} {self._status.value} {pct} {self.message!r}>"

    # -- control -------------------------------------------------------------
    def stop(self) -> Job:
        """Ask the job to stop; it ends within one batch, keeping what it finished."""
        with self._lock:
            if self._status.done:
                return self
            self._stop.set()
            if self._status is JobStatus.RUNNING:
                self._set_status(JobStatus.STOPPING)
        return self

    def wait(self, timeout: float | None = None, *, raise_on_error: bool = False) -> Job:
        """Block until the job ends (or ``timeout`` seconds pass); returns the job.

        With ``raise_on_error`` a failed job re-raises its error wrapped in JobError.
        """
        if threading.current_thread() is self._thread:
            return self  # a callback on the worker thread must not wait for itself
        if not self._done.wait(timeout):
            return self
        if raise_on_error and self._status is JobStatus.FAILED:
            raise JobError(f"{self.kind} job failed: {self.error}") from self.error
        return self

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Subscribe to "progress", "history", "status" or "done"; returns an unsubscribe function.

        A "done" callback registered after the job ended is called at once.
        """
        if event not in self._callbacks:
            raise ValueError(f"unknown job event {event!r}; choose from {', '.join(self._EVENTS)}")
        with self._lock:
            self._callbacks[event].append(callback)
            already_done = event == "done" and self._done.is_set()
        if already_done:
            self._call(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks[event]:
                    self._callbacks[event].remove(callback)

        return unsubscribe

    # -- used by the work function -------------------------------------------
    def set_progress(self, fraction: float, message: str | None = None) -> None:
        with self._lock:
            self._progress = float(min(max(fraction, 0.0), 1.0))
            if message is not None:
                self.message = message
        self._fire("progress")

    def add_history(self, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
        if isinstance(rows, dict):
            rows = [rows]
        with self._lock:
            self._history_rows.extend(dict(r) for r in rows)
        self._fire("history")

    # -- internals -----------------------------------------------------------
    def _set_status(self, status: JobStatus) -> None:
        self._status = status
        self._fire("status")

    def _call(self, callback: Callback) -> None:
        try:
            callback(self)
        except Exception:  # a subscriber must never break the work
            log.exception("job callback %r raised", callback)

    def _fire(self, event: str) -> None:
        with self._lock:
            callbacks = list(self._callbacks[event])
        for cb in callbacks:
            self._call(cb)

    def _run(self) -> None:
        with self._lock:
            self._thread = threading.current_thread()
            if self._stop.is_set():  # stopped while queued
                self._finish(JobStatus.STOPPED, "stopped before it started")
                return
            self.started = time.time()
            self._thread = threading.current_thread()
            self._set_status(JobStatus.RUNNING)
            self.message = "running"
        try:
            self._work(self)
        except BaseException as exc:
            self.error = exc
            log.debug("job %s failed", self.kind, exc_info=True)
            self._finish(JobStatus.FAILED, f"failed: {exc}")
            return
        if self._stop.is_set():
            self._finish(JobStatus.STOPPED, self.message if self.message != "running" else "stopped")
        else:
            self._progress = 1.0
            self._finish(JobStatus.FINISHED, self.message if self.message != "running" else "finished")

    def _finish(self, status: JobStatus, message: str) -> None:
        with self._lock:
            self.ended = time.time()
            self.message = message
            self._set_status(status)
        try:
            self._fire("done")
        finally:
            # set last: wait() returns only after the "done" callbacks ran, so a
            # caller that waits and then closes the project never races them
            self._done.set()


class JobQueue:
    """Runs heavy jobs one at a time in a single daemon worker thread."""

    def __init__(self, name: str = "deepblock-jobs") -> None:
        self._name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._jobs: list[Job] = []
        self._callbacks: list[Callback] = []

    def submit(self, kind: str, work: Callable[[Job], Any], *, description: str = "") -> Job:
        job = Job(kind, work, description=description)
        with self._lock:
            self._jobs.append(job)
            self._queue.put(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        for cb in list(self._callbacks):
            job.on("status", cb)
            try:
                cb(job)
            except Exception:
                log.exception("job queue callback raised")
        return job

    def on_job(self, callback: Callback) -> None:
        """Call ``callback(job)`` when a job is submitted and on each status change."""
        self._callbacks.append(callback)

    @property
    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    @property
    def active(self) -> Job | None:
        """The running job, else the first queued one, else None."""
        for job in self.jobs:
            if not job.status.done:
                return job
        return None

    def stop_all(self) -> None:
        for job in self.jobs:
            job.stop()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has ended; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.jobs:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not job.wait(left).done:
                return False
        return True

    def _loop(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if job is None:
                return
            job._run()
