"""The Predict stage in a real JupyterLab and Chromium, checked in the project's SQLite file.

One JupyterLab server, one browser and one notebook for the module; the tests run in file
order and build on each other: two PNG files uploaded through the file input land in the
predict split; with seeded predictions a keyboard move of the threshold slider changes the
drawn box count and the statistics table in the page; "Start camera" then "Capture" with
Chromium's fake camera adds a predict image. Code runs in the notebook's kernel through a
second kernel client; the SQLite file is only ever read, read-only, from here.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
Screenshots are written under the module's temporary directory (printed with ``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.widgets._browser import (
    Kernel,
    Store,
    notebook_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "predict.ipynb"
CELLS = [
    "import ipywidgets as W\n"
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.widgets import PredictPanel, Statistics\n"
    "project = dbn.Project.create('proj', categories=['disc', 'square'])\n"
    "panel = PredictPanel(project, width=480, height=320)\n"
    "stats = Statistics(project, panel=panel)\n"
    "W.VBox([panel, stats])",
]
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@dataclass
class Session:
    page: Any
    kernel: Kernel
    store: Store
    shots: Path
    files: Path

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def until_kernel(self, expr: str, timeout: float = 20.0) -> Any:
        deadline = time.time() + timeout
        value = self.kernel.json(expr)
        while not value and time.time() < deadline:
            time.sleep(0.2)
            value = self.kernel.json(expr)
        return value

    def predict_images(self) -> list[tuple[str, int, int]]:
        return [
            (str(r[0]), int(r[1]), int(r[2]))
            for r in self.store.rows(
                "SELECT name, width, height FROM images WHERE split = 'predict' ORDER BY id"
            )
        ]

    def table(self) -> dict[str, tuple[int, int]]:
        """The statistics table as the page shows it: {row: (this image, all predict images)}."""
        rows = self.page.locator("table.deepblock-table tr").all_inner_texts()
        out = {}
        for row in rows:
            cells = row.split("\t")
            if len(cells) == 3 and cells[1].strip().isdigit():
                out[cells[0].strip()] = (int(cells[1]), int(cells[2]))
        return out


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    work = tmp_path_factory.mktemp("browser_predict")
    shots = work / "shots"
    shots.mkdir()
    files = work / "files"
    files.mkdir()
    print(f"\nscreenshots: {shots}")
    viewport = {"width": 1400, "height": 1200}
    with notebook_page(work, NOTEBOOK, CELLS, viewport=viewport, args=FAKE_CAMERA) as (page, kernel):
        store = Store(work / "root" / "proj" / "project.db")
        try:
            page.locator("button", has_text="Start camera").first.wait_for(timeout=120_000)
            page.locator("table.deepblock-table").first.wait_for(timeout=60_000)
            time.sleep(0.5)
            yield Session(page, kernel, store, shots, files)
        finally:
            store.close()


def _wait_text(s: Session, text: str, timeout: float = 20_000) -> None:
    """Wait until the page shows ``text``; on a timeout, say what the kernel's widgets hold."""
    try:
        s.page.get_by_text(text).first.wait_for(timeout=timeout)
    except Exception as exc:
        s.shot("failed")
        state = s.kernel.json("[panel.info.value, panel.status.value, panel.shown, stats.caption.value]")
        raise AssertionError(f"the page does not show {text!r}; the kernel has {state}") from exc


