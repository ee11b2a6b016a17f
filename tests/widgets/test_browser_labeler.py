"""The Labeler's editing in a real JupyterLab and Chromium, checked in the project's SQLite file.

One JupyterLab server, one browser and one notebook for the whole module (a browser start
costs about a minute on two cores); the tests run in file order and build on each other:
draw, resize with handles, relabel with a key, undo/redo/delete with keys, a page reload
(the overlay layer's pixels), an image with 100,000 boxes (wheel zoom, draw, select, resize),
keys n/p/arrows and Escape, the mouse-up -> stored latency while a training job runs in the
same kernel, a move, and ``Labeler.show`` right after ``add_image``.
Code is run in the notebook's kernel from the test through a second kernel client
(``Kernel``); the SQLite file is only ever read, read-only, from here.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
Screenshots are written under the module's temporary directory (printed with ``-s``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.widgets._browser import (
    PIXELS,
    RECORD_CANVASES,
    Kernel,
    Store,
    hex_rgb,
    notebook_page,
    overlay_canvas,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

W, H = 600, 450  # the canvas; a.png (400 x 300) fills it at scale 1.5
S = 1.5
NOTEBOOK = "labeler_editing.ipynb"
CELLS = [
    "import numpy as np\n"
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.widgets import Labeler\n"
    "project = dbn.Project.create('proj', categories=['thing', 'other'])\n"
    "project.add_image(np.full((300, 400, 3), 60, np.uint8), name='a.png', split='predict')\n"
    "lab = Labeler(project, width=600, height=450)\n"
    "lab",
    "lab",  # shows the Labeler again after a page reload, when its view is not restored
]
TOL = 3.0  # image pixels (2 canvas pixels at scale 1.5, plus rounding)


@dataclass
class Session:
    page: Any
    kernel: Kernel
    store: Store
    shots: Path
    root: Path
    state: dict[str, Any] = field(default_factory=dict)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"))

    def canvas_box(self) -> dict[str, float]:
        canvas = self.page.locator(".jp-OutputArea-output canvas").last
        canvas.wait_for(state="visible", timeout=60_000)
        bb = canvas.bounding_box()
        assert bb is not None and abs(bb["width"] - W) < 1 and abs(bb["height"] - H) < 1, bb
        return bb

    def at(self, p: tuple[float, float]) -> tuple[float, float]:
        bb = self.canvas_box()
        return (bb["x"] + p[0], bb["y"] + p[1])

    def drag(self, p0: tuple[float, float], p1: tuple[float, float], steps: int = 8) -> float:
        """A left-button drag between two canvas points; returns ``time.perf_counter()``
        taken just before the mouse-up was sent."""
        m = self.page.mouse
        m.move(*self.at(p0))
        m.down()
        m.move(*self.at(p1), steps=steps)
        t_up = time.perf_counter()
        m.up()
        return t_up

    def click(self, p: tuple[float, float]) -> None:
        m = self.page.mouse
        m.move(*self.at(p))
        m.down()
        m.up()

    def until_kernel(self, expr: str, timeout: float = 20.0) -> Any:
        """Poll a kernel-side expression until it is truthy; returns its last value."""
        deadline = time.time() + timeout
        value = self.kernel.json(expr)
        while not value and time.time() < deadline:
            time.sleep(0.2)
            value = self.kernel.json(expr)
        return value


def _notebook_ready(page: Any) -> None:
    page.wait_for_selector(".jp-Notebook", timeout=120_000)
    try:
        page.locator(".jp-Dialog button.jp-mod-accept").first.click(timeout=5_000)  # "Select Kernel"
    except Exception:
        pass
    page.locator("text=Idle >> visible=true").first.wait_for(timeout=120_000)


def _run_cell(page: Any, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    work = tmp_path_factory.mktemp("browser_labeler")
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
            page.wait_for_selector(".widget-html:has-text('a.png')", timeout=60_000)
            page.locator(".jp-OutputArea-output canvas").last.scroll_into_view_if_needed()
            s.until_kernel("lab.view.viewport is not None and lab.view.renders > 0")
            time.sleep(0.5)
            s.shot("00-opened")
            yield s
        finally:
            try:
                kernel.run("job.stop() if 'job' in globals() else None")
            except Exception:
                pass
            store.close()


def _near(box: tuple[float, ...], expected: tuple[float, ...], tol: float = TOL) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(box, expected))


def _only_box(s: Session) -> tuple[int, int, float, float, float, float] | None:
    rows = s.store.boxes("a.png")
    return rows[0] if len(rows) == 1 else None


def _wait_box(s: Session, expected: tuple[float, float, float, float], cat: int | None = None) -> Any:
    """Wait until a.png has exactly one box near ``expected`` (and of category ``cat``)."""

    def ok() -> Any:
        b = _only_box(s)
        return b if b is not None and _near(b[2:], expected) and (cat is None or b[1] == cat) else None

    return s.store.wait(ok, timeout=20)


# -- 1. draw, select, resize with a corner handle and an edge handle ------------------------
def test_draw_select_and_resize_with_handles(session: Session) -> None:
    s = session
    cats = s.kernel.json("[c.id for c in project.categories]")
    s.state["cats"] = cats
    s.state["colors"] = s.kernel.json("[c.color for c in project.categories]")
    s.drag((60, 60), (300, 240))  # canvas (60, 60)-(300, 240) = image (40, 40)-(200, 160)
    drawn = _wait_box(s, (40, 40, 200, 160), cats[0])
    s.shot("01-drawn")
    assert drawn, f"the drawn box is stored: {s.store.boxes('a.png')}"
    box_id = drawn[0]
    s.state["box_id"] = box_id

    s.page.keyboard.press("s")  # the drag gave the canvas the focus
    assert s.until_kernel("lab.view.mode == 'select'"), "key s: select mode"
    s.click((180, 150))
    assert s.until_kernel(f"lab.selected == {box_id}"), "a click on the box selects it"

    s.drag((300, 240), (360, 300))  # the south-east corner: +40, +40 image pixels
    resized = _wait_box(s, (40, 40, 240, 200))
    s.shot("02-corner-resized")
    assert resized, f"corner drag resized the stored box: {s.store.boxes('a.png')}"
    assert resized[0] == box_id

    s.drag((210, 60), (210, 30))  # the north edge (canvas y 60), up 30 canvas = 20 image pixels
    resized = _wait_box(s, (40, 20, 240, 200))
    s.shot("03-edge-resized")
    assert resized, f"edge drag resized the stored box: {s.store.boxes('a.png')}"
    assert resized[0] == box_id
    assert s.kernel.json("lab.selected") == box_id


# -- 2. key 2 relabels the selected box -------------------------------------------------
def test_key_2_relabels_the_selected_box(session: Session) -> None:
    s = session
    cats = s.state["cats"]
    assert s.kernel.json("lab.selected") == s.state["box_id"], "the box is still selected"
    s.page.keyboard.press("2")
    relabelled = _wait_box(s, (40, 20, 240, 200), cats[1])
    s.shot("04-relabelled")
    assert relabelled, f"key 2 gave the box the second category: {s.store.boxes('a.png')}"
    cells = s.page.locator(".jp-Notebook .jp-Cell")
    assert cells.count() == 2 and s.page.locator(".jp-Notebook .jp-MarkdownCell").count() == 0, (
        "the key reached the canvas, not the notebook (2 would make a heading cell)"
    )


# -- 3. undo / redo / delete / undo with keys --------------------------------------------
def test_undo_redo_delete_with_keys(session: Session) -> None:
    s = session
    cats = s.state["cats"]
    key = s.page.keyboard.press
    key("Control+z")
    assert _wait_box(s, (40, 20, 240, 200), cats[0]), f"undo of the relabel: {s.store.boxes('a.png')}"
    key("Control+z")
    assert _wait_box(s, (40, 40, 240, 200), cats[0]), f"undo of the edge resize: {s.store.boxes('a.png')}"
    key("Control+Shift+z")
    assert _wait_box(s, (40, 20, 240, 200), cats[0]), f"redo of the resize: {s.store.boxes('a.png')}"
    key("Control+y")
    assert _wait_box(s, (40, 20, 240, 200), cats[1]), f"Ctrl+Y redoes the relabel: {s.store.boxes('a.png')}"
    assert s.until_kernel("lab.selected is not None"), "redo in select mode selects the box"
    key("Delete")
    assert s.store.wait(lambda: not s.store.boxes("a.png")), f"Delete: {s.store.boxes('a.png')}"
    s.shot("05-deleted")
    key("Control+z")
    back = _wait_box(s, (40, 20, 240, 200), cats[1])
    s.shot("06-undeleted")
    assert back, f"undo brings the deleted box back: {s.store.boxes('a.png')}"
    assert s.kernel.json("len(lab._boxes)") == 1


# -- 4. after a page reload the canvas redraws the stored boxes -----------------------------
def _edge_points(cbox: tuple[float, ...]) -> list[tuple[int, int]]:
    """Points on the stroked edges of a box in canvas pixels (away from the corners)."""
    x1, y1, x2, y2 = (round(v) for v in cbox)
    pts: list[tuple[int, int]] = []
    step = max(4, min(16, (x2 - x1) // 6, (y2 - y1) // 6))
    for x in range(x1 + 4, x2 - 3, step):
        pts += [(x, y1), (x, y2)]
    for y in range(y1 + 4, y2 - 3, step):
        pts += [(x1, y), (x2, y)]
    return pts


def _overlay_matches(
    s: Session, cbox: tuple[float, ...], color: str, inside_clear: bool = True
) -> tuple[float, str]:
    """Share of a canvas box's edge points (each with its 3x3 neighbourhood) in ``color`` on
    the overlay layer, and a description; with ``inside_clear`` its centre must be transparent."""
    index = overlay_canvas(s.page, (W, H))
    if index is None:
        return 0.0, "no single overlay layer canvas found"
    pts = _edge_points(cbox)
    near = [(x + dx, y + dy) for x, y in pts for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    rgba = s.page.evaluate(PIXELS, [index, near])
    want = hex_rgb(color)
    hits = 0
    for k in range(len(pts)):
        group = rgba[9 * k : 9 * k + 9]
        hits += any(p[3] > 200 and max(abs(p[i] - want[i]) for i in range(3)) <= 40 for p in group)
    cx, cy = round((cbox[0] + cbox[2]) / 2), round((cbox[1] + cbox[3]) / 2)
    inside = s.page.evaluate(PIXELS, [index, [[cx, cy]]])[0]
    if inside_clear and inside[3] != 0:
        return 0.0, f"the box's inside is painted on the overlay: {inside}"
    return hits / len(pts), f"{hits}/{len(pts)} edge points in {color}"


def test_reload_redraws_the_boxes_from_the_project(session: Session) -> None:
    s = session
    s.page.keyboard.press("Escape")  # deselect: the box is drawn in its category colour
    s.page.keyboard.press("d")
    assert s.until_kernel("lab.selected is None and lab.view.mode == 'draw'")
    row = _only_box(s)
    assert row is not None
    box, color = row[2:], s.state["colors"][s.state["cats"].index(row[1])]
    box = tuple(v * S for v in box)  # canvas pixels
    before = s.store.wait(lambda: _overlay_matches(s, box, color)[0] >= 0.9, timeout=10)
    assert before, f"before the reload: {_overlay_matches(s, box, color)[1]}"

    # save the notebook first (its output then holds the widget view, as a user's would)
    s.page.locator(".lm-MenuBar-itemLabel", has_text="File").first.click()
    s.page.locator('li[data-command="docmanager:save"]').first.click()
    saved = s.store.wait(lambda: "widget-view" in (s.root / NOTEBOOK).read_text(), timeout=20)
    s.page.reload(timeout=120_000)
    _notebook_ready(s.page)
    canvas = s.page.locator(".jp-OutputArea-output canvas")
    try:
        canvas.last.wait_for(state="visible", timeout=20_000)
        how = "view restored by JupyterLab"
    except Exception:
        _run_cell(s.page, 1)  # `lab` from a new cell
        how = "displayed again from cell 2"
    s.canvas_box()
    s.page.locator(".jp-OutputArea-output canvas").last.scroll_into_view_if_needed()
    redrawn = s.store.wait(lambda: _overlay_matches(s, box, color)[0] >= 0.9, timeout=30, every=0.5)
    _, what = _overlay_matches(s, box, color)
    print(f"\nafter reload (notebook saved with the view: {bool(saved)}; {how}): {what}")
    s.shot("07-reloaded")
    assert redrawn, f"after the reload the overlay shows the stored box: {what}"


# -- 5. an image with 100,000 boxes -----------------------------------------------------------
def test_an_image_with_100000_boxes(session: Session) -> None:
    s = session
    out = s.kernel.run(
        "import json, time\n"
        "_rng = np.random.default_rng(1)\n"
        "big = project.add_image(np.full((2000, 2000, 3), 60, np.uint8), name='big.png', split='predict')\n"
        "_xy = _rng.uniform(0, 1990, (100_000, 2))\n"
        "_t0 = time.perf_counter()\n"
        "project.add_boxes(big, 'thing', np.concatenate([_xy, _xy + _rng.uniform(2, 8, (100_000, 2))], 1))\n"
        "_t1 = time.perf_counter()\n"
        # lab.show right after add_image races with the throttled image-list refresh (see
        # test_show_right_after_add_image): wait until the list holds big.png and is quiet
        "_deadline = time.time() + 30\n"
        "while time.time() < _deadline and big.id not in [i for _, i in lab.image_list.options]:\n"
        "    time.sleep(0.05)\n"
        "time.sleep(0.5)\n"
        "_t1b = time.perf_counter()\n"
        "lab.show(big)\n"
        "_t2 = time.perf_counter()\n"
        "print(json.dumps([_t1 - _t0, _t2 - _t1b, time.time()]))\n"
    )
    t = json.loads(out.strip().splitlines()[-1])
    insert_s, show_s, shown_at = t
    print(f"\n100,000 boxes: add_boxes {insert_s:.2f} s; lab.show in the kernel {show_s:.2f} s")
    try:
        s.page.wait_for_selector(".widget-html:has-text('100000 boxes')", timeout=60_000)
    finally:
        s.shot("08-big-opened")
        print("kernel-side info:", s.kernel.json("[lab.info.value, lab.status.value, lab.image.name]"))
    seen_s = time.time() - shown_at
    print(
        f"\n100,000 boxes: add_boxes {insert_s:.2f} s; lab.show in the kernel {show_s:.2f} s; "
        f"the page shows it {seen_s:.2f} s after that"
    )
    assert insert_s < 10 and show_s < 10

    vp0 = s.kernel.json("[lab.view.viewport.scale, lab.view.viewport.x0, lab.view.viewport.y0]")
    scale0 = vp0[0]
    anchor = (150, 120)  # off centre: the image point under the pointer must stay under it
    s.page.mouse.move(*s.at(anchor))
    for _ in range(10):  # 1.25 ** 10: about 2 canvas pixels per image pixel, boxes stroked
        s.page.mouse.wheel(0, -120)
        time.sleep(0.2)
    zoomed = s.until_kernel(f"lab.view.viewport.scale > 8 * {scale0}")
    vp = s.kernel.json("[lab.view.viewport.scale, lab.view.viewport.x0, lab.view.viewport.y0]")
    s.shot("09-big-zoomed")
    assert zoomed, f"the wheel zoomed in: scale {scale0} -> {vp[0]}"
    under0 = (anchor[0] / vp0[0] + vp0[1], anchor[1] / vp0[0] + vp0[2])
    under1 = (anchor[0] / vp[0] + vp[1], anchor[1] / vp[0] + vp[2])
    assert _near(under0, under1, 2.0), f"the wheel zooms about the pointer: {under0} -> {under1}"

    before = s.store.max_id()
    t0 = s.drag((250, 200), (330, 260))
    stored = s.store.wait(lambda: s.store.max_id() > before, timeout=20, every=0.005)
    dt = time.perf_counter() - t0
    scale, x0, y0 = vp
    expected = (250 / scale + x0, 200 / scale + y0, 330 / scale + x0, 260 / scale + y0)
    print(f"100,000 boxes, zoomed to {100 * scale:.0f}%: mouse-up -> row in SQLite {1000 * dt:.0f} ms")
    assert stored, "the box drawn on the 100,000-box image is stored"
    row = s.store.rows("SELECT x1, y1, x2, y2 FROM annotations WHERE id = ?", (s.store.max_id(),))
    assert row and _near(tuple(row[0]), expected, 2.0), (row, expected)
    assert s.kernel.json("len(lab._boxes)") == 100_001
    color = s.kernel.json("project.category(lab.category.value).color")
    cbox = tuple((v - o) * scale for v, o in zip(row[0], (x0, y0, x0, y0)))
    drawn = s.store.wait(lambda: _overlay_matches(s, cbox, color, False)[0] >= 0.8, timeout=10, every=0.2)
    s.shot("10-big-drawn")
    assert drawn, f"the new box is drawn over the 100,000: {_overlay_matches(s, cbox, color, False)[1]}"

    # select mode among 100,001 boxes: a click selects the smallest box under it, its corner resizes it
    s.page.keyboard.press("s")
    assert s.until_kernel("lab.view.mode == 'select'")
    centre = ((cbox[0] + cbox[2]) / 2, (cbox[1] + cbox[3]) / 2)
    s.click(centre)
    t1 = time.perf_counter()
    sel = s.until_kernel("lab.selected")
    click_s = time.perf_counter() - t1
    assert sel, "a click in select mode selects a box"
    old = s.kernel.json("lab._selected_box().tolist()")
    assert old[0] <= centre[0] / scale + x0 <= old[2] and old[1] <= centre[1] / scale + y0 <= old[3]
    corner = ((old[2] - x0) * scale, (old[3] - y0) * scale)
    t1 = s.drag(corner, (corner[0] + 12, corner[1] + 9), steps=4)
    new = (old[0], old[1], old[2] + 12 / scale, old[3] + 9 / scale)

    def stored_as(box: Any) -> bool:
        r = s.store.rows("SELECT x1, y1, x2, y2 FROM annotations WHERE id = ?", (sel,))
        return bool(r) and _near(tuple(r[0]), tuple(box), 1.0)

    resized = s.store.wait(lambda: stored_as(new), timeout=20, every=0.005)
    resize_s = time.perf_counter() - t1
    s.shot("10b-big-resized")
    print(
        f"100,001 boxes: click -> selected (kernel poll) {1000 * click_s:.0f} ms; "
        f"corner drag mouse-up -> row in SQLite {1000 * resize_s:.0f} ms"
    )
    assert resized, f"the corner drag resized box {sel}: {old} -> want {new}"
    s.page.keyboard.press("Control+z")
    assert s.store.wait(lambda: stored_as(old)), "Ctrl+Z undoes the resize among 100,001 boxes"
    s.page.keyboard.press("d")
    assert s.until_kernel("lab.view.mode == 'draw'")

    t1 = time.perf_counter()
    ping = s.page.evaluate("() => 1 + 1")
    page_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    s.page.locator("button", has_text="fit").first.click()
    fitted = s.page.locator(".widget-html:has-text('big.png')").filter(has_text=f"zoom {100 * scale0:.0f}%")
    fitted.first.wait_for(timeout=20_000)
    fit_s = time.perf_counter() - t1
    print(f"page evaluate {1000 * page_s:.0f} ms; 'fit' click -> info updated {1000 * fit_s:.0f} ms")
    assert ping == 2 and page_s < 1.0 and fit_s < 10


# -- keys n/p/arrows step between images; Escape abandons a drag ----------------------------
def test_keys_step_between_images_and_escape_cancels_a_drag(session: Session) -> None:
    s = session
    names = s.kernel.json("[o[0].split(' (')[0] for o in lab.image_list.options]")
    assert names[:2] == ["a.png", "big.png"], names
    s.click((5, 5))  # the keys go to the canvas again (the 'fit' button had the focus)
    assert s.kernel.json("lab.view.mode") == "draw"

    before = s.store.max_id()
    m = s.page.mouse
    m.move(*s.at((100, 100)))
    m.down()
    m.move(*s.at((200, 200)), steps=5)
    s.page.keyboard.press("Escape")
    m.move(*s.at((220, 220)), steps=2)
    m.up()
    time.sleep(1.0)
    assert s.store.max_id() == before, "Escape during a drag: nothing is stored"
    assert s.kernel.json("lab.view._down is None")

    shown = s.kernel.json("lab.image.name")
    assert shown == "big.png"
    for k in ("n", "n", "p", "ArrowRight", "ArrowLeft"):
        want = names[(names.index(shown) + (1 if k in ("n", "ArrowRight") else -1)) % len(names)]
        s.page.keyboard.press(k)
        got = s.until_kernel(f"lab.image.name == {want!r}")
        assert got, f"key {k}: {shown} -> {want}, the Labeler shows {s.kernel.json('lab.image.name')}"
        s.page.locator(".widget-html").filter(has_text=f"{want} ").first.wait_for(timeout=20_000)
        shown = want
    s.shot("11-keys")


# -- 6. mouse-up -> stored latency while a training job runs in the kernel --------------------
def _draw_and_time(s: Session, n: int, row0: int) -> list[int]:
    """Draw ``n`` small boxes with the mouse; the mouse-up -> row-in-SQLite time of each, ms."""
    times: list[int] = []
    for k in range(n):
        x, y = 370 + 55 * (k % 4), 20 + 38 * (row0 + k // 4)
        before = s.store.max_id()
        t0 = s.drag((x, y), (x + 40, y + 30), steps=5)
        ok = s.store.wait(lambda b=before: s.store.max_id() > b, timeout=20, every=0.002)
        times.append(round(1000 * (time.perf_counter() - t0)))
        assert ok, f"box {k} is stored"
        time.sleep(0.2)
    return times


def test_draw_latency_idle_and_while_training(session: Session) -> None:
    s = session
    s.kernel.run(
        "lab.show('a.png')\n"
        "for _i in range(6):\n"
        "    _img = np.full((64, 64, 3), 30, np.uint8)\n"
        "    _img[16:40, 20:44] = 220\n"
        "    _r = project.add_image(_img, name=f't{_i}.png', split='train')\n"
        "    project.add_box(_r, 'thing', [20, 16, 44, 40])\n"
    )
    s.page.wait_for_selector(".widget-html:has-text('a.png')", timeout=30_000)
    n0 = len(s.store.boxes("a.png"))
    idle = _draw_and_time(s, 20, 0)
    s.kernel.run("job = project.train(epochs=1000)\n")
    training = s.until_kernel("job.status.value == 'running' and len(job.history) > 0", 180)
    status = s.kernel.json("[job.status.value, job.progress, len(job.history)]")
    assert training, f"the training job is running: {status}"
    cpu0 = s.kernel.json("[__import__('time').process_time(), __import__('time').monotonic()]")
    try:
        busy = _draw_and_time(s, 20, 5)
        still = s.kernel.json("[job.status.value, job.progress, len(job.history)]")
        cpu1 = s.kernel.json("[__import__('time').process_time(), __import__('time').monotonic()]")
        s.shot("12-drawn-while-training")
    finally:
        s.kernel.run("job.stop()\njob.wait(120)")
    cores = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
    for label, ms in (("idle", idle), ("while training", busy)):
        print(
            f"\nmouse-up -> row in SQLite, {label}, 20 boxes: median {statistics.median(ms)} ms, "
            f"worst {max(ms)} ms ({ms})"
        )
    print(
        f"training: job {still[0]}, progress {still[1]:.3f}, {still[2]} history rows; the kernel used "
        f"{cores:.2f} CPU cores; machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    assert still[0] == "running", f"the job ran during all 20 draws: {still}"
    assert len(s.store.boxes("a.png")) == n0 + 40
    assert statistics.median(idle) < 150, f"median mouse-up -> stored {statistics.median(idle)} ms idle"
    assert statistics.median(busy) < 150, (
        f"median mouse-up -> stored {statistics.median(busy)} ms while training"
    )


# -- select mode: a drag on a box's inside moves it --------------------------------------------
def test_a_drag_inside_a_box_moves_it(session: Session) -> None:
    s = session
    s.kernel.run("lab.show('a.png')")
    s.page.wait_for_selector(".widget-html:has-text('a.png')", timeout=30_000)
    big = [b for b in s.store.boxes("a.png") if _near(b[2:], (40, 20, 240, 200))]
    assert len(big) == 1, s.store.boxes("a.png")
    box_id = big[0][0]
    s.click((5, 5))  # the canvas takes the keys (no box: a click is not a drag)
    s.page.keyboard.press("s")
    assert s.until_kernel("lab.view.mode == 'select'")
    s.drag((200, 150), (230, 165))  # one gesture selects the box and moves it by (+20, +10) image px

    def at(expected: tuple[float, float, float, float]) -> bool:
        rows = [b for b in s.store.boxes("a.png") if b[0] == box_id]
        return bool(rows) and _near(rows[0][2:], expected)

    assert s.store.wait(lambda: at((60, 30, 260, 210))), f"the box moved: {s.store.boxes('a.png')}"
    assert s.kernel.json("lab.selected") == box_id
    s.shot("13-moved")
    s.page.keyboard.press("Control+z")
    assert s.store.wait(lambda: at((40, 20, 240, 200))), f"undo of the move: {s.store.boxes('a.png')}"
    s.page.keyboard.press("d")
    assert s.until_kernel("lab.view.mode == 'draw'")


# -- Labeler.show right after project.add_image -----------------------------------------------
def test_show_right_after_add_image(session: Session) -> None:
    s = session
    out = s.kernel.run(
        "import json, time, traceback\n"
        "_rng = np.random.default_rng(2)\n"
        "_lost = []\n"
        "for _k in range(20):\n"
        "    _rec = project.add_image(np.full((200, 200, 3), 60, np.uint8), name=f'show{_k}.png', split='predict')\n"
        "    _xy = _rng.uniform(0, 190, (2000, 2))\n"
        "    project.add_boxes(_rec, 'thing', np.concatenate([_xy, _xy + 5], 1))\n"
        "    try:\n"
        "        lab.show(_rec)\n"
        "    except Exception as e:\n"
        "        _lost.append(f'{_rec.name}: {type(e).__name__}: {e}')\n"
        "        continue\n"
        "    time.sleep(0.3)\n"
        "    if lab.image is None or lab.image.id != _rec.id:\n"
        "        _lost.append(f'{_rec.name}: shows {getattr(lab.image, \"name\", None)} 0.3 s after show')\n"
        "print(json.dumps(_lost))\n",
        timeout=300,
    )
    lost = json.loads(out.strip().splitlines()[-1])
    raised = [x for x in lost if "TraitError" in x]
    undone = [x for x in lost if "TraitError" not in x]
    print(
        f"\nlab.show right after add_image: {len(lost)}/20 lost: {len(raised)} raised "
        f"({raised[:1]}), {len(undone)} did not show the image ({undone[:2]})"
    )
    assert not lost, f"{len(lost)}/20 calls of lab.show right after add_image did not show the image"
