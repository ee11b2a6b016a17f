"""Small helpers shared by the widgets: the UI thread, throttling, subscriptions, messages.

Widget work never runs on the thread that reports a change (a training job, a
project event from a job thread): events only mark a :class:`Throttle` pending,
and one long-lived daemon thread per kernel, ``deepblock-ui``, runs the widget
updates, coalesced. Button and trait handlers (the kernel's main thread) may
still update widgets directly.
"""

from __future__ import annotations

import html
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from deepblock_nb.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "DRAW_LOCK",
    "UI_THREAD_NAME",
    "JobPanel",
    "Subscriptions",
    "Throttle",
    "error_html",
    "follow_job",
    "guarded",
    "info_html",
    "on_ui_thread",
    "ui_idle",
]

log = logging.getLogger(__name__)

# ipycanvas batches drawing through one global manager (hold_canvas); drawing
# from a worker thread and the main thread at once must not interleave.
DRAW_LOCK = threading.RLock()


UI_THREAD_NAME = "deepblock-ui"


class _Dispatcher:
    """The kernel's one UI thread: runs every pending :class:`Throttle`, coalesced.

    Workers only mark a throttle pending and notify the condition (O(1), under a
    lock that is never held while widget code runs). The thread starts on the
    first notification and is a daemon; if it ever died, the next one starts it
    again.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.ready: dict[Throttle, None] = {}  # pending throttles, oldest first (an ordered set)
        self.current: Throttle | None = None  # the one this thread is running
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def wake(self, throttle: Throttle) -> None:
        """Queue ``throttle`` (call with ``cond`` held)."""
        self.ready[throttle] = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=UI_THREAD_NAME, daemon=True)
            self._thread.start()
        self.cond.notify_all()

    def _next(self) -> Throttle:
        """Wait for the next throttle that is due and not running (with ``cond`` held)."""
        while True:
            now = time.monotonic()
            wait: float | None = None
            for th in self.ready:
                if th._runner is not None or th._flushers:
                    continue  # running, or about to, inline on the main thread: look again after
                if th._due <= now:
                    return th
                wait = th._due - now if wait is None else min(wait, th._due - now)
            self.cond.notify_all()  # ui_idle() waiters: nothing due now
            self.cond.wait(wait)

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self.cond:
                th = self._next()
                th._start(me)
                self.current = th
            try:
                th._invoke()
            except BaseException:  # even SystemExit from a widget must not end the UI thread
                log.exception("widget update %r ended the UI thread's call", th)
            finally:
                with self.cond:
                    th._end()
                    self.current = None
                    self.cond.notify_all()

    def reset_after_fork(self) -> None:
        # the child has no UI thread, and the lock may have been held by one
        self.cond = threading.Condition(threading.Lock())
        self.ready, self.current, self._thread = {}, None, None


_UI = _Dispatcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_UI.reset_after_fork)


def on_ui_thread() -> bool:
    """True on the widgets' UI thread."""
    return threading.current_thread() is _UI.thread


def ui_idle(timeout: float = 5.0) -> bool:
    """Wait until no throttle is pending or running on the UI thread (tests, notebooks).

    Returns False when ``timeout`` seconds passed first. On the UI thread itself it
    cannot wait for itself, and says whether anything else is pending.
    """
    with _UI.cond:
        if on_ui_thread():
            return not _UI.ready
        return _UI.cond.wait_for(lambda: not _UI.ready and _UI.current is None, timeout)


