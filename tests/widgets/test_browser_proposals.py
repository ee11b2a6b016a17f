"""Model-assisted labelling in a real JupyterLab and Chromium, checked in the project's SQLite file.

A run (the rectangle detector of ``tests.ml.rect_scene`` behind a real checkpoint) pre-labels
an image; its proposals are drawn dotted on the Labeler's canvas; one is accepted with a
click and the "a" key, another with a click and the "Accept" button; each is then an
annotation with source "accepted" in the SQLite file, and its proposal says so. Code runs in
the notebook's kernel through a second kernel client; the SQLite file is only read.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.widgets._browser import (
    RECORD_CANVASES,
    Store,
    notebook_page,
)
from tests.widgets.test_browser_labeler import Session, _overlay_matches

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "proposals.ipynb"
CELLS = [
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.widgets import Labeler\n"
    "from deepblock_nb.widgets._viewport import convert\n"
    "from tests.ml.rect_scene import RectangleDetector\n"
    "from tests.project.test_prediction import _add_run\n"
    "from tests.project.test_proposals import BOXES, write_rects\n"
    "project = dbn.Project.create('proj', categories=['red', 'blue'])\n"
    "project.add_image(write_rects(project.path.parent / 'a.png', BOXES), split='train')\n"
    "run = _add_run(project)\n"
    "project.prelabel(run=run, model=RectangleDetector()).wait(120, raise_on_error=True)\n"
    "lab = Labeler(project, width=600, height=450)\n"
    "lab",
]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    work = tmp_path_factory.mktemp("browser_proposals")
    shots = work / "shots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    viewport = {"width": 1400, "height": 1000}
    with notebook_page(work, NOTEBOOK, CELLS, viewport=viewport, init_script=RECORD_CANVASES) as (
        page,
        kernel,
    ):
        root = work / "root"
        store = Store(root / "proj" / "project.db")
        try:
            s = Session(page, kernel, store, shots, root)
            s.canvas_box()
            page.locator(".jp-OutputArea-output canvas").last.scroll_into_view_if_needed()
            s.until_kernel("lab.view.viewport is not None and lab.view.renders > 0", timeout=60)
            time.sleep(0.5)
            yield s
        finally:
            store.close()


def _canvas(s: Session, xyxy: list[float]) -> list[float]:
    """Image box -> canvas pixels, by the kernel's viewport."""
    return list(s.kernel.json(f"convert(lab.view.viewport, {xyxy}, 'view').tolist()"))


def _accepted(s: Session) -> list[tuple[Any, ...]]:
    return s.store.rows(
        "SELECT a.x1, a.y1, a.x2, a.y2, a.source, p.state FROM annotations a "
        "JOIN proposals p ON p.annotation_id = a.id ORDER BY a.id"
    )


def test_a_proposal_on_the_canvas_is_accepted_with_mouse_and_key(session: Session) -> None:
    s = session
    assert s.until_kernel("lab.proposals_layer.shown == 2"), s.kernel.json("lab.proposals_layer.info.value")
    red = s.kernel.json("project.category('red').color")
    box = _canvas(s, [20, 30, 80, 90])
    share, what = _overlay_matches(s, tuple(box), red)
    assert share >= 0.4, what  # dotted: gaps between the dots
    s.page.get_by_text("2 proposals").first.wait_for(timeout=20_000)
    s.shot("01-proposals")
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    s.click(centre)
    assert s.until_kernel("lab.proposals_layer.selected is not None")
    s.page.keyboard.press("a")
    rows = s.store.wait(lambda: _accepted(s), timeout=20)
    assert rows == [(20.0, 30.0, 80.0, 90.0, "accepted", "accepted")]
    assert s.store.rows("SELECT count(*) FROM annotations") == [(1,)]
    assert s.until_kernel("lab.proposals_layer.shown == 1")
    s.shot("02-accepted-with-key")


def test_the_accept_button_takes_the_selected_proposal(session: Session) -> None:
    s = session
    box = _canvas(s, [120, 40, 170, 100])
    s.click(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    assert s.until_kernel("lab.proposals_layer.selected is not None")
    s.page.locator("button[title^='accept the selected proposal']").first.click()  # "Accept"
    rows = s.store.wait(lambda: len(_accepted(s)) == 2 and _accepted(s), timeout=20)
    assert rows[1] == (120.0, 40.0, 170.0, 100.0, "accepted", "accepted")
    assert s.until_kernel("lab.proposals_layer.shown == 0")
    s.page.locator(".widget-html", has_text=", 2 boxes").first.wait_for(timeout=20_000)  # the info line
    s.shot("03-accepted-with-button")
