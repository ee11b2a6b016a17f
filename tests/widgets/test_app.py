"""App: one widget with the three stages (TRAIN: Preprocess, Divide, Train; EVALUATE;
PREDICT) over one project, a header that follows its jobs; the widgets never import torch."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.jobs import Job
from deepblock_nb.widgets import App
from tests.widgets.conftest import drag, settled, wait_until


def _walk(widget: object) -> list[object]:
    """A widget and every widget under it."""
    found = [widget]
    for child in getattr(widget, "children", ()):
        found += _walk(child)
    return found


def test_app_has_the_three_stages_holding_the_panels_sharing_one_project(wproject: dbn.Project) -> None:
    app = App(wproject)
    assert [app.tabs.get_title(i) for i in range(len(app.tabs.children))] == ["TRAIN", "EVALUATE", "PREDICT"]
    assert list(app.stages) == ["TRAIN", "EVALUATE", "PREDICT"]
    train = app.stages["TRAIN"]
    assert train is app.train_steps
    assert [train.get_title(i) for i in range(len(train.children))] == ["Preprocess", "Divide", "Train"]
    preprocess, divide, training = train.children
    for part in (app.categories, app.importer, app.labeler):
        assert part in _walk(preprocess)
    assert divide is app.tiling and training is app.training
    for part in (app.evaluation, app.eval_labeler):
        assert part in _walk(app.stages["EVALUATE"])
    for part in (app.predict, app.statistics):
        assert part in _walk(app.stages["PREDICT"])
    assert app.children[0] is app.header and app.children[1] is app.tabs
    assert "proj" in app.header.title.value and "idle" in app.header.status.value
    assert app.header.job is None
    for part in (app.labeler, app.tiling, app.training, app.evaluation, app.predict, app.statistics):
        assert part.project is wproject
    # a box drawn in the labeler shows up in the category counts
    n = wproject.box_counts()["disc"]
    app.labeler.category.value = wproject.category("disc").id
    drag(app.labeler.view.canvas, (100, 100), (200, 200))
    assert wproject.box_counts()["disc"] == n + 1
    app.categories._throttle.flush()
    assert f"disc ({n + 1} boxes)" in app.categories.list.options[0][0]
    # a grid applied in Divide appears in the labeler's info
    img = app.labeler.image
    app.tiling.image_list.value = img.id
    app.tiling.rows.value, app.tiling.cols.value = 2, 3
    app.tiling.apply_button.click()
    settled()  # the "grid" event reaches the labeler on the UI thread
    assert "grid 2 x 3" in app.labeler.info.value
    app.close()


def test_category_editor_and_image_import(wproject: dbn.Project) -> None:
    app = App(wproject)
    ed = app.categories
    ed.name.value, ed.color.value = "star", "#123456"
    ed.add_button.click()
    star = wproject.category("star")
    assert star.color == "#123456"
    settled()
    assert "star" in [o[0] for o in app.labeler.category.options]
    ed._throttle.flush()
    ed.list.value = star.id
    ed.name.value = "comet"
    ed.rename_button.click()
    assert wproject.category(star.id).name == "comet"
    ed.list.value = wproject.category("disc").id
    ed.remove_button.click()  # disc has boxes: refused with the project's message
    assert "still has" in ed.status.value
    buf = io.BytesIO()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(buf, format="PNG")
    data = buf.getvalue()
    app.importer.split.value = "evaluate"
    app.importer.upload.set_state(
        {
            "value": [
                {
                    "name": "e1.png",
                    "type": "image/png",
                    "size": len(data),
                    "content": memoryview(data),
                    "last_modified": 0,
                }
            ]
        }
    )
    assert wproject.image("e1.png").split == "evaluate"
    app.importer.path.value = str(wproject.path / "missing.json")
    app.importer.import_button.click()
    assert "missing.json" in app.importer.status.value
    app.close()


def test_importing_the_widgets_does_not_import_torch() -> None:
    code = "import sys, deepblock_nb.widgets; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_app_notebook_runs_on_a_fresh_demo_project(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[2]
    nb = nbformat.read(root / "notebooks" / "app.ipynb", as_version=4)
    monkeypatch.setenv("DEEPBLOCK_DEMO", str(tmp_path / "demo"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, "one cell shows a widget"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first is nb.cells[0], "the notebook starts with the App"
    shown = [o for o in first.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert shown == views, "the first cell's output is the widget"
    assert "App(" in shown[0]["data"]["text/plain"], shown[0]["data"]["text/plain"]
    assert (tmp_path / "demo" / "project.db").is_file()


def _figures(widget: object) -> list[object]:
    """Every bqplot Figure in a widget tree."""
    import bqplot as bq

    if isinstance(widget, bq.Figure):
        return [widget]
    found: list[object] = []
    for child in getattr(widget, "children", ()):
        found += _figures(child)
    return found


def test_every_chart_has_one_horizontal_axis_and_vertical_value_axes(wproject: dbn.Project) -> None:
    """A value axis left at bqplot's default orientation is drawn along the bottom,
    on top of the x axis (the precision-recall chart had no vertical axis)."""
    app = App(wproject)
    try:
        figures = _figures(app)
        assert len(figures) >= 3  # training curves, precision-recall, boxes per category
        for fig in figures:
            kinds = sorted(ax.orientation for ax in fig.axes)  # type: ignore[attr-defined]
            assert kinds.count("horizontal") == 1 and kinds.count("vertical") >= 1, (fig.title, kinds)  # type: ignore[attr-defined]
    finally:
        app.close()


def test_a_click_on_an_error_shows_it_centred_in_the_evaluate_labeler(wproject: dbn.Project) -> None:
    from deepblock_nb.widgets.scorecard import PREDICTED_STYLE, TRUTH_STYLE
    from tests.widgets.test_scorecard import _evaluated

    rec, _ = _evaluated(wproject)
    app = App(wproject)
    try:
        lab = app.eval_labeler
        assert lab.split.value == "evaluate" and [i for _, i in lab.image_list.options] == [rec.id]
        assert lab in app.stages["EVALUATE"].children
        calls: list[tuple[np.ndarray, list[str], float]] = []
        real = lab.view.stroke_boxes

        def recording(xyxy, colors, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(
                (np.asarray(xyxy, float).reshape(-1, 4), list(colors), kwargs.get("line_width", 2.0))
            )
            return real(xyxy, colors, *args, **kwargs)

        lab.view.stroke_boxes = recording  # type: ignore[method-assign]
        lab.view.fit_view()  # the whole image first: the error's box is small there
        errors = app.evaluation.errors
        confused = next(i for label, i in errors.list.options if label.startswith("confused"))
        calls.clear()
        errors.list.value = confused
        row = wproject.evaluation_errors().loc[confused]
        assert lab.image.id == rec.id
        truth, predicted = np.array(row["truth_xyxy"]), np.array(row["predicted_xyxy"])
        vp = lab.view.viewport
        x1, y1, x2, y2 = vp.window
        cx, cy = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
        assert abs((x1 + x2) / 2 - cx) < 3 and abs((y1 + y2) / 2 - cy) < 3
        assert max(truth[2] - truth[0], truth[3] - truth[1]) * vp.scale >= 40
        marked = {c[1][0]: c[0][0] for c in calls if len(c[0]) == 1}
        assert np.allclose(marked[TRUTH_STYLE["color"]], truth)
        assert np.allclose(marked[PREDICTED_STYLE["color"]], predicted)
        assert TRUTH_STYLE["color"] != PREDICTED_STYLE["color"]
        # another image: the marks go
        other = wproject.images("train")[0]
        lab.show(other)
        calls.clear()
        lab.view.redraw_overlay()
        assert app.error_marks is None
        assert all(TRUTH_STYLE["color"] not in c[1] and PREDICTED_STYLE["color"] not in c[1] for c in calls)
    finally:
        app.close()


def test_header_follows_a_running_job_and_returns_to_idle(wproject: dbn.Project) -> None:
    app = App(wproject)
    header = app.header
    seen: list[str] = []
    header.status.observe(lambda c: seen.append(c["new"]), "value")
    at_half, release = threading.Event(), threading.Event()

    def work(job: Job) -> None:
        job.set_progress(0.5, "image 3/6")
        at_half.set()
        release.wait(10)

    try:
        job = wproject._jobs.submit("predict", work)  # the project's own queue: its "jobs" events
        assert at_half.wait(10)
        assert wait_until(lambda: "50%" in header.status.value, 5), header.status.value
        assert "predicting" in header.status.value and "image 3/6" in header.status.value
        assert header.job is job and header.progress.value == 0.5
        assert header.progress.layout.visibility == "visible"
        release.set()
        job.wait(10)
        assert wait_until(lambda: "idle" in header.status.value, 5), header.status.value
        assert header.job is None and header.progress.layout.visibility == "hidden"
        assert any("predicting" in v for v in seen) and seen[-1] == header.status.value
    finally:
        release.set()
        app.close()


@pytest.mark.slow
def test_header_follows_real_training_started_from_a_cell(tmp_path: Path) -> None:
    from tests.widgets.test_training import _tiny_project

    p = _tiny_project(tmp_path / "p")
    app = App(p)
    seen: list[str] = []
    app.header.status.observe(lambda c: seen.append(c["new"]), "value")
    try:
        job = p.train(epochs=2, model="small")
        job.wait(300)
        assert job.status is dbn.JobStatus.FINISHED
        settled()
        assert wait_until(lambda: "idle" in app.header.status.value, 5)
        training = [v for v in seen if "training" in v]
        assert training, seen
        assert any("epoch" in v for v in training), training  # the job's message
        assert app.training.job is job  # the Train panel followed the same job
    finally:
        app.close()
        p.close()


def test_the_app_statistics_follow_the_image_predict_shows(wproject: dbn.Project) -> None:
    app = App(wproject)
    try:
        assert app.predict.image is not None
        assert app.statistics.image == app.predict.image.id
    finally:
        app.close()
