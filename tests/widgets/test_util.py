"""Throttle and the UI thread: events from worker threads become a few widget updates,
all on the one "deepblock-ui" thread, the last one always."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from deepblock_nb.errors import ArgumentError, ArgumentTypeError
from deepblock_nb.widgets._util import (
    UI_THREAD_NAME,
    Subscriptions,
    Throttle,
    error_html,
    guarded,
    on_ui_thread,
    ui_idle,
)
from tests.widgets.conftest import settled, wait_until

MAIN = threading.main_thread().name


def _ui_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == UI_THREAD_NAME]


def test_many_notifications_from_workers_run_few_times_on_the_ui_thread_only() -> None:
    runs: list[tuple[str, int]] = []  # (thread, notifications seen) per run
    lock = threading.Lock()
    state = {"n": 0}

    def fn() -> None:
        with lock:
            seen = state["n"]
        runs.append((threading.current_thread().name, seen))

    interval = 0.05
    throttle = Throttle(fn, interval=interval)
    before = threading.active_count()

    def notify() -> None:
        for k in range(250):
            with lock:
                state["n"] += 1
            throttle()
            if k % 10 == 0:
                time.sleep(0.005)  # spread the burst over a few intervals

    workers = [threading.Thread(target=notify, name=f"worker-{i}", daemon=True) for i in range(4)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    elapsed = time.monotonic() - t0
    assert not any(w.is_alive() for w in workers)
    settled()
    assert state["n"] == 1000
    assert {name for name, _ in runs} == {UI_THREAD_NAME}  # never on a worker
    assert runs[-1][1] == 1000  # a run after the last notification: no update lost
    assert throttle.calls == len(runs)
    # at most one run per interval (plus the first and the trailing one), far fewer than 1,000
    assert len(runs) <= elapsed / interval + 3 and len(runs) < 100
    # no thread per burst or per widget: the one UI thread at most
    assert threading.active_count() <= before + 1
    assert len(_ui_threads()) == 1


def test_a_notification_never_waits_for_widget_code() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        ran.append(threading.current_thread().name)
        started.set()
        release.wait(5)

    throttle = Throttle(slow, interval=0.0)
    throttle()
    assert started.wait(5)
    took: list[float] = []

    def notify() -> None:
        t0 = time.perf_counter()
        for _ in range(1000):
            throttle()
        took.append(time.perf_counter() - t0)

    worker = threading.Thread(target=notify, daemon=True)
    worker.start()
    worker.join(5)
    assert took and took[0] < 1.0  # fn is still blocked: the worker did not wait for it
    assert len(ran) == 1
    release.set()
    settled()
    assert len(ran) == 2  # 1,000 notifications during the run became one trailing run
    assert ran == [UI_THREAD_NAME] * 2


def test_the_same_function_never_runs_twice_at_once() -> None:
    active, most = [0], [0]
    lock = threading.Lock()

    def fn() -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.002)
        with lock:
            active[0] -= 1

    throttle = Throttle(fn, interval=0.0)
    stop = threading.Event()

    def notify() -> None:
        while not stop.is_set():
            throttle()
            throttle.flush()  # from a worker: queued on the UI thread

    workers = [threading.Thread(target=notify, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        for _ in range(30):
            throttle.flush()  # from the main thread: runs here, after a run in progress ends
    finally:
        stop.set()
        for w in workers:
            w.join(5)
    settled()
    assert throttle.calls >= 31
    assert most[0] == 1


def test_flush_runs_inline_on_the_main_thread_and_is_queued_from_others() -> None:
    seen: list[str] = []
    throttle = Throttle(lambda: seen.append(threading.current_thread().name), interval=10.0)
    throttle()  # the first call of a quiet spell runs at once, on the UI thread
    settled()
    assert seen == [UI_THREAD_NAME]
    throttle()  # pending for 10 s
    assert not ui_idle(0.1)  # still waiting for its interval
    assert seen == [UI_THREAD_NAME]
    throttle.flush()  # a button handler: now, here
    assert seen == [UI_THREAD_NAME, MAIN]
    settled(0.5)  # the pending call was the one flushed: nothing is left
    worker = threading.Thread(target=throttle.flush, daemon=True)
    worker.start()
    worker.join(5)
    assert wait_until(lambda: len(seen) == 3, 2)  # well before the 10 s interval
    assert seen[-1] == UI_THREAD_NAME


def test_cancel_drops_pending_work_and_silences_the_throttle() -> None:
    seen: list[float] = []
    throttle = Throttle(lambda: seen.append(time.monotonic()), interval=10.0)
    throttle.flush()
    throttle()  # pending for 10 s
    throttle.cancel()
    settled(1.0)  # cancelled work is not waited for
    throttle()
    throttle.flush()  # a cancelled throttle (its widget closed) stays silent
    worker = threading.Thread(target=throttle.flush, daemon=True)
    worker.start()
    worker.join(5)
    settled(1.0)
    assert len(seen) == 1 and throttle.calls == 1


def test_cancel_waits_for_a_run_in_progress() -> None:
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    throttle = Throttle(slow, interval=0.0)
    throttle()
    assert started.wait(5)
    throttle.cancel()
    assert finished.is_set()  # cancel returned only after the run ended


def test_cancel_and_flush_from_inside_fn_do_not_deadlock() -> None:
    seen: list[str] = []

    def closing() -> None:
        seen.append(threading.current_thread().name)
        closer.cancel()  # a widget closing itself from its own update

    closer = Throttle(closing, interval=0.0)
    closer()
    settled(2.0)
    closer()
    settled(2.0)
    assert seen == [UI_THREAD_NAME]

    again: list[str] = []

    def rerun() -> None:
        again.append(threading.current_thread().name)
        if len(again) < 3:
            rerunner.flush()  # asks for one more run, on the UI thread

    rerunner = Throttle(rerun, interval=0.0)
    rerunner.flush()  # inline on the main thread; its own flushes are queued
    settled(2.0)
    assert again == [MAIN, UI_THREAD_NAME, UI_THREAD_NAME]
    inline = Throttle(lambda: inline.cancel(), interval=0.0)
    inline.flush()  # cancel inside an inline run on the main thread returns too
    assert inline.calls == 1


def test_a_failing_update_is_logged_and_the_ui_thread_lives_on(caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("widget gone")

    def fatal() -> None:
        raise SystemExit(3)

    where: list[threading.Thread] = []
    ok = Throttle(lambda: where.append(threading.current_thread()), interval=0.0)
    ok()
    settled()
    with caplog.at_level(logging.ERROR, logger="deepblock_nb.widgets._util"):
        for bad in (Throttle(boom, interval=0.0), Throttle(fatal, interval=0.0)):
            bad()  # nothing is raised into the caller
            settled()
            assert bad.calls == 1
    assert "widget gone" in caplog.text and "SystemExit" in caplog.text
    ok()
    settled()
    assert len(where) == 2 and where[0] is where[1]  # the same UI thread ran both
    assert where[0].is_alive() and len(_ui_threads()) == 1


def test_ui_idle_waits_with_a_timeout_and_on_ui_thread_tells_where_it_runs() -> None:
    release = threading.Event()
    inside: list[bool] = []

    def slow() -> None:
        inside.append(on_ui_thread())
        inside.append(ui_idle(0.1))  # on the UI thread it cannot wait for itself
        release.wait(5)

    throttle = Throttle(slow, interval=0.0)
    throttle()
    t0 = time.monotonic()
    assert not ui_idle(0.2)
    assert time.monotonic() - t0 < 2.0
    release.set()
    settled()
    assert inside == [True, True] and not on_ui_thread()


def test_bad_arguments_raise_argument_errors() -> None:
    with pytest.raises(ArgumentError, match="interval"):
        Throttle(lambda: None, interval=-1)
    with pytest.raises(ValueError, match="interval"):
        Throttle(lambda: None, interval=float("nan"))
    with pytest.raises(ArgumentTypeError, match="function"):
        Throttle(None, interval=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Throttle(None)  # type: ignore[arg-type]


def test_guarded_and_subscriptions() -> None:
    errors: list[BaseException] = []
    f = guarded(lambda x: 1 / x, errors.append)
    assert f(2) == 0.5 and f(0) is None
    assert isinstance(errors[0], ZeroDivisionError)
    assert "ZeroDivisionError" in error_html(errors[0]) and "&lt;b&gt;" in error_html("<b>")
    calls: list[int] = []
    subs = Subscriptions()
    subs.add(lambda: calls.append(1))
    subs.add(lambda: calls.append(2))
    owned = subs.own(Throttle(lambda: calls.append(3), interval=10.0))
    owned.flush()
    owned()  # pending: dropped on close
    subs.close()
    subs.close()
    settled(1.0)
    owned.flush()
    assert calls == [3, 1, 2]
