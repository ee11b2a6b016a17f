"""Helpers for browser tests: a notebook file, a kernel client on the notebook's kernel,
the SQLite file read read-only, and canvas pixels read in the page.

Needs /usr/bin/chromium and the Python playwright package (never ``playwright install``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

#: run in the page before its own scripts: remembers every <canvas> element created, so a
#: test can read the pixels of ipycanvas's layer canvases (models keep them out of the DOM)
RECORD_CANVASES = """
(() => {
  const create = Document.prototype.createElement;
  window.__canvases = [];
  Document.prototype.createElement = function (tag, ...rest) {
    const el = create.call(this, tag, ...rest);
    if (String(tag).toLowerCase() === "canvas") window.__canvases.push(el);
    return el;
  };
})();
"""


def require_browser() -> None:
    """Skip the calling test unless Debian's Chromium and the playwright package are there."""
    import pytest

    if not CHROMIUM.is_file():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def run_first_cell(page: Any, base: str, notebook: str, timeout_ms: int = 120_000) -> None:
    """Open ``notebook`` in JupyterLab (a fresh workspace), accept the kernel dialog when
    one asks, wait for the kernel to be idle, and run the first cell (Shift+Enter)."""
    page.goto(f"{base}/lab/tree/{notebook}?reset", timeout=timeout_ms)
    page.wait_for_selector(".jp-Notebook", timeout=timeout_ms)
    try:
        page.locator(".jp-Dialog button.jp-mod-accept").first.click(timeout=5_000)  # "Select Kernel"
    except Exception:
        pass
    page.locator("text=Idle >> visible=true").first.wait_for(timeout=timeout_ms)
    page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


@contextlib.contextmanager
def notebook_page(
    work: Path,
    notebook: str,
    cells: list[str],
    *,
    viewport: dict[str, int],
    args: Sequence[str] = (),
    init_script: str | None = None,
) -> Iterator[tuple[Any, Kernel]]:
    """JupyterLab serving ``work/root``, where ``notebook`` holds ``cells``, opened in Chromium
    with its first cell run; yields ``(page, kernel)``, ``kernel`` a second client of the
    notebook's kernel. Everything is closed on the way out."""
    require_browser()
    from playwright.sync_api import sync_playwright

    from tests._jupyter import jupyter_lab

    root = work / "root"
    root.mkdir(exist_ok=True)
    write_notebook(root / notebook, cells)
    with jupyter_lab(root, work) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args])
        kernel = None
        try:
            page = browser.new_page(viewport=viewport)
            if init_script is not None:
                page.add_init_script(init_script)
            page.on("dialog", lambda d: d.accept())  # "leave the page?" on a reload
            run_first_cell(page, base, notebook)
            kernel = Kernel(base, work / "runtime", notebook)
            yield page, kernel
        finally:
            if kernel is not None:
                kernel.close()
            browser.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
            for src in cells
        ],
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    }
    path.write_text(json.dumps(nb))


class Kernel:
    """A second client of the notebook's running kernel (as ``jupyter console --existing``
    would be): runs code there and returns what it printed."""

    def __init__(self, base: str, runtime_dir: Path, notebook: str, timeout: float = 60) -> None:
        from jupyter_client import BlockingKernelClient

        deadline = time.time() + timeout
        kernel_id = None
        while kernel_id is None:
            with urllib.request.urlopen(f"{base}/api/sessions", timeout=5) as r:
                for s in json.loads(r.read()):
                    if s.get("path", "").endswith(notebook) and s.get("kernel"):
                        kernel_id = s["kernel"]["id"]
            if kernel_id is None:
                if time.time() > deadline:
                    raise TimeoutError(f"no kernel session for {notebook}")
                time.sleep(0.5)
        conn = runtime_dir / f"kernel-{kernel_id}.json"
        while not conn.is_file():
            if time.time() > deadline:
                raise TimeoutError(f"no connection file {conn}")
            time.sleep(0.2)
        self.client = BlockingKernelClient()
        self.client.load_connection_file(str(conn))
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute ``code`` in the kernel; returns its stdout; raises on an error in it."""
        out: list[str] = []
        err: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                err.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(
            code, timeout=timeout, output_hook=hook, store_history=False, allow_stdin=False
        )
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel code failed:\n{code}\n{''.join(err)}")
        return "".join(out)

    def json(self, expr: str, timeout: float = 120) -> Any:
        """The value of a Python expression in the kernel, through JSON."""
        text = self.run(f"import json as _json\nprint(_json.dumps({expr}))", timeout)
        return json.loads(text.strip().splitlines()[-1])

    def close(self) -> None:
        self.client.stop_channels()


class Store:
    """The project's SQLite file, opened read-only from the test process."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._cx: sqlite3.Connection | None = None

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._cx is None:
            if not self.db.is_file():
                return []
            self._cx = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None)
        return [tuple(r) for r in self._cx.execute(sql, args)]

    def boxes(self, image_name: str) -> list[tuple[int, int, float, float, float, float]]:
        """(id, category_id, x1, y1, x2, y2) of an image's boxes, by id."""
        return [
            (int(r[0]), int(r[1]), *(float(v) for v in r[2:]))  # type: ignore[misc]
            for r in self.rows(
                "SELECT a.id, a.category_id, a.x1, a.y1, a.x2, a.y2 FROM annotations a "
                "JOIN images i ON i.id = a.image_id WHERE i.name = ? ORDER BY a.id",
                (image_name,),
            )
        ]

    def max_id(self) -> int:
        r = self.rows("SELECT coalesce(max(id), 0) FROM annotations")
        return int(r[0][0]) if r else 0

    def wait(self, cond: Any, timeout: float = 20.0, every: float = 0.05) -> Any:
        """Poll ``cond()`` until it returns something truthy; returns the last value."""
        deadline = time.time() + timeout
        value = cond()
        while not value and time.time() < deadline:
            time.sleep(every)
            value = cond()
        return value

    def close(self) -> None:
        if self._cx is not None:
            self._cx.close()
            self._cx = None


#: the recorded detached canvases of a size (ipycanvas models' layers and composite): for
#: each, its index, how many pixels are not transparent, and the top-left pixel's alpha
LAYER_SUMMARY = """
([w, h]) => (window.__canvases || []).map((c, i) => {
  if (c.isConnected || c.width !== w || c.height !== h) return null;
  const d = c.getContext("2d").getImageData(0, 0, w, h).data;
  let opaque = 0;
  for (let k = 3; k < d.length; k += 4) if (d[k] > 0) opaque++;
  return {index: i, opaque: opaque, corner: d[3]};
}).filter(x => x !== null)
"""

#: RGBA of the given points of recorded canvas ``index``
PIXELS = """
([index, points]) => {
  const c = window.__canvases[index];
  const ctx = c.getContext("2d");
  return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data));
}
"""


def overlay_canvas(page: Any, wh: tuple[int, int]) -> int | None:
    """Index (in ``window.__canvases``) of the overlay layer: the one layer canvas of this size
    that is partly drawn on and transparent elsewhere; the image layer and the composite are
    opaque everywhere, the rubber-band layer empty (None when there is not exactly one)."""
    layers = page.evaluate(LAYER_SUMMARY, list(wh))
    w, h = wh
    found = [c["index"] for c in layers if 0 < c["opaque"] < w * h]
    return found[0] if len(found) == 1 else None


def hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))
