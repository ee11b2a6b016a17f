"""The Labeler's reviewed tiles: key "t", the "tile done" checkbox and the green outlines,
driven by the messages the browser sends, with the project's state checked after."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler
from deepblock_nb.widgets._boxlist import centred_on
from deepblock_nb.widgets._keys import SHORTCUTS
from deepblock_nb.widgets._tilereview import TILE_DONE_COLOR
from deepblock_nb.widgets._viewport import convert
from tests.widgets.conftest import mouse, settled

# a 2 x 2 grid over the 400 x 300 train images
TILES = [(0, 0, 200, 150), (200, 0, 200, 150), (0, 150, 200, 150), (200, 150, 200, 150)]


def _point_to(lab: Labeler, xy: tuple[float, float]) -> None:
    """Move the mouse over image point ``xy`` as the browser reports it."""
    assert lab.view.viewport is not None
    x, y = convert(lab.view.viewport, np.array(xy, np.float64), "view")
    mouse(lab.view.canvas, "mouse_move", float(x), float(y))


def _strokes(lab: Labeler, monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, list[str], Any]]:
    """Record the boxes, colours and labels every overlay draw hands to the real stroke_boxes."""
    calls: list[tuple[np.ndarray, list[str], Any]] = []
    real = lab.view.stroke_boxes

    def stroke(xyxy: Any, colors: Any, *args: Any, **kwargs: Any) -> int:
        calls.append((np.asarray(xyxy, np.float64).reshape(-1, 4), list(colors), kwargs.get("labels")))
        return int(real(xyxy, colors, *args, **kwargs))

    monkeypatch.setattr(lab.view, "stroke_boxes", stroke)
    return calls


def _green(calls: list[tuple[np.ndarray, list[str], Any]]) -> list[list[float]]:
    """The boxes drawn in the reviewed-tile colour, sorted."""
    out = [
        b.tolist()
        for xyxy, colors, _ in calls
        for b, c in zip(xyxy, colors, strict=True)
        if c == TILE_DONE_COLOR
    ]
    return sorted(out)


def test_key_t_toggles_the_tile_under_the_pointer_and_the_overlay_draws_it(
    wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = Labeler(wproject, split="train")
    try:
        rec = lab.image
        wproject.set_grid(rec, 2, 2)
        settled()
        assert "t tile under the pointer" in SHORTCUTS
        calls = _strokes(lab, monkeypatch)

        _point_to(lab, (330, 260))  # inside tile 3
        lab._on_key("t")
        assert wproject.reviewed_tiles(rec) == [TILES[3]]
        assert not wproject.image(rec.id).reviewed  # the image as a whole is not done
        assert lab.tile_done.value and lab.tiles_review.focus == 3  # the checkbox follows the key
        assert _green(calls) == [[200, 150, 400, 300]]
        labels = [lab_ for xyxy, colors, lab_ in calls if colors and colors[0] == TILE_DONE_COLOR]
        assert labels and all("\u2713" in str(s) for s in labels[-1])  # a check mark on each
        # the white grid is still drawn under it
        assert any(len(xyxy) == 4 and set(colors) == {"#ffffff"} for xyxy, colors, _ in calls)

        _point_to(lab, (50, 40))  # tile 0
        lab._on_key("t")
        assert wproject.reviewed_tiles(rec) == [TILES[0], TILES[3]]
        calls.clear()
        _point_to(lab, (330, 260))
        lab._on_key("t")  # tile 3 again: not done any more
        assert wproject.reviewed_tiles(rec) == [TILES[0]]
        assert not lab.tile_done.value and lab.tiles_review.focus == 3
        assert _green(calls)[-1:] == [[0, 0, 200, 150]]  # the last overlay drew tile 0 only
        calls.clear()
        lab.show_grid.value = False  # the grid hidden: no outlines either
        assert _green(calls) == []
    finally:
        lab.close()


def test_the_checkbox_shows_and_sets_the_tile_at_the_view_centre(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    try:
        rec = lab.image
        wproject.set_grid(rec, 2, 2)
        settled()
        assert lab.view.viewport is not None
        lab.view.set_viewport(centred_on(lab.view.viewport, np.array([250.0, 20.0, 300.0, 60.0])))  # tile 1
        assert lab.tiles_review.focus == 1 and not lab.tile_done.value and not lab.tile_done.disabled

        wproject.set_reviewed(rec, tile=1)  # from a cell: the Labeler follows on the UI thread
        settled()
        assert lab.tile_done.value
        lab.tile_done.value = False  # the checkbox unmarks it in the project
        assert wproject.reviewed_tiles(rec) == []
        lab.tile_done.value = True
        assert wproject.reviewed_tiles(rec) == [TILES[1]]

        lab.view.set_viewport(centred_on(lab.view.viewport, np.array([20.0, 200.0, 60.0, 240.0])))  # tile 2
        assert lab.tiles_review.focus == 2 and not lab.tile_done.value
        # a finer grid keeps the reviewed window: the tiles inside it count as done
        wproject.set_grid(rec, 4, 4)
        settled()
        lab.view.set_viewport(centred_on(lab.view.viewport, np.array([210.0, 10.0, 240.0, 40.0])))
        assert lab.tiles_review.focus == 2 and lab.tile_done.value  # (0, 2) of the 4 x 4 grid
    finally:
        lab.close()


def test_without_a_grid_key_t_changes_nothing(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    try:
        rec = lab.image
        assert rec.grid is None and lab.tile_done.disabled
        _point_to(lab, (100, 100))
        lab._on_key("t")
        assert wproject.reviewed_tiles(rec) == [] and "no tile here" in lab.status.value
        assert not wproject.image(rec.id).reviewed
    finally:
        lab.close()
