"""The Labeler in a real JupyterLab and Chromium: it renders, and a drag on it stores a box.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._jupyter import jupyter_lab
from tests.widgets._browser import CHROMIUM, CHROMIUM_ARGS, require_browser, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK_CELLS = [
    "import numpy as np\n"
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.widgets import Labeler\n"
    "rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)\n"
    "project = dbn.Project.create('proj', categories=['thing'])\n"
    "project.add_image(rgb, name='a.png')\n"
    "lab = Labeler(project, width=600, height=450)\n"
    "lab",
    "from deepblock_nb.widgets import App\napp = App(project)\napp",
]


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    require_browser()
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "labeler.ipynb", NOTEBOOK_CELLS)
    with jupyter_lab(root, tmp_path) as base:
        yield base, root


def _exactly(label: str) -> re.Pattern[str]:
    """A tab label matched whole and case-sensitively (the stage TRAIN holds the step Train)."""
    return re.compile(rf"^\s*{re.escape(label)}\s*$")


def _boxes(db: Path) -> list[tuple[float, float, float, float]]:
    if not db.is_file():
        return []
    with sqlite3.connect(db) as cx:
        return [tuple(r) for r in cx.execute("SELECT x1, y1, x2, y2 FROM annotations")]


def test_labeler_renders_and_a_drag_stores_a_box(lab_server: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, root = lab_server
    db = root / "proj" / "project.db"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/labeler.ipynb?reset", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            dialog = page.locator(".jp-Dialog button.jp-mod-accept")
            try:
                dialog.first.click(timeout=5_000)  # "Select Kernel", when asked
            except Exception:
                pass
            page.locator("text=Idle >> visible=true").first.wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator('li[data-command="runmenu:run-all"]').click()
            canvas = page.locator(".jp-CodeCell").first.locator(".jp-OutputArea-output canvas").last
            canvas.wait_for(state="visible", timeout=120_000)
            # the whole App renders: its stages and steps, bqplot figures and the anywidget webcam
            page.locator(".lm-TabBar-tabLabel", has_text=_exactly("Divide")).first.wait_for(timeout=60_000)
            page.locator(".lm-TabBar-tabLabel", has_text=_exactly("PREDICT")).first.click()
            page.locator("button", has_text="Start camera").first.wait_for(timeout=60_000)
            assert page.locator(".bqplot").count() >= 1
            page.wait_for_selector(".widget-html:has-text('a.png')", timeout=60_000)
            time.sleep(1.0)  # the first paint reaches the canvas
            canvas.scroll_into_view_if_needed()  # Run All leaves the last cell in view
            time.sleep(0.5)
            page.screenshot(path=str(tmp_path / "labeler-before.png"))
            bb = canvas.bounding_box()
            assert bb is not None and bb["width"] > 100 and bb["height"] > 100
            # 600 x 450 canvas showing a 400 x 300 image at scale 1.5 from the top-left corner
            sx = bb["width"] / 600
            page.mouse.move(bb["x"] + 60 * sx, bb["y"] + 60 * sx)
            page.mouse.down()
            page.mouse.move(bb["x"] + 300 * sx, bb["y"] + 240 * sx, steps=12)
            page.mouse.up()
            deadline = time.time() + 30
            while time.time() < deadline and not _boxes(db):
                time.sleep(0.25)
            page.screenshot(path=str(tmp_path / "labeler-after.png"))
            app_output = page.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output").first
            for stage, step in (
                ("TRAIN", "Preprocess"),
                ("TRAIN", "Divide"),
                ("TRAIN", "Train"),
                ("EVALUATE", None),
                ("PREDICT", None),
            ):
                page.locator(".lm-TabBar-tabLabel", has_text=_exactly(stage)).first.click()
                if step is not None:
                    page.locator(".lm-TabBar-tabLabel", has_text=_exactly(step)).first.click()
                time.sleep(0.3)
                app_output.screenshot(path=str(tmp_path / f"app-{(step or stage).lower()}.png"))
            # one click on "Download JSON" saves the predictions file (none yet: an empty list)
            with page.expect_download(timeout=60_000) as download:
                page.locator("button", has_text="Download JSON").first.click()
            assert download.value.suggested_filename == "predictions.json"
            saved = tmp_path / "downloaded.json"
            download.value.save_as(saved)
            assert json.loads(saved.read_text()) == []
        finally:
            browser.close()
    boxes = _boxes(db)
    assert len(boxes) == 1, "the drag on the canvas stored one box in the project"
    x1, y1, x2, y2 = boxes[0]
    assert abs(x1 - 40) <= 3 and abs(y1 - 40) <= 3 and abs(x2 - 200) <= 3 and abs(y2 - 160) <= 3