class Throttle:
    """Run ``fn()`` on the UI thread at most once per ``interval`` seconds, always
    ending with a run after the last call.

    ``__call__`` may come from any thread, as often as events arrive: it only marks
    the throttle pending and wakes the UI thread (never runs or waits for widget
    code). The UI thread runs ``fn`` as soon as ``interval`` has passed since its
    previous run started, so the first call of a quiet spell runs at once and a
    burst becomes one run per interval plus a trailing one. ``fn`` never runs twice
    at the same time and its exceptions are logged, not raised.
    """

    def __init__(self, fn: Callable[[], None], interval: float = 0.1) -> None:
        if not callable(fn):
            raise ArgumentTypeError(f"Throttle needs a function to call, got {type(fn).__name__}")
        if not interval >= 0:  # also refuses NaN
            raise ArgumentError(f"Throttle interval must be >= 0 seconds, got {interval!r}")
        self._fn = fn
        self.interval = float(interval)
        self.calls = 0  # how many times fn ran
        # the state below is guarded by the dispatcher's lock
        self._pending = False
        self._due = 0.0  # monotonic time from which a pending call may run
        self._last = -math.inf  # when the last run started
        self._runner: threading.Thread | None = None  # the thread running fn now
        self._flushers = 0  # main-thread flushes waiting for a run in progress to end
        self._closed = False

    def __call__(self) -> None:
        with _UI.cond:
            if self._closed or self._pending:
                return  # a run is already due: this call merges into it
            self._pending = True
            self._due = self._last + self.interval
            _UI.wake(self)

    def flush(self) -> None:
        """Run a pending (or a first) call as soon as possible, ignoring ``interval``.

        On the main (kernel) thread, e.g. in a button handler, ``fn`` runs here and
        now, after a run in progress on the UI thread ends. From any other thread
        the run is queued on the UI thread. A cancelled throttle stays silent.
        """
        me = threading.current_thread()
        with _UI.cond:
            if self._closed:
                return
            if me is not threading.main_thread() or self._runner is me:
                # a worker, the UI thread, or fn itself: queue a run on the UI thread, due now
                self._pending = True
                self._due = time.monotonic()
                _UI.wake(self)
                return
            self._flushers += 1  # the UI thread leaves this throttle to us meanwhile
            try:
                while self._runner is not None:  # never two runs at once
                    _UI.cond.wait()
            finally:
                self._flushers -= 1
            if self._closed:
                return
            self._start(me)
        try:
            self._invoke()
        finally:
            with _UI.cond:
                self._end()
                _UI.cond.notify_all()

    def cancel(self) -> None:
        """Drop a pending call, refuse later ones, and wait for a run in progress to end.

        Called from inside ``fn`` (on whichever thread runs it), it returns at once.
        """
        me = threading.current_thread()
        with _UI.cond:
            self._closed = True
            self._pending = False
            _UI.ready.pop(self, None)
            while self._runner is not None and self._runner is not me:
                _UI.cond.wait()

    # -- called with the dispatcher's lock held, around _invoke -------------------------
    def _start(self, runner: threading.Thread) -> None:
        _UI.ready.pop(self, None)  # this run serves every notification so far
        self._pending = False
        self._runner = runner
        self._last = time.monotonic()
        self.calls += 1

    def _end(self) -> None:
        self._runner = None

    def _invoke(self) -> None:
        try:
            self._fn()
        except Exception:  # a widget update must never break the UI thread
            log.exception("throttled widget update %r failed", self._fn)

    def __repr__(self) -> str:
        return f"<Throttle {getattr(self._fn, '__qualname__', self._fn)!r} every {self.interval:g} s>"


class Subscriptions:
    """Unsubscribe functions collected from ``project.on`` / ``job.on``, and the
    throttles they feed; ``close()`` unsubscribes, then cancels the throttles."""

    def __init__(self) -> None:
        self._offs: list[Callable[[], None]] = []
        self._throttles: list[Throttle] = []

    def add(self, off: Callable[[], None]) -> None:
        self._offs.append(off)

    def own(self, throttle: Throttle) -> Throttle:
        """Cancel ``throttle`` on ``close()``; returns it."""
        self._throttles.append(throttle)
        return throttle

    def close(self) -> None:
        offs, self._offs = self._offs, []
        for off in offs:
            try:
                off()
            except Exception:
                log.exception("unsubscribe failed")
        throttles, self._throttles = self._throttles, []
        for th in throttles:
            th.cancel()


def follow_job(
    job: Any, subs: Subscriptions, throttle: Throttle, events: tuple[str, ...] = ("progress",)
) -> None:
    """Redraw through ``throttle`` on each of ``events`` of ``job``, and as soon as
    possible on its status changes and end (all on the UI thread: the job's thread
    only queues); ``subs`` drops the previous job's subscriptions."""
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
