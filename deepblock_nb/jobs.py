"""Background jobs: a worker thread, cooperative stop, progress, history, errors.

A :class:`Job` wraps one piece of heavy work (train, evaluate, predict). The work
function runs in a worker thread and receives the job; it checks
``job.should_stop`` between batches, reports with ``job.set_progress`` and
``job.add_history``, and sets ``job.result``. Every ending goes through one place
(``Job._end``) that sets the status and queues the "done" callbacks.

One :class:`JobQueue` per project runs one heavy job at a time; later ones wait
in the QUEUED state.
"""

from __future__ import annotations

import enum
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pandas as pd

from deepblock_nb.errors import ArgumentError, ArgumentTypeError, JobError

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
    """One background task. Thread-safe.

    State changes under the job's lock; callbacks run after it is released, so a
    callback may take other locks or wait on other threads. They run one event
    at a time, in the order the events happened, each event once. A callback
    runs on the thread that caused its event (the worker for progress and
    endings, the caller for ``stop()``) unless another thread is already running
    this job's callbacks: then that thread runs it next, and the call that
    caused the event returns without waiting. A callback sees the job as it is
    when the callback runs, which may be past the event that called it.

    A job stopped while QUEUED ends at once, on the thread that stopped it: its
    work never runs, its status is STOPPED, its message "stopped before it
    started", and ``started`` stays None. That is how a "done" callback tells it
    apart from a job stopped mid-run (``started`` set)::

        def on_done(job: Job) -> None:
            if job.status is JobStatus.STOPPED and job.started is None:
                ...  # stopped while queued: nothing of its work ran

        job.on("done", on_done)
    """

    _EVENTS = ("progress", "history", "done", "status")

    def __init__(self, kind: str, work: Callable[[Job], Any], *, description: str = "") -> None:
        if not isinstance(kind, str) or not kind:
            raise ArgumentError(f"a job kind must be a non-empty string such as 'train', not {kind!r}")
        if not callable(work):
            raise ArgumentTypeError(f"a job's work must be a function work(job), not {type(work).__name__}")
        self.kind = kind
        self.description = description or kind
        self._work = work
        self._lock = threading.Lock()  # guards state only; never held while a callback runs
        self._stop = threading.Event()
        self._done = threading.Event()  # set after the "done" callbacks ran
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
        self._worker: threading.Thread | None = None  # the thread inside _run, while it is
        self._callbacks: dict[str, list[Callback]] = {e: [] for e in self._EVENTS}
        # events not yet delivered: (event, its subscribers when it happened)
        self._pending: deque[tuple[str, tuple[Callback, ...]]] = deque()
        self._deliverer: threading.Thread | None = None  # the thread running callbacks now

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
        """True once the job ended and its "done" callbacks ran."""
        return self._done.is_set()

    def __repr__(self) -> str:
        pct = f"{100 * self._progress:.0f}%"
        return f"<Job {self.kind} {self._status.value} {pct} {self.message!r}>"

    # -- control -------------------------------------------------------------
    def stop(self) -> Job:
        """Stop the job; a no-op once it ended.

        A RUNNING job becomes STOPPING and ends STOPPED within one batch, keeping
        what it finished. A QUEUED job ends STOPPED now, without running its
        work; its "status" and "done" callbacks run before ``stop()`` returns
        (unless ``stop()`` is called from one of this job's own callbacks: then
        right after that callback).
        """
        with self._lock:
            if self._status.done:
                return self
            self._stop.set()
            if self._status is JobStatus.QUEUED:
                self._end(JobStatus.STOPPED, "stopped before it started")
            elif self._status is JobStatus.RUNNING:
                self._set_status(JobStatus.STOPPING)
        self._deliver()
        return self

    def wait(self, timeout: float | None = None, *, raise_on_error: bool = False) -> Job:
        """Block until the job ended and its "done" callbacks ran (or ``timeout``
        seconds passed); returns the job.

        Called from the job's own work or callbacks it returns at once: the job
        cannot end while its caller waits for it. With ``raise_on_error`` a
        failed job re-raises its error wrapped in JobError.
        """
        me = threading.current_thread()
        if me is self._worker or me is self._deliverer:
            return self
        if not self._done.wait(timeout):
            return self
        if raise_on_error and self._status is JobStatus.FAILED:
            raise JobError(f"{self.kind} job failed: {self.error}") from self.error
        return self

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Subscribe ``callback(job)`` to "progress", "history", "status" or "done";
        returns an unsubscribe function.

        A "done" callback registered after the job ended is called at once, on
        the calling thread.
        """
        if event not in self._callbacks:
            raise ArgumentError(f"unknown job event {event!r}; choose from {', '.join(self._EVENTS)}")
        if not callable(callback):
            raise ArgumentTypeError(f"a job callback must be a function callback(job), not {callback!r}")
        with self._lock:
            ended = event == "done" and self._status.done
            if not ended:
                self._callbacks[event].append(callback)
        if ended:
            self._call(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks[event]:
                    self._callbacks[event].remove(callback)

        return unsubscribe

    # -- used by the work function -------------------------------------------
    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress: ``fraction`` of the work done, clipped to [0, 1]."""
        fraction = float(fraction)
        if math.isnan(fraction):
            raise ArgumentError(f"{self.kind} job: progress must be a fraction in [0, 1], not NaN")
        with self._lock:
            self._progress = min(max(fraction, 0.0), 1.0)
            if message is not None:
                self.message = message
            self._post("progress")
        self._deliver()

    def add_history(self, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
        if isinstance(rows, dict):
            rows = [rows]
        copied = [dict(r) for r in rows]
        with self._lock:
            self._history_rows.extend(copied)
            self._post("history")
        self._deliver()

    # -- internals -----------------------------------------------------------
    # _post, _set_status and _end are called with self._lock held: they change
    # state and queue its event; the caller runs _deliver() after releasing it.
    def _post(self, event: str) -> None:
        self._pending.append((event, tuple(self._callbacks[event])))

    def _set_status(self, status: JobStatus) -> None:
        self._status = status
        self._post("status")

    def _end(self, status: JobStatus, message: str) -> None:
        """Every ending goes through here: FINISHED, STOPPED or FAILED."""
        self.ended = time.time()
        self.message = message
        self._set_status(status)
        self._post("done")

    def _notify(self, callbacks: tuple[Callback, ...]) -> None:
        """Call ``callbacks`` in turn with this job's other events (used on submission)."""
        with self._lock:
            self._pending.append(("notify", callbacks))
        self._deliver()

    def _deliver(self) -> None:
        """Run the pending callbacks in order, unless another thread (or an outer
        frame of this one) is doing so: that one runs them next."""
        with self._lock:
            if self._deliverer is not None:
                return
            self._deliverer = threading.current_thread()
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        # cleared under the same lock that _post appends under:
                        # no event is left behind with nobody to deliver it
                        self._deliverer = None
                        return
                    event, callbacks = self._pending.popleft()
                try:
                    for cb in callbacks:
                        self._call(cb)
                finally:
                    if event == "done":
                        self._done.set()
        except BaseException:  # KeyboardInterrupt in a callback: the next _deliver goes on
            with self._lock:
                self._deliverer = None
            raise

    def _call(self, callback: Callback) -> None:
        try:
            callback(self)
        except Exception:  # a subscriber must never break the work
            log.exception("job callback %r raised", callback)

    def _run(self) -> None:
        """Run the work on this thread; does nothing unless the job is QUEUED."""
        with self._lock:
            if self._status is not JobStatus.QUEUED:  # stopped while queued: the work never runs
                return
            self._worker = threading.current_thread()
            self.started = time.time()
            self.message = "running"
            self._set_status(JobStatus.RUNNING)
        try:
            self._deliver()
            try:
                self._work(self)
            except BaseException as exc:
                log.debug("job %s failed", self.kind, exc_info=True)
                with self._lock:
                    self.error = exc
                    self._end(JobStatus.FAILED, f"failed: {exc}")
            else:
                with self._lock:
                    kept = self.message if self.message != "running" else None
                    if self._status is JobStatus.STOPPING:
                        self._end(JobStatus.STOPPED, kept or "stopped")
                    else:
                        self._progress = 1.0
                        self._end(JobStatus.FINISHED, kept or "finished")
            self._deliver()
        finally:
            with self._lock:
                self._worker = None


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
        """Queue ``work(job)``; returns the QUEUED job.

        The ``on_job`` callbacks are subscribed, and called for the submission,
        before the job can start, so they see every status it goes through.
        """
        job = Job(kind, work, description=description)
        with self._lock:
            callbacks = tuple(self._callbacks)
            self._jobs.append(job)
        for cb in callbacks:
            job.on("status", cb)
        job._notify(callbacks)
        with self._lock:
            self._queue.put(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        return job

    def on_job(self, callback: Callback) -> None:
        """Call ``callback(job)`` when a job is submitted and on each of its status
        changes, in order; jobs submitted before this call are not followed."""
        if not callable(callback):
            raise ArgumentTypeError(f"an on_job callback must be a function callback(job), not {callback!r}")
        with self._lock:
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
            # The "done" callbacks may run on the thread that stopped the job; the
            # next job starts after them. The retry delivers what a callback
            # interrupted (KeyboardInterrupt) on another thread left pending.
            while not job._done.wait(1.0):
                job._deliver()
