"""The App's Train, Evaluate and Predict stages in a real JupyterLab and Chromium.

One JupyterLab server, one browser and one notebook (a tiny two-category project of
128 x 128 images and the App) for the module; the tests run in file order and build on
each other: the Train button trains with live curves and Stop ends the run within one
optimiser step; a short run trained from a cell is then evaluated with the Evaluate button
and fills the scorecard; a click on an error opens the evaluate Labeler centred on it;
Predict draws boxes. Kernel-side state is read through a second kernel client.

Full-App screenshots of each stage go to ``$DEEPBLOCK_SCREENSHOTS`` when set (``make
screenshots`` writes docs/images/ this way), else under the module's temporary directory.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
"""

from __future__ import annotations

import io
import os
import re
import statistics
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
    hex_rgb,
    notebook_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "stages.ipynb"
CELLS = [
    "import numpy as np\n"
    "import deepblock_nb as dbn\n"
    "from deepblock_nb.demo import synthetic_scene\n"
    "from deepblock_nb.widgets import App\n"
    "project = dbn.Project.create('proj', categories=['disc', 'square'])\n"
    "rng = np.random.default_rng(0)\n"
    "for split, n, wh, k in (('train', 12, (128, 128), 3), ('evaluate', 3, (128, 128), 3),\n"
    "                        ('predict', 2, (256, 192), 6)):\n"
    "    for i in range(n):\n"
    "        rgb, xyxy, cls = synthetic_scene(rng, *wh, n_objects=k, size_range=(24, 44), n_classes=2)\n"
    "        rec = project.add_image(rgb, split=split, name=f'{split}-{i}.png')\n"
    "        if split != 'predict':\n"
    "            project.add_boxes(rec, [int(c) + 1 for c in cls], xyxy)\n"
    "app = App(project)\n"
    "app",
]
#: what the trained run of the Evaluate test is: about 80 optimiser steps, 20-40 s on 2 cores
EVAL_TRAINING = "epochs=40, model='small', seed=0"
#: counts every optimiser step in the kernel and what the count was when Stop was clicked
STEP_PROBE = (
    "import time\n"
    "from torch.optim.optimizer import register_optimizer_step_post_hook\n"
    "_steps = []\n"
    "_probe = register_optimizer_step_post_hook(lambda *a, **k: _steps.append(time.time()))\n"
    "_clicked = []\n"
    "app.training.stop_button.on_click(lambda b: _clicked.append((len(_steps), time.time())))\n"
)
#: innerText of the Training panel's status line (the status word in capitals)
TRAIN_STATUS = """
() => {
  const fig = [...document.querySelectorAll('.bqplot.figure')].find(
    f => (f.querySelector('.mainheading') || {}).textContent === 'Training');
  const box = fig && fig.parentElement;
  const line = box && [...box.children].find(
    c => c.classList.contains('widget-html') && c.innerHTML.includes('text-transform:uppercase'));
  return line ? line.innerText.trim() : null;
}
"""
#: the ``d`` attributes of the line paths of the bqplot figure with this title, by mark (a
#: Lines mark draws a ``g.curve`` with a ``path.line`` per line; one without data, none)
LINE_PATHS = """
(title) => {
  const fig = [...document.querySelectorAll('.bqplot.figure')].find(
    f => (f.querySelector('.mainheading') || {}).textContent === title);
  if (!fig) return null;
  const marks = [];
  for (const curve of fig.querySelectorAll('g.curve')) {
    let mark = marks.find(m => m.node === curve.parentNode);
    if (!mark) marks.push(mark = {node: curve.parentNode, d: []});
    const path = curve.querySelector('path.line');
    mark.d.push(path ? path.getAttribute('d') || '' : '');
  }
  return marks.map(m => m.d);
}
"""
#: marks the visible <select> whose options read ``labels`` (data-test-errors); returns how many
MARK_SELECT = """
(labels) => {
  const text = o => o.textContent.replace(/\\u00a0/g, ' ').trim();
  const found = [...document.querySelectorAll('select')].filter(el => el.offsetParent !== null
    && el.options.length === labels.length && [...el.options].every((o, i) => text(o) === labels[i]));
  found.forEach(el => el.setAttribute('data-test-errors', ''));
  return found.length;
}
"""
MAX_PNG = 300_000


