"""Project and job events from worker threads: the widgets update on the UI thread only.

Every trait change of every widget and every canvas draw command is recorded with
the thread that made it, while a worker thread changes the project and a training
job runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import traitlets
from ipycanvas import canvas as ipycanvas_canvas
from ipywidgets.widgets.widget import _instances

import deepblock_nb as dbn
from deepblock_nb.widgets import App
from deepblock_nb.widgets import training as training_module
from deepblock_nb.widgets._util import UI_THREAD_NAME, Throttle
from tests.widgets.conftest import seed_predictions, settled, wait_until
from tests.widgets.test_training import _fake_training

WORKER = "project-worker"


@contextlib.contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(thread name, what) for each trait change of the widgets that exist now, each canvas
    command and each curve rebuild, while the block runs."""
    seen: list[tuple[str, str]] = []

    def note(what: str) -> None:
        seen.append((threading.current_thread().name, what))

    def on_change(change: dict) -> None:
        note(f"{type(change['owner']).__name__}.{change['name']}")

    manager = ipycanvas_canvas._CANVAS_MANAGER
    send = manager._send_custom

    def drawing(*args: object, **kwargs: object) -> None:
        note("canvas")
        send(*args, **kwargs)

    curves = training_module.curves_from_history

    def rebuilding(history):  # type: ignore[no-untyped-def]
        note("curves_from_history")
        return curves(history)

    monkeypatch.setattr(manager, "_send_custom", drawing)
    monkeypatch.setattr(training_module, "curves_from_history", rebuilding)
    widgets = list(_instances.values())
    for w in widgets:
        w.observe(on_change, names=traitlets.All)
    try:
        yield seen
    finally:
        for w in widgets:
            w.unobserve(on_change, names=traitlets.All)


def test_events_from_a_worker_thread_update_the_widgets_on_the_ui_thread(
    wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App(wproject)
    train_img, big = wproject.images("train")[0], wproject.images("predict")[0]
    app.labeler.show(train_img)
    app.tiling.image_list.value = train_img.id
    app.predict.image_list.value = big.id
    Throttle(lambda: None)()  # the UI thread runs from here on
    settled()
    threads_before = list(threading.enumerate())
    release = threading.Event()
    jobs: list[dbn.Job] = []

    def work() -> None:  # what a background job or another cell's thread does to the project
        wproject.add_box(train_img, "disc", [1, 1, 30, 30])
        wproject.add_category("star")
        wproject.recolor_category("square", "#00ff00")
        wproject.set_grid(train_img, 2, 2)
        wproject.add_image(np.zeros((20, 30, 3), np.uint8), name="new.png")
        seed_predictions(wproject, big, np.array([[10, 10, 90, 90]], float), [1], [0.9])
        wproject.threshold = 0.3
        wproject._emit("runs", action="created", run=1, report=None)
        # a training job submitted from here: its events come from the job thread
        jobs.append(wproject._jobs.submit("train", _fake_training(2, 5, 0.001, release=release)))

    with recording(monkeypatch) as seen:
        worker = threading.Thread(target=work, name=WORKER, daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
        release.set()
        assert jobs and jobs[0].wait(10).done
        assert wait_until(lambda: app.training.job is jobs[0] and len(app.training.score_line.y) == 2)
        settled()
        workers = {name for name, _ in seen} - {UI_THREAD_NAME}
        assert workers == set(), [s for s in seen if s[0] != UI_THREAD_NAME][:10]
        what = {w for _, w in seen}
    # the updates did happen, all of them on the UI thread
    expected = {"canvas", "curves_from_history", "Bars.y", "Lines.y", "FloatProgress.value", "HTML.value"}
    assert expected <= what, expected - what
    assert "star" in [o[0] for o in app.labeler.category.options]
    assert "grid 2 x 2" in app.labeler.info.value and "2 x 2 grid" in app.tiling.status.value
    assert "new.png" in [o[0].split(" (")[0] for o in app.labeler.image_list.options]
    assert np.isclose(app.predict.threshold.value, 30) and app.predict.shown == 1
    assert app.statistics.totals.tolist()[0] == 1
    assert "finished" in app.training.status.value
    # no thread per event, burst or widget: only the job queue's (idle, it ends after 5 s) is new
    new = [t for t in threading.enumerate() if t not in threads_before]
    assert [t.name for t in new] in ([], [wproject._jobs._name])
    assert len([t for t in threading.enumerate() if t.name == UI_THREAD_NAME]) == 1
    app.close()
