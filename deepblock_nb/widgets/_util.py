"""Small helpers shared by the widgets: throttling, subscriptions, messages."""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

__all__ = [
    "DRAW_LOCK",
    "JobPanel",
    "Subscriptions",
    "Throttle",
    "error_html",
    "follow_job",
    "guarded",
    "info_html",
]

log = logging.getLogger(__name__)

# ipycanvas batches drawing through one global manager (hold_canvas); drawing
# from a worker thread and the main thread at once must not interleave.
DRAW_LOCK = threading.RLock()


class Throttle:
    """Call ``fn()`` at most once per ``interval`` seconds, always ending with a last call.

    ``__call__`` may come from any thread, as often as events arrive: the first
    call runs at once (on the caller's thread), later ones within the interval
    are merged into one call on a timer thread when the interval ends. ``fn``
    never runs twice at the same time and its exceptions are logged, not raised.
    """

    def __init__(self, fn: Callable[[], None], interval: float = 0.1) -> None:
        self._fn = fn
        self.interval = interval
        self._lock = threading.Lock()
        self._run_lock = threading.RLock()
        self._closed = False
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self.calls = 0  # how many times fn ran

    def __call__(self) -> None:
        with self._lock:
            if self._closed or self._timer is not None:
                return  # a trailing call is already due
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._trailing)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._run()

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
            if self._closed:
                return
        self._run()

    def _run(self) -> None:
        with self._run_lock:
            self.calls += 1
            try:
                self._fn()
            except Exception:  # a widget update must never break the worker that caused it
                log.exception("throttled widget update %r failed", self._fn)

    def flush(self) -> None:
        """Run a pending call now (e.g. when a job ends) instead of waiting for the timer."""
        with self._lock:
            timer, self._timer = self._timer, None
            self._last = time.monotonic()
            closed = self._closed
        if timer is not None:
            timer.cancel()
        if not closed:
            self._run()

    def cancel(self) -> None:
        """Drop a pending call, refuse later ones, and wait for a call in progress to end."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        with self._run_lock:  # reentrant: cancel() from inside fn does not deadlock
            pass


class Subscriptions:
    """Unsubscribe functions collected from ``project.on`` / ``job.on``; ``close()`` calls them all."""

    def __init__(self) -> None:
        self._offs: list[Callable[[], None]] = []

    def add(self, off: Callable[[], None]) -> None:
        self._offs.append(off)

    def close(self) -> None:
        offs, self._offs = self._offs, []
        for off in offs:
            try:
                off()
            except Exception:
                log.exception("unsubscribe failed")


def follow_job(
    job: Any, subs: Subscriptions, throttle: Throttle, events: tuple[str, ...] = ("progress",)
) -> None:
    """Redraw through ``throttle`` on each of ``events`` of ``job``, and at once on
    its status changes and end; ``subs`` drops the previous job's subscriptions."""
    subs.close()
    for event in events:
        subs.add(job.on(event, lambda _job: throttle()))
    subs.add(job.on("status", lambda _job: throttle.flush()))
    subs.add(job.on("done", lambda _job: throttle.flush()))
    throttle.flush()


def error_html(exc: BaseException | str) -> str:
    """A red one-line message for a status label."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return f"<span style='color:#c0392b'>{html.escape(str(text))}</span>"


def info_html(text: str) -> str:
    return f"<span>{html.escape(text)}</span>"


def guarded(fn: Callable[..., Any], on_error: Callable[[BaseException], None]) -> Callable[..., Any]:
    """Wrap a button or trait handler: an exception is passed to ``on_error`` instead of raised."""

    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            on_error(exc)
            return None

    return inner


class JobPanel(W.VBox):
    """Base of the panels that start and follow one job (train, evaluate, predict).

    Subclasses set ``status`` (an HTML line), ``_throttle`` (their redraw),
    ``_subs`` (project subscriptions) and ``_job_subs`` (the followed job's).
    """

    status: W.HTML
    _throttle: Throttle
    _subs: Subscriptions
    _job_subs: Subscriptions

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def close(self) -> None:
        self._throttle.cancel()
        self._job_subs.close()
        self._subs.close()
        super().close()
