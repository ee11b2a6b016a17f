"""App: one widget with the five stages over one project; the widgets never import torch."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.widgets import App
from tests.widgets.conftest import drag, settled


def test_app_has_the_five_tabs_sharing_one_project(wproject: dbn.Project) -> None:
    app = App(wproject)
    assert [app.tabs.get_title(i) for i in range(5)] == [
        "Preprocess",
        "Divide",
        "Train",
        "Evaluate",
        "Predict",
    ]
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
    assert len(views) == 1, "the last cell shows the App widget"
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