def _png(path: Path, w: int, h: int, value: int) -> Path:
    rgb = np.full((h, w, 3), value, np.uint8)
    rgb[h // 4 : h // 2, w // 4 : w // 2] = 255 - value
    Image.fromarray(rgb).save(path)
    return path


# -- 1. two PNG files through the file input ------------------------------------------------
def test_uploading_two_files_adds_two_predict_images(session: Session) -> None:
    s = session
    a = _png(s.files / "a.png", 400, 300, 40)
    b = _png(s.files / "b.png", 320, 240, 160)
    s.shot("00-opened")
    # the FileUpload's <input type=file> is kept out of the DOM: a click on the button opens
    # the file chooser, as for a person, and the files are chosen there
    with s.page.expect_file_chooser(timeout=30_000) as chooser:
        s.page.locator("button.widget-upload").first.click()
    assert chooser.value.is_multiple()
    chooser.value.set_files([str(a), str(b)])
    images = s.store.wait(lambda: len(s.predict_images()) == 2 and s.predict_images(), timeout=30)
    assert images == [("a.png", 400, 300), ("b.png", 320, 240)]
    status = s.kernel.json("panel.status.value")
    assert "added a.png (400 x 300), b.png (320 x 240)" in status, status
    _wait_text(s, "added a.png (400 x 300), b.png (320 x 240)")
    assert s.kernel.json("len(panel.upload.value)") == 0  # the bytes are released
    assert (
        s.kernel.json(
            "sorted(p.name for p in (project.path / 'cache' / 'uploads').rglob('*') if p.is_file())"
        )
        == []
    )
    s.shot("01-uploaded")


# -- 2. the threshold slider refilters the drawn boxes and the statistics -------------------
def test_the_threshold_slider_changes_boxes_and_statistics(session: Session) -> None:
    s = session
    s.kernel.run(
        "import numpy as np\n"
        "from tests.widgets.conftest import seed_predictions\n"
        "boxes = np.array([[20, 20, 120, 100], [150, 40, 260, 140], [40, 160, 180, 280], [250, 180, 390, 290]], float)\n"
        "seed_predictions(project, 'a.png', boxes, [1, 2, 1, 2], [0.2, 0.55, 0.7, 0.95])\n"
        "seed_predictions(project, 'b.png', boxes[:2] * 0.8, [2, 1], [0.58, 0.8])\n"
        "panel.image_list.value = project.image('a.png').id\n"
    )
    _wait_text(s, "3 boxes at threshold 50 %")
    at50 = {"disc": (1, 2), "square": (2, 3), "total": (3, 5)}
    assert s.store.wait(lambda: s.table() == at50, timeout=20), s.table()
    s.page.locator(".jp-OutputArea-output canvas").first.scroll_into_view_if_needed()
    time.sleep(0.5)
    s.shot("02-threshold-50")
    # the keyboard on the slider's handle: ten steps of 1 % up
    handle = s.page.locator(".widget-slider .noUi-handle").first
    handle.focus()
    for _ in range(10):
        handle.press("ArrowRight")
    assert s.until_kernel("abs(project.threshold - 0.6) < 1e-9"), s.kernel.json("project.threshold")
    _wait_text(s, "2 boxes at threshold 60 %")
    at60 = {"disc": (1, 2), "square": (1, 1), "total": (2, 3)}
    assert s.store.wait(lambda: s.table() == at60, timeout=20), s.table()
    assert s.kernel.json("[panel.shown, panel.threshold.value]") == [2, 60]
    assert s.page.locator(".widget-slider .widget-readout").first.inner_text().strip() == "60"
    s.shot("03-threshold-60")
    # the chart shows the same numbers: one bar per category and column, heights in proportion
    assert s.kernel.json("np.asarray(stats.bars.y).astype(int).tolist()") == [[1, 1], [2, 1]]
    figure = s.page.locator(".bqplot").first
    figure.scroll_into_view_if_needed()
    time.sleep(0.5)
    figure.screenshot(path=str(s.shots / "03-chart-60.png"))
    heights = s.page.evaluate(
        "() => Array.from(document.querySelectorAll('.bqplot .bargroup rect.bar'))"
        ".map(r => Math.round(r.getBBox().height))"
    )
    assert len(heights) == 4 and min(heights) > 0, heights
    assert sorted(heights)[-1] == pytest.approx(2 * sorted(heights)[0], abs=2), heights  # 2 vs 1 boxes
    # set from a cell: the slider, the boxes and the table follow
    s.kernel.run("project.threshold = 0.1")
    _wait_text(s, "4 boxes at threshold 10 %")
    assert s.store.wait(lambda: s.table() == {"disc": (2, 3), "square": (2, 3), "total": (4, 6)}, timeout=20)
    s.shot("04-threshold-10")


# -- 3. the fake camera: "Start camera" then "Capture" adds a predict image ------------------
def test_camera_capture_adds_a_predict_image(session: Session) -> None:
    s = session
    before = len(s.predict_images())
    s.page.locator("button", has_text="Start camera").first.click()
    s.page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v && v.videoWidth > 0; }", timeout=30_000
    )
    capture = s.page.locator("button", has_text="Capture").first
    assert capture.is_enabled()
    time.sleep(0.5)
    s.shot("05-camera")
    capture.click()  # one click
    images = s.store.wait(lambda: len(s.predict_images()) == before + 1 and s.predict_images(), timeout=30)
    assert images, "the captured frame was not stored"
    name, w, h = images[-1]
    assert name.startswith("webcam-") and name.endswith(".png") and w > 0 and h > 0
    s.page.locator("span", has_text=f"captured {w} x {h}").first.wait_for(timeout=20_000)
    shown = s.until_kernel(f"panel.image.name == {name!r} and panel.webcam.frames == 1", 10)
    assert shown, s.kernel.json("[panel.image.name, panel.webcam.frames]")
    s.shot("06-captured")
