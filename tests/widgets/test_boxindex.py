"""BoxIndex against brute force, its speed on 100,000 boxes, and ImageView.stroke_boxes(index=...)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from ipycanvas import canvas as ipycanvas_canvas

from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets._boxindex import BoxIndex
from deepblock_nb.widgets._imageview import MAX_STROKED_BOXES, ImageView
from deepblock_nb.widgets._viewport import fit, hit_test, zoom_at

CMD = {v: k for k, v in ipycanvas_canvas.COMMANDS.items()}


def _random_boxes(rng: np.random.Generator, n: int, side: float, max_wh: float) -> np.ndarray:
    xy = rng.uniform(0, side, (n, 2))
    wh = rng.uniform(1, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)  # [N,4]


def _brute_query(b: np.ndarray, alive: np.ndarray, w: tuple[float, float, float, float]) -> np.ndarray:
    ok = alive & (b[:, 0] <= w[2]) & (b[:, 2] >= w[0]) & (b[:, 1] <= w[3]) & (b[:, 3] >= w[1])
    return np.flatnonzero(ok)


def _brute_hit(b: np.ndarray, alive: np.ndarray, p: tuple[float, float]) -> int:
    i = hit_test(np.where(alive[:, None], b, np.nan), p)  # NaN boxes contain nothing
    return i


def _check(idx: BoxIndex, b: np.ndarray, alive: np.ndarray, rng: np.random.Generator, side: float) -> None:
    for _ in range(60):
        x, y = rng.uniform(-50, side + 50, 2)
        w, h = rng.exponential(side / 8, 2)
        win = (x, y, x + w, y + h)
        np.testing.assert_array_equal(idx.query(win), _brute_query(b, alive, win))
        p = (float(x), float(y))
        assert idx.hit(p) == _brute_hit(b, alive, p)
    # a point on a box's edge and a window touching one count
    live = np.flatnonzero(alive)
    if len(live):
        j = int(live[0])
        assert j in idx.query((b[j, 2], b[j, 3], b[j, 2] + 5, b[j, 3] + 5))
        assert idx.hit((b[j, 0], b[j, 1])) == _brute_hit(b, alive, (b[j, 0], b[j, 1]))


@pytest.mark.parametrize("n", [0, 1, 500, 5000])
def test_query_and_hit_match_brute_force_after_adds_removes_updates(n: int) -> None:
    rng = np.random.default_rng(n)
    side = 2000.0
    b = _random_boxes(rng, n, side, 80.0)
    if n >= 500:
        b[:3] = [[0, 0, side, side], [-100, -100, -10, -10], [side + 5, 10, side + 50, 40]]  # huge, outside
    idx = BoxIndex(b, extent_wh=(side, side))
    alive = np.ones(n, dtype=bool)
    _check(idx, b, alive, rng, side)
    for _ in range(300):
        op = rng.integers(3) if alive.any() else 0
        if op == 0:
            box = _random_boxes(rng, 1, side, 300.0)[0]
            assert idx.add(box) == len(b)
            b, alive = np.vstack([b, box]), np.append(alive, True)
        elif op == 1:
            j = int(rng.choice(np.flatnonzero(alive)))
            idx.remove(j)
            alive[j] = False
        else:
            j = int(rng.choice(np.flatnonzero(alive)))
            b[j] = _random_boxes(rng, 1, side, 300.0)[0]
            idx.update(j, b[j])
    assert len(idx) == int(alive.sum())
    np.testing.assert_array_equal(idx.alive, alive)
    _check(idx, b, alive, rng, side)


def test_bad_input_and_missing_ids_raise() -> None:
    with pytest.raises(ArgumentError):
        BoxIndex(np.zeros((3, 3)))
    idx = BoxIndex([[0, 0, 10, 10]])
    idx.remove(0)
    with pytest.raises(ArgumentError):
        idx.remove(0)
    with pytest.raises(ArgumentError):
        idx.update(5, [0, 0, 1, 1])
    assert idx.hit((5, 5)) == -1 and len(idx.query((0, 0, 100, 100))) == 0


def test_counts_per_cell_counts_box_centres() -> None:
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [90, 90, 100, 100], [200, 200, 210, 210]], float)
    c = BoxIndex(b).counts_per_cell((0, 0, 100, 100), (2, 2))
    np.testing.assert_array_equal(c, [[2, 0], [0, 1]])
    assert BoxIndex(np.zeros((0, 4))).counts_per_cell((0, 0, 10, 10), (3, 1)).tolist() == [[0, 0, 0]]
    assert BoxIndex(b).counts_per_cell((0, 0, 0, 10), (3, 1)).shape == (1, 3)


def test_100k_boxes_build_and_query_fast() -> None:
    rng = np.random.default_rng(0)
    b = _random_boxes(rng, 100_000, 20_000.0, 120.0)
    t = time.perf_counter()
    idx = BoxIndex(b, extent_wh=(20_000, 20_000))
    build = time.perf_counter() - t
    windows = [(x, y, x + 1000, y + 700) for x, y in rng.uniform(0, 19_000, (100, 2))]
    t = time.perf_counter()
    found = [idx.query(w) for w in windows]
    query = (time.perf_counter() - t) / len(windows)
    t = time.perf_counter()
    hits = [idx.hit((w[0], w[1])) for w in windows]
    hit = (time.perf_counter() - t) / len(windows)
    t = time.perf_counter()
    everything = idx.query((0, 0, 20_000, 20_000))
    whole = time.perf_counter() - t
    print(
        f"\n100,000 boxes: build {build * 1e3:.0f} ms ({idx.grid_wh} cells), "
        f"1000x700 window query {query * 1e3:.2f} ms (~{np.mean([len(f) for f in found]):.0f} boxes), "
        f"hit {hit * 1e3:.2f} ms, whole-image query {whole * 1e3:.0f} ms"
    )
    assert len(everything) == 100_000
    np.testing.assert_array_equal(found[0], _brute_query(b, np.ones(len(b), bool), windows[0]))
    assert hits[0] == hit_test(b, (windows[0][0], windows[0][1]))
    assert build < 1.0 and query < 0.01


class _Wire:
    def __init__(self) -> None:
        self.sent: list[Any] = []


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> _Wire:
    w = _Wire()
    manager = ipycanvas_canvas._CANVAS_MANAGER
    orig = manager.send_command

    def send_command(canvas: Any, command: Any, buffers: list[Any] = []) -> None:  # noqa: B006 (ipycanvas's own signature)
        w.sent.append((CMD.get(command[0]), command[1], buffers))
        orig(canvas, command, buffers)

    monkeypatch.setattr(manager, "send_command", send_command)
    return w


def _view_on(side: int) -> ImageView:
    v = ImageView(SimpleNamespace(), width=800, height=560)
    v.viewport = fit((side, side), v.canvas_wh)
    return v


def test_stroke_boxes_with_index_draws_only_visible_boxes_then_density(wire: _Wire) -> None:
    rng = np.random.default_rng(3)
    side = 20_000
    b = _random_boxes(rng, 100_000, side, 120.0)
    colors = np.where(rng.random(len(b)) < 0.5, "#ff0000", "#00ff00").tolist()
    idx = BoxIndex(b, extent_wh=(side, side))
    view = _view_on(side)
    try:
        view.viewport = zoom_at(view.viewport, 20.0)  # type: ignore[arg-type]
        wire.sent.clear()
        labels = [str(i) for i in range(len(b))]
        view.stroke_boxes(b, colors, index=idx, labels=labels)  # warm up
        wire.sent.clear()
        t = time.perf_counter()
        shown = view.stroke_boxes(b, colors, index=idx, labels=labels)
        indexed = time.perf_counter() - t
        cmds = list(wire.sent)
        wire.sent.clear()
        t = time.perf_counter()
        plain = view.stroke_boxes(b, colors)
        unindexed = time.perf_counter() - t
        assert shown == plain and 0 < shown <= MAX_STROKED_BOXES  # the same boxes as without the index
        rects = [c for c in cmds if c[0] == "strokeRects"]
        assert len(rects) == 2 and sum(len(np.asarray(r[2][0]).view(np.float64)) for r in rects) == shown
        assert len(cmds) <= 12 + 2 * shown  # style sets, two stroke commands, a label per box at most
        print(
            f"\nzoomed in: {shown} boxes, {len(cmds)} commands; indexed {indexed * 1e3:.1f} ms, all {unindexed * 1e3:.1f} ms"
        )

        view.viewport = zoom_at(view.viewport, 8.0)  # type: ignore[arg-type]
        wire.sent.clear()
        few = view.stroke_boxes(b, colors, index=idx, labels=labels)
        texts = sorted(int(c[1][0]) for c in wire.sent if c[0] == "fillText")
        assert 0 < few <= 300 and texts == idx.query(view.viewport.window).tolist()  # labels by box id

        view.viewport = fit((side, side), view.canvas_wh)
        wire.sent.clear()
        t = time.perf_counter()
        shown = view.stroke_boxes(b, colors, index=idx)
        density = time.perf_counter() - t
        names = [c[0] for c in wire.sent]
        print(f"zoomed out: {shown} boxes -> density in {len(names)} commands, {density * 1e3:.1f} ms")
        assert shown == 100_000
        assert "fillStyledRects" in names and "strokeRects" not in names and len(names) <= 4
    finally:
        view.close()


def test_a_whole_image_query_scans_the_ids_and_stays_exact_after_edits() -> None:
    rng = np.random.default_rng(3)
    side = 2000.0
    b = _random_boxes(rng, 100_000, side - 10, 8.0)
    idx = BoxIndex(b, extent_wh=(side, side))
    alive = np.ones(len(b), dtype=bool)
    for j in rng.choice(len(b), 200, replace=False).tolist():  # edits leave per-cell overflow lists
        if j % 2:
            idx.remove(j)
            alive[j] = False
        else:
            b[j] = _random_boxes(rng, 1, side, 8.0)[0]
            idx.update(j, b[j])
    for box in _random_boxes(rng, 50, side, 8.0):
        idx.add(box)
        b, alive = np.vstack([b, box]), np.append(alive, True)
    idx.add([0, 0, side, side])  # one huge box, on the always-checked list
    b, alive = np.vstack([b, [0, 0, side, side]]), np.append(alive, True)
    whole = (0.0, 0.0, side, side)
    windows = [
        whole,
        (-500, -500, side + 500, side + 500),
        (0, 0, side / 2, side),
        (100, 100, 400, 300),
        (3, 3, 3, 3),
    ]
    for w in windows:
        np.testing.assert_array_equal(idx.query(w), _brute_query(b, alive, w))
    assert idx._candidates(whole) is None  # no cell entries gathered for the whole image
    assert idx._candidates(windows[3]) is not None
    t = time.perf_counter()
    for _ in range(10):
        idx.query(whole)
    per_query = (time.perf_counter() - t) / 10
    t = time.perf_counter()
    small = [idx.query((x, y, x + 200, y + 200)) for x, y in rng.uniform(0, side - 200, (50, 2))]
    per_small = (time.perf_counter() - t) / 50
    print(
        f"\n100,000 boxes after 250 edits: whole-image query {per_query * 1e3:.2f} ms, "
        f"200x200 window {per_small * 1e3:.2f} ms (~{np.mean([len(s) for s in small]):.0f} boxes)"
    )
