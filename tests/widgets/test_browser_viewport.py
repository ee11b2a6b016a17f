"""ImageView tiles in a real JupyterLab and Chromium: the right colours at the right
canvas pixels after fit, zoom and pan, and the bytes the kernel sends per action.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.widgets._viewport import Viewport, convert, fit, pan, zoom_at
from tests._jupyter import jupyter_lab
from tests.widgets._browser import CHROMIUM, CHROMIUM_ARGS, require_browser, write_notebook
from tests.widgets.test_imageview_tiles import BLOCK, SIDE, block_rgb, write_big_tiff, write_photo_tiff

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CANVAS_WH = (600, 400)
QUADRANTS = {(0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (0, 1): (0, 0, 255), (1, 1): (255, 255, 0)}
# one cell per action, run one at a time; the first displays the view
CELLS = [
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.widgets._imageview import ImageView\n"
    "project = dbn.Project.open('proj')\n"
    f"view = ImageView(project, width={CANVAS_WH[0]}, height={CANVAS_WH[1]}, overview_side=1024)\n"
    "view.show('quad.png')\n"
    "view.canvas",
    "view.zoom(2.0)",
    "view.pan_by(120, 40)",
    "view.show('big.tif')",
    "view.zoom(4.0)",
    "view.zoom(4.0)",
    "view.pan_by(-300, -150)",
    "view.pan_by(300, 150)",
    "view.show('photo.tif')",
    "view.zoom(4.0)",
    "view.zoom(4.0)",
    "view.pan_by(-300, -150)",
]
SMALL_STEPS = [("fit", None), ("zoom", (2.0,)), ("pan", (120, 40))]
BIG_STEPS = [
    ("open", None),
    ("zoom 1", (4.0,)),
    ("zoom 2", (4.0,)),
    ("pan", (-300, -150)),
    ("pan back", (300, 150)),
]
PHOTO_STEPS = ["open", "zoom 1", "zoom 2", "pan"]  # photograph-like content: bytes only


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require_browser()
    tmp = tmp_path_factory.mktemp("viewport")
    root = tmp / "root"
    root.mkdir()
    quad = np.zeros((300, 400, 3), dtype=np.uint8)
    for (qx, qy), rgb in QUADRANTS.items():
        quad[qy * 150 : (qy + 1) * 150, qx * 200 : (qx + 1) * 200] = rgb
    project = dbn.Project.create(root / "proj", categories=["thing"])
    project.add_image(quad, name="quad.png")
    project.add_image(write_big_tiff(tmp / "big.tif"), copy=False, name="big.tif")
    project.add_image(write_photo_tiff(tmp / "photo.tif"), copy=False, name="photo.tif")
    write_notebook(root / "view.ipynb", CELLS)
    with jupyter_lab(root, tmp) as base:
        yield base, tmp


def _expected_small(vp: Viewport, xy: tuple[float, float]) -> tuple[int, int, int] | None:
    """The quadrant colour at a canvas point, None near an edge (within 3 canvas px) or off the image."""
    ix, iy = convert(vp, xy, "image")
    margin = 3 / vp.scale
    for edge, v in ((200, ix), (150, iy)):
        if abs(v - edge) < margin:
            return None
    if not (margin <= ix <= 400 - margin and margin <= iy <= 300 - margin):
        return None
    return QUADRANTS[(int(ix >= 200), int(iy >= 150))]


def _expected_big(vp: Viewport, xy: tuple[float, float]) -> tuple[int, int, int] | None:
    ix, iy = convert(vp, xy, "image")
    margin = 3 / vp.scale
    if not (margin <= ix <= SIDE - margin and margin <= iy <= SIDE - margin):
        return None
    if min(ix % BLOCK, BLOCK - ix % BLOCK, iy % BLOCK, BLOCK - iy % BLOCK) < margin:
        return None
    c = block_rgb(np.array(int(ix // BLOCK)), np.array(int(iy // BLOCK)))
    return (int(c[0]), int(c[1]), int(c[2]))


READ_PIXELS = """(pts) => {
  const el = document.querySelector('.jp-OutputArea-output canvas');
  const ctx = el.getContext('2d');
  return pts.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
}"""


def _check(page: Any, vp: Viewport, expected: Any, name: str) -> int:
    """Compare canvas pixels on a grid with the expected colours; returns how many were checked."""
    pts = [(x, y) for x in range(7, CANVAS_WH[0], 23) for y in range(5, CANVAS_WH[1], 19)]
    want = [expected(vp, (x + 0.5, y + 0.5)) for x, y in pts]
    deadline = time.time() + 20
    while True:
        got = page.evaluate(READ_PIXELS, [list(p) for p in pts])
        bad = [
            (p, w, g)
            for p, w, g in zip(pts, want, got)
            if w is not None and max(abs(a - b) for a, b in zip(w, g)) > 6
        ]
        if not bad or time.time() > deadline:
            break
        time.sleep(0.25)
    n = sum(w is not None for w in want)
    assert n >= 40, f"{name}: too few points to check"
    assert not bad, f"{name}: {len(bad)} of {n} points have the wrong colour, e.g. {bad[:5]}"
    return n


def test_tiles_land_at_their_places_and_panning_back_is_free(lab: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    base, tmp = lab
    received = [0]

    def on_ws(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("websocket", on_ws)
            page.goto(f"{base}/lab/tree/view.ipynb?reset", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            try:
                page.locator(".jp-Dialog button.jp-mod-accept").first.click(timeout=5_000)
            except Exception:
                pass
            page.locator("text=Idle >> visible=true").first.wait_for(timeout=120_000)

            def run_cell(i: int) -> int:
                """Run cell i, wait until its output and every message settled; returns the bytes received."""
                before = received[0]
                cell = page.locator(".jp-CodeCell").nth(i)
                cell.locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                prompt = cell.locator(".jp-InputPrompt")
                deadline = time.time() + 120

                def busy() -> bool:
                    text = prompt.inner_text()
                    return "*" in text or not text.strip("[]: \n")

                while time.time() < deadline and busy():
                    time.sleep(0.1)
                last, quiet_since = received[0], time.time()
                while time.time() - quiet_since < 1.5 and time.time() < deadline:
                    time.sleep(0.1)
                    if received[0] != last:
                        last, quiet_since = received[0], time.time()
                return received[0] - before

            run_cell(0)
            page.locator(".jp-OutputArea-output canvas").first.wait_for(state="visible", timeout=60_000)
            vp = fit((400, 300), CANVAS_WH)
            checked = {}
            for i, (name, arg) in enumerate(SMALL_STEPS):
                if i:
                    run_cell(i)
                if name == "zoom":
                    vp = zoom_at(vp, *arg)
                elif name == "pan":
                    vp = pan(vp, *arg)
                checked[f"small {name}"] = _check(page, vp, _expected_small, f"small {name}")
            page.screenshot(path=str(tmp / "small.png"))
            sent = {}
            vp = fit((SIDE, SIDE), CANVAS_WH)
            for i, (name, arg) in enumerate(BIG_STEPS):
                sent[name] = run_cell(len(SMALL_STEPS) + i)
                if name.startswith("zoom"):
                    vp = zoom_at(vp, *arg)
                elif name.startswith("pan"):
                    vp = pan(vp, *arg)
                checked[f"big {name}"] = _check(page, vp, _expected_big, f"big {name}")
                page.screenshot(path=str(tmp / f"big-{name.replace(' ', '-')}.png"))
            photo = {}
            for i, name in enumerate(PHOTO_STEPS):
                photo[name] = run_cell(len(SMALL_STEPS) + len(BIG_STEPS) + i)
            page.screenshot(path=str(tmp / "photo-pan.png"))
        finally:
            browser.close()
    print(f"websocket bytes received per action: {sent}")
    print(f"canvas points checked: {checked}")
    assert sent["pan"] > 0
    assert sent["pan back"] < 0.1 * sent["pan"], "panning back re-sent tiles"
    assert sum(sent.values()) < 5_000_000
    print(
        f"photograph-like 20,000^2 TIFF, websocket bytes per action: {photo}, {sum(photo.values()) / 1e6:.2f} MB"
    )
    assert sum(photo.values()) < 5_000_000, "opening, two zooms and a pan send under 5 MB"