def _exactly(label: str) -> re.Pattern[str]:
    """A label matched whole and case-sensitively (the stage TRAIN holds the step Train)."""
    return re.compile(rf"^\s*{re.escape(label)}\s*$")


def _points(d: str) -> int:
    """How many points a d3 line path draws (``M x,y L x,y ...``; gaps start new ``M``s)."""
    return len(re.findall(r"[ML]", d))


@dataclass
class Session:
    page: Any
    kernel: Kernel
    shots: Path

    def until(self, expr: str, timeout: float = 30.0, every: float = 0.2) -> Any:
        """Poll a kernel expression until it is truthy; returns the last value."""
        deadline = time.time() + timeout
        value = self.kernel.json(expr)
        while not value and time.time() < deadline:
            time.sleep(every)
            value = self.kernel.json(expr)
        return value

    def stage(self, stage: str, step: str | None = None) -> None:
        self.page.locator(".lm-TabBar-tabLabel", has_text=_exactly(stage)).first.click()
        if step is not None:
            self.page.locator(".lm-TabBar-tabLabel", has_text=_exactly(step)).first.click()
        time.sleep(0.4)

    def button(self, label: str) -> Any:
        """The visible button with this label (each stage has its own Stop)."""
        return self.page.locator("button.widget-button:visible", has_text=_exactly(label)).first

    def app_shot(self, name: str) -> Path:
        """The App's output area as a PNG (under :data:`MAX_PNG` bytes, reduced to a palette if need be)."""
        out = self.page.locator(".jp-CodeCell").first.locator(".jp-OutputArea-output").first
        out.scroll_into_view_if_needed()
        time.sleep(0.3)
        path = self.shots / f"{name}.png"
        out.screenshot(path=str(path))
        if path.stat().st_size > MAX_PNG:
            Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
        return path

    def train_status(self) -> str:
        return str(self.page.evaluate(TRAIN_STATUS) or "")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    work = tmp_path_factory.mktemp("browser_stages")
    shots = Path(os.environ.get("DEEPBLOCK_SCREENSHOTS") or work / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {shots}")
    # tall enough that the whole App fits the notebook's scrolling area (screenshots)
    viewport = {"width": 1360, "height": 2800}
    with notebook_page(work, NOTEBOOK, CELLS, viewport=viewport) as (page, kernel):
        page.locator(".lm-TabBar-tabLabel", has_text=_exactly("Divide")).first.wait_for(timeout=120_000)
        page.locator(".jp-OutputArea-output canvas").first.wait_for(state="visible", timeout=60_000)
        # the code out of the way (the cell's input collapser, as a person would): the App on top
        page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputCollapser").click()
        time.sleep(1.0)
        yield Session(page, kernel, shots)


# -- 0. the TRAIN stage's first two steps render ---------------------------------------------
def test_preprocess_and_divide_render(session: Session) -> None:
    s = session
    s.stage("TRAIN", "Preprocess")
    assert s.kernel.json("app.labeler.image.name") == "train-0.png"
    # the category list counts the boxes
    # (ipywidgets' Select writes its options' spaces as no-break spaces)
    options = s.page.evaluate("() => [...document.querySelectorAll('option')].map(o => o.textContent)")
    assert any(re.fullmatch(r"disc \(\d+ boxes\)", t.replace("\xa0", " ").strip()) for t in options), options
    counts = s.kernel.json("project.box_counts()")
    assert sum(counts.values()) > 20, counts
    s.app_shot("train-preprocess")
    s.stage("TRAIN", "Divide")
    s.button("Apply").wait_for(timeout=20_000)
    s.app_shot("train-divide")


# -- 1. Train: live curves; Stop ends within one optimiser step ------------------------------
def test_train_button_draws_live_curves_and_stop_ends_within_one_step(session: Session) -> None:
    s = session
    s.stage("TRAIN", "Train")
    assert s.train_status().startswith("IDLE"), s.train_status()
    # the settings, as a person sets them: many epochs (Stop ends the run), the small model
    epochs = s.page.locator(".widget-text:visible:has(label:text-is('epochs (0 = auto)')) input")
    epochs.fill("200")
    epochs.press("Enter")
    s.page.locator(".widget-dropdown:visible:has(label:text-is('model')) select").select_option("small")
    assert s.until("[app.training.epochs.value, app.training.model.value] == [200, 'small']", 10), (
        s.kernel.json("[app.training.epochs.value, app.training.model.value]")
    )
    s.kernel.run(STEP_PROBE)

    s.button("Train").click()
    assert s.until("app.training.job is not None and app.training.job.status.value == 'running'", 60)
    # the loss curve gains points while it runs: in the kernel (the Lines mark) and in the page
    n1 = s.until("len(app.training.loss_line.x) >= 2 and len(app.training.loss_line.x)", 90)
    assert n1, s.kernel.json("[str(app.training.job), len(app.training.job.history)]")
    assert s.kernel.json("app.training.state") == "TRAINING"
    s.page.wait_for_function(
        "(n) => { const p = ("
        + LINE_PATHS
        + ")('Training'); return p && p[0] && (p[0][0] || '').split('L').length >= n; }",
        arg=2,
        timeout=20_000,
    )
    d1 = s.page.evaluate(LINE_PATHS, "Training")[0][0]
    assert s.train_status().startswith("TRAINING"), s.train_status()
    # while it trains, the Labeler (TRAIN > Preprocess) stores each new box at once
    ms = _draw_boxes_timed(s, 6)
    print(
        f"\nwhile training: mouse-up -> row in SQLite, {len(ms)} boxes: median {statistics.median(ms):.0f} ms, "
        f"worst {max(ms):.0f} ms"
    )
    assert statistics.median(ms) < 150, ms
    assert s.kernel.json("app.training.job.status.value") == "running"
    s.stage("TRAIN", "Train")
    n2 = s.until(f"len(app.training.loss_line.x) > {n1} and len(app.training.loss_line.x)", 30)
    assert n2 and n2 > n1, (n1, n2)
    s.page.wait_for_function(
        "(n) => { const p = ("
        + LINE_PATHS
        + ")('Training'); return p && p[0] && (p[0][0] || '').split('L').length >= n; }",
        arg=n2,
        timeout=20_000,
    )
    d2 = s.page.evaluate(LINE_PATHS, "Training")[0][0]
    assert _points(d2) > _points(d1) >= 2 and len(d2) > len(d1), (d1, d2)
    print(f"\nloss curve: kernel {n1} -> {n2} points, page {_points(d1)} -> {_points(d2)} points")
    # a few more steps for the screenshot
    assert s.until("len(app.training.loss_line.x) >= 12", 60), s.kernel.json("len(app.training.loss_line.x)")
    time.sleep(0.5)
    s.app_shot("train-running")

    # Stop: the run ends after at most the optimiser step under way at the click
    assert s.train_status().startswith("TRAINING"), s.train_status()
    clicked = time.time()
    s.button("Stop").click()
    s.page.wait_for_function(f"() => ({TRAIN_STATUS})().startsWith('STOPPED')", timeout=60_000, polling=20)
    shown = time.time() - clicked
    assert s.until("app.training.job.status.done", 30)
    probe = s.kernel.json(
        "{'at_click': _clicked[0][0] if _clicked else None, 'click_time': _clicked[0][1] if _clicked else None, "
        "'steps': len(_steps), 'rows': int((app.training.job.history['kind'] == 'step').sum()), "
        "'status': app.training.job.status.value, 'ended': app.training.job.ended, "
        "'state': app.training.state}"
    )
    s.kernel.run("_probe.remove()")
    assert probe["at_click"] is not None, "the Stop click did not reach the kernel"
    assert probe["status"] == "stopped" and probe["state"] == "STOPPED", probe
    assert probe["steps"] == probe["rows"], probe  # the probe saw the run's own steps
    assert probe["at_click"] >= n2, probe
    assert probe["steps"] - probe["at_click"] <= 1, f"steps after the Stop click: {probe}"
    print(
        f"stop: {probe['at_click']} steps at the click, {probe['steps']} in all; click -> kernel "
        f"{1000 * (probe['click_time'] - clicked):.0f} ms, -> job stopped "
        f"{1000 * (probe['ended'] - clicked):.0f} ms, -> page shows STOPPED {1000 * shown:.0f} ms"
    )
    assert not s.button("Train").is_disabled() and s.button("Stop").is_disabled()


# -- 2. Evaluate fills the scorecard ---------------------------------------------------------
def test_evaluate_button_fills_the_scorecard(session: Session) -> None:
    s = session
    s.kernel.run("app.training.epochs.value = 40")  # the panel shows the settings of the run below
    s.kernel.run(f"job = project.train({EVAL_TRAINING})")
    assert s.until("job.status.done", 300, every=1.0), s.kernel.json("str(job)")
    assert s.kernel.json("job.status.value") == "finished", s.kernel.json("str(job)")
    s.stage("TRAIN", "Train")
    s.page.wait_for_function(f"() => ({TRAIN_STATUS})().startsWith('FINISHED')", timeout=30_000)
    paths = s.page.evaluate(LINE_PATHS, "Training")
    assert _points(paths[0][0]) == s.kernel.json("len(app.training.loss_line.x)") >= 40, paths[0][0][:200]
    assert _points(paths[1][0]) == 40, paths[1]  # one held-out score per epoch
    s.app_shot("train-finished")

    s.stage("EVALUATE")
    headline = s.page.locator(".widget-html:visible", has_text="no evaluation yet")
    assert headline.count() == 1, "the scorecard is not empty before Evaluate"
    s.button("Evaluate").click()
    assert s.until("app.evaluation.scorecard.report is not None", 120), s.kernel.json(
        "[str(app.evaluation.job), app.evaluation.status.value]"
    )
    report = s.kernel.json(
        "{k: float(getattr(app.evaluation.scorecard.report, k)) for k in ('map50', 'map', 'precision', 'recall', 'f1')}"
    )
    # the large figures, as the page shows them: numbers, the report's, in its order
    figures = s.page.locator("div[style*='font-size:22px']:visible")
    figures.first.wait_for(timeout=20_000)
    texts = figures.all_inner_texts()
    assert len(texts) == 5, texts
    assert [float(t) for t in texts] == [
        round(report[k], 3) for k in ("map50", "map", "precision", "recall", "f1")
    ]
    assert report["map50"] > 0.2, report  # 40 epochs on these shapes learn something
    # the per-category table: a row per category
    rows = s.page.locator("table.deepblock-table:visible").first.locator("tbody tr").all_inner_texts()
    names = [r.split("\t")[0].strip() for r in rows]  # the first column: the name
    assert names == ["disc", "square"], rows
    # the precision-recall chart: a drawn line per category
    pr = s.page.evaluate(LINE_PATHS, "Precision-recall (IoU 0.5)")
    assert pr is not None and len(pr[0]) == 2, pr
    assert all(_points(d) >= 10 for d in pr[0]), pr
    assert s.kernel.json("list(np.shape(app.evaluation.scorecard.pr_lines.y))")[0] == 2
    f1 = s.page.evaluate(LINE_PATHS, "F1 against the threshold (IoU 0.5)")
    assert f1 is not None and len(f1[0]) == 3 and all(_points(d) >= 10 for d in f1[0]), f1
    print(f"\nevaluation: {report}")
    s.app_shot("evaluate")


def _draw_boxes_timed(s: Session, n: int) -> list[float]:
    """Draw ``n`` boxes with the mouse on the Preprocess Labeler; ms from each mouse-up
    until its row is in the project's SQLite file (read from this process)."""
    s.stage("TRAIN", "Preprocess")
    s.kernel.run("from deepblock_nb.widgets._viewport import convert as _convert")
    store = Store(Path(s.kernel.json("str((project.path / 'project.db').resolve())")))
    name = s.kernel.json("app.labeler.image.name")
    canvas = _canvas(s)
    canvas.scroll_into_view_if_needed()
    time.sleep(0.3)
    bb = canvas.bounding_box()
    assert bb is not None
    width = s.kernel.json("app.labeler.view.canvas_wh[0]")
    sx = bb["width"] / width  # CSS pixels per canvas pixel
    ms: list[float] = []
    try:
        for k in range(n):
            (x1, y1), (x2, y2) = s.kernel.json(
                "[[float(v) for v in _convert(app.labeler.view.viewport, p, 'view')] "
                f"for p in ([6 + 19 * {k}, 92], [20 + 19 * {k}, 112])]"
            )
            before = len(store.boxes(name))
            s.page.mouse.move(bb["x"] + x1 * sx, bb["y"] + y1 * sx)
            s.page.mouse.down()
            s.page.mouse.move(bb["x"] + x2 * sx, bb["y"] + y2 * sx, steps=6)
            t0 = time.perf_counter()
            s.page.mouse.up()
            stored = store.wait(lambda b=before: len(store.boxes(name)) > b, timeout=20.0, every=0.005)
            if not stored:
                s.page.screenshot(path=str(s.shots / "draw-while-training-failed.png"))
            assert stored, s.kernel.json(
                "[app.labeler.status.value, app.labeler.mode.value, str(app.labeler.image)]"
            )
            ms.append(1000 * (time.perf_counter() - t0))
        # the drawn boxes lie on background: gone again before the later runs train
        ids = [row[0] for row in store.boxes(name)][-n:]
        s.kernel.run(f"for _b in {ids}:\n    project.delete_box(_b)")
    finally:
        store.close()
    return ms


# -- 3. a click on an error shows it in context ----------------------------------------------
def _canvas(s: Session) -> Any:
    """The visible canvas of the Evaluate stage's Labeler (the largest one shown)."""
    canvases = s.page.locator(".jp-OutputArea-output canvas:visible")
    sizes = [(c.bounding_box() or {"width": 0, "height": 0}) for c in canvases.all()]
    k = int(np.argmax([b["width"] * b["height"] for b in sizes]))
    return canvases.nth(k)


def _near(rgb: np.ndarray, color: str, tol: int = 40) -> int:
    """How many pixels are within ``tol`` of a colour (per channel)."""
    target = np.array(hex_rgb(color))
    return int((np.abs(rgb[..., :3].astype(int) - target).max(axis=-1) <= tol).sum())


def test_an_error_row_opens_the_labeler_centred_on_the_error(session: Session) -> None:
    s = session
    s.stage("EVALUATE")
    errors = s.kernel.json(
        "[{'image': int(r['image']), 'label': label, 'kind': r['kind'], "
        "'truth': None if r['truth_xyxy'] is None else [float(v) for v in r['truth_xyxy']], "
        "'predicted': None if r['predicted_xyxy'] is None else [float(v) for v in r['predicted_xyxy']]} "
        "for label, r in ((label, app.evaluation.errors.frame.loc[i]) "
        "for label, i in app.evaluation.errors.list.options)]"
    )
    assert errors, "the evaluation found no errors to click"
    shown = s.kernel.json("app.eval_labeler.image.id")
    # an error with a true box on another image than the one shown: the view must move
    pick = next(
        (k for k, e in enumerate(errors) if e["image"] != shown and e["truth"] is not None),
        next((k for k, e in enumerate(errors) if e["image"] != shown), 0),
    )
    error = errors[pick]
    canvas = _canvas(s)
    canvas.scroll_into_view_if_needed()
    time.sleep(0.5)
    before = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))

    # the error list in the page: the visible <select> whose options are the errors' labels
    found = s.page.evaluate(MARK_SELECT, [e["label"] for e in errors])
    assert found == 1, f"{found} lists in the page show the errors"
    clicked = time.time()
    s.page.locator("select[data-test-errors]").locator("option").nth(pick).click()
    assert s.until(f"app.eval_labeler.image.id == {error['image']}", 20), s.kernel.json(
        "[app.eval_labeler.image.id, app.evaluation.errors.list.value]"
    )
    # centred on the error: the box around its true and predicted boxes
    boxes = np.array([b for b in (error["truth"], error["predicted"]) if b is not None], float)
    centre = (boxes[:, :2].min(axis=0) + boxes[:, 2:].max(axis=0)) / 2
    vp = s.kernel.json(
        "(lambda v: [v.x0 + v.canvas_wh[0] / (2 * v.scale), v.y0 + v.canvas_wh[1] / (2 * v.scale), v.scale])"
        "(app.eval_labeler.view.viewport)"
    )
    assert abs(vp[0] - centre[0]) <= 3 and abs(vp[1] - centre[1]) <= 3, (vp, centre, error)
    assert s.kernel.json("app.error_marks[0]") == error["image"]
    # the canvas shows it: changed, with the error's marks drawn in their colours
    colors = {"truth": "#00e5ff", "predicted": "#ffea00"}
    after = before
    deadline = time.time() + 20
    while time.time() < deadline:
        time.sleep(0.3)
        after = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))
        if after.shape == before.shape and all(
            _near(after, colors[k]) > _near(before, colors[k]) + 30 for k in colors if error[k] is not None
        ):
            break
    latency = time.time() - clicked
    assert after.shape == before.shape
    changed = float((np.abs(after.astype(int) - before.astype(int)).max(axis=-1) > 30).mean())
    assert changed > 0.2, f"only {changed:.1%} of the canvas changed"
    for k in colors:
        if error[k] is not None:
            assert _near(after, colors[k]) > _near(before, colors[k]) + 30, (k, error)
    print(
        f"\nerror {error['kind']} on image {error['image']}: view centre {vp[0]:.1f}, {vp[1]:.1f} "
        f"(error {centre[0]:.1f}, {centre[1]:.1f}), {changed:.0%} of the canvas changed, "
        f"click -> marks drawn {1000 * latency:.0f} ms"
    )
    s.app_shot("evaluate-error")


# -- 4. Predict ----------------------------------------------------------------------------
def test_predict_button_predicts_and_draws_boxes(session: Session) -> None:
    s = session
    s.stage("PREDICT")
    s.page.locator(".widget-toggle-buttons:visible button", has_text="all images").first.click()
    assert s.until("app.predict.scope.value == 'all images'", 10)
    s.button("Predict").click()
    assert s.until("app.predict.job is not None and app.predict.job.status.done", 120), s.kernel.json(
        "str(app.predict.job)"
    )
    counts = s.kernel.json("[len(project.predictions(f'predict-{i}.png')) for i in range(2)]")
    assert all(n > 0 for n in counts), counts
    shown = s.until("app.predict.shown", 20)
    assert shown, s.kernel.json("[app.predict.info.value, app.predict.status.value]")
    s.page.get_by_text(re.compile(rf"{shown} boxes? at threshold")).first.wait_for(timeout=20_000)
    s.app_shot("predict")
