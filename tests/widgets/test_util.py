"""Throttle: many events from worker threads become a few widget updates, the last one always."""

from __future__ import annotations

import threading
import time

from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html, guarded
from tests.widgets.conftest import wait_until


def test_throttle_merges_bursts_and_always_runs_the_last_call() -> None:
    seen: list[int] = []
    state = {"n": 0}
    throttle = Throttle(lambda: seen.append(state["n"]), interval=0.05)

    def burst() -> None:
        for _ in range(200):
            state["n"] += 1
            throttle()
            time.sleep(0.0005)

    workers = [threading.Thread(target=burst) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert wait_until(lambda: bool(seen) and seen[-1] == 600, 2)
    assert len(seen) < 100  # 600 events, about 20 updates a second of calls
    assert throttle.calls == len(seen)


def test_throttle_flush_runs_now_and_cancel_drops_pending() -> None:
    seen: list[float] = []
    throttle = Throttle(lambda: seen.append(time.monotonic()), interval=10.0)
    throttle()
    throttle()  # pending for 10 s
    assert len(seen) == 1
    throttle.flush()
    assert len(seen) == 2
    throttle()
    throttle.cancel()
    time.sleep(0.05)
    assert len(seen) == 2
    throttle()
    throttle.flush()  # a cancelled throttle (its widget closed) stays silent
    assert len(seen) == 2


def test_throttle_survives_a_failing_update() -> None:
    def boom() -> None:
        raise RuntimeError("widget gone")

    throttle = Throttle(boom, interval=0.0)
    throttle()  # logged, not raised into the worker
    assert throttle.calls == 1


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
    subs.close()
    subs.close()
    assert calls == [1, 2]
