"""Editing in the Labeler without a browser: resize handles, undo/redo, keys, incremental redraws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets import Labeler
from deepblock_nb.widgets._history import History
from deepblock_nb.widgets._viewport import convert, handle_at, resize_box
from tests.widgets.conftest import drag, mouse, settled


def key(lab: Labeler, k: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
    msg = {"event": "key_down", "key": k, "shift_key": shift, "ctrl_key": ctrl, "meta_key": meta}
    lab.view.canvas._handle_custom_msg(msg, [])


def view_pt(lab: Labeler, xy: tuple[float, float]) -> tuple[float, float]:
    assert lab.view.viewport is not None
    p = convert(lab.view.viewport, xy, "view")
    return (float(p[0]), float(p[1]))


def image_drag(lab: Labeler, a: tuple[float, float], b: tuple[float, float]) -> None:
    """Drag between two image points."""
    drag(lab.view.canvas, view_pt(lab, a), view_pt(lab, b))


def boxes(det: Any) -> list[tuple[list[float], int]]:
    return sorted((np.round(x, 6).tolist(), int(c)) for x, c in zip(det.xyxy, det.class_id))


def check(lab: Labeler, image: Any, expected: list[tuple[list[float], int]]) -> None:
    """The project holds exactly these boxes, and the Labeler's in-memory copy agrees."""
    settled()
    stored = lab.project.annotations(image)
    assert boxes(stored) == sorted(expected)
    if lab.image is not None and lab.image.id == lab.project.image(image).id:
        assert boxes(lab._boxes) == sorted(expected)
        assert sorted(lab._boxes.ids.tolist()) == sorted(stored.ids.tolist())


@pytest.fixture
def blank(wproject: dbn.Project) -> Any:
    return wproject.add_image(np.full((300, 400, 3), 90, np.uint8), name="blank.png", split="train")


# -- pure functions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((10, 20), "nw"),
        ((112, 18), "ne"),
        ((110, 80), "se"),
        ((8, 83), "sw"),
        ((60, 21), "n"),
        ((109, 50), "e"),
        ((60, 80), "s"),
        ((13, 50), "w"),
        ((60, 50), None),  # inside, away from the edges: a move, not a resize
        ((200, 200), None),  # far outside
        ((60, 10), None),  # beyond the radius above the top edge
        ((130, 50), None),  # beyond the radius right of the right edge
    ],
)
def test_handle_at(point: tuple[float, float], expected: str | None) -> None:
    assert handle_at([10, 20, 110, 80], point, 5) == expected


def test_handle_at_tiny_box_prefers_corners() -> None:
    assert handle_at([0, 0, 2, 2], (2, 2), 5) == "se"
    assert handle_at([0, 0, 2, 2], (-1, -1), 5) == "nw"
    assert handle_at([0, 0, 0, 0], (0, 0), 5) in {"nw", "ne", "se", "sw"}  # empty box


@pytest.mark.parametrize(
    ("handle", "dx", "dy", "expected"),
    [
        ("se", 5, 7, [10, 20, 115, 87]),
        ("nw", -5, 3, [5, 23, 110, 80]),
        ("ne", 2, -4, [10, 16, 112, 80]),
        ("sw", -1, 1, [9, 20, 110, 81]),
        ("n", 9, 5, [10, 25, 110, 80]),  # dx ignored on a horizontal edge
        ("s", 9, -5, [10, 20, 110, 75]),
        ("e", 10, 99, [10, 20, 120, 80]),
        ("w", 10, 99, [20, 20, 110, 80]),
        ("e", 0, 0, [10, 20, 110, 80]),  # no movement
        ("e", -150, 0, [-40, 20, 10, 80]),  # flipped past the left edge: sorted
        ("se", -150, -100, [-40, -20, 10, 20]),  # flipped on both axes
        ("e", -100, 0, [10, 20, 11, 80]),  # collapsed: grows min_size from the fixed edge
        ("w", 100, 0, [109, 20, 110, 80]),
        ("n", 0, 59.5, [10, 79, 110, 80]),  # just short of a flip: min size towards the fixed edge
        ("n", 0, 60.5, [10, 80, 110, 81]),  # just past it: min size on the other side
    ],
)
def test_resize_box(handle: str, dx: float, dy: float, expected: list[float]) -> None:
    box = np.array([10.0, 20.0, 110.0, 80.0])
    out = resize_box(box, handle, dx, dy)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(box, [10, 20, 110, 80])  # the argument is not changed


def test_resize_box_bounds_and_errors() -> None:
    np.testing.assert_allclose(
        resize_box([10, 20, 110, 80], "se", 500, 500, bounds_wh=(200, 100)), [10, 20, 200, 100]
    )
    np.testing.assert_allclose(
        resize_box([10, 20, 110, 80], "nw", -50, -50, bounds_wh=(200, 100)), [0, 0, 110, 80]
    )
    # collapsed against the image border: stays 1 px and inside the image
    np.testing.assert_allclose(resize_box([0, 0, 5, 5], "e", -20, 0, bounds_wh=(200, 100)), [0, 0, 1, 5])
    np.testing.assert_allclose(resize_box([0, 0, 1, 1], "se", 0, 0), [0, 0, 1, 1])  # a 1-pixel box
    with pytest.raises(ArgumentError):
        resize_box([0, 0, 5, 5], "x", 1, 1)


def test_history_against_the_project_remaps_ids(wproject: dbn.Project, blank: Any) -> None:
    h = History()
    p = wproject
    b = p.add_box(blank, "disc", [10, 10, 50, 50])
    h.added(blank.id, b, 1, [10, 10, 50, 50])
    p.update_box(b, xyxy=[20, 20, 60, 60])
    h.updated(blank.id, b, "move", ([10, 10, 50, 50], 1), ([20, 20, 60, 60], 1))
    p.delete_box(b)
    h.deleted(blank.id, b, 1, [20, 20, 60, 60])
    assert h.undo(p).kind == "delete"  # re-adds: a new id
    (new,) = p.annotations(blank).ids.tolist()
    assert h.undo(p).kind == "move"  # must act on the new id
    np.testing.assert_allclose(p.annotations(blank).xyxy, [[10, 10, 50, 50]])
    assert p.annotations(blank).ids.tolist() == [new]
    assert h.undo(p).kind == "add"
    assert len(p.annotations(blank)) == 0
    assert h.undo(p) is None
    for kind in ("add", "move", "delete"):
        assert h.redo(p).kind == kind
    assert len(p.annotations(blank)) == 0 and h.redo(p) is None
    h.undo(p)
    h.added(blank.id, p.add_box(blank, "disc", [1, 1, 5, 5]), 1, [1, 1, 5, 5])
    assert h.next_redo is None  # a new edit clears redo


# -- the Labeler ----------------------------------------------------------------------------
def test_edit_sequence_then_undo_all_and_redo_all(wproject: dbn.Project, blank: Any) -> None:
    lab = Labeler(wproject)
    lab.show(blank)
    cat = {c.name: c.id for c in wproject.categories}
    assert [i for _, i in lab.category.options][2] == cat["triangle"]
    lab.category.value = cat["square"]
    assert lab.undo_button.disabled and lab.redo_button.disabled

    states: list[list[tuple[list[float], int]]] = [[]]
    check(lab, blank, states[-1])
    image_drag(lab, (100, 100), (200, 180))  # draw
    states.append([([100, 100, 200, 180], cat["square"])])
    check(lab, blank, states[-1])
    assert not lab.undo_button.disabled

    key(lab, "s")
    assert lab.mode.value == "select"
    p = view_pt(lab, (150, 140))
    mouse(lab.view.canvas, "mouse_down", *p)
    mouse(lab.view.canvas, "mouse_up", *p)
    (box_id,) = wproject.annotations(blank).ids.tolist()
    assert lab.selected == box_id
    check(lab, blank, states[-1])  # a click changes nothing

    image_drag(lab, (200, 180), (220, 200))  # the south-east corner handle
    states.append([([100, 100, 220, 200], cat["square"])])
    check(lab, blank, states[-1])
    assert wproject.annotations(blank).ids.tolist() == [box_id]

    image_drag(lab, (100, 150), (80, 150))  # the west edge handle
    states.append([([80, 100, 220, 200], cat["square"])])
    check(lab, blank, states[-1])

    image_drag(lab, (150, 150), (160, 155))  # inside: a move
    states.append([([90, 105, 230, 205], cat["square"])])
    check(lab, blank, states[-1])

    key(lab, "3")  # relabel by position
    states.append([([90, 105, 230, 205], cat["triangle"])])
    check(lab, blank, states[-1])
    assert lab.category.value == cat["triangle"]

    key(lab, "Delete")
    states.append([])
    check(lab, blank, states[-1])
    assert lab.selected is None

    # undo each step in reverse order (Ctrl+Z, Cmd+Z, the button)
    for i, how in enumerate(["ctrl", "meta", "button", "ctrl", "ctrl", "meta"]):
        if how == "button":
            lab.undo_button.click()
        else:
            key(lab, "z", **{how: True})
        check(lab, blank, states[-2 - i])
    assert lab.undo_button.disabled and not lab.redo_button.disabled
    key(lab, "z", ctrl=True)  # nothing left: a message, no change
    assert "nothing to undo" in lab.status.value
    check(lab, blank, [])

    # redo them all (Ctrl+Shift+Z, Ctrl+Y, the button)
    for i, how in enumerate(["shift", "y", "button", "shift", "y", "shift"]):
        if how == "button":
            lab.redo_button.click()
        elif how == "y":
            key(lab, "y", ctrl=True)
        else:
            key(lab, "Z", shift=True, ctrl=True)
        check(lab, blank, states[i + 1])
    assert lab.redo_button.disabled

    # undo twice, then a new edit clears redo
    key(lab, "z", ctrl=True)
    key(lab, "z", ctrl=True)
    check(lab, blank, states[-3])
    lab.mode.value = "draw"
    image_drag(lab, (10, 10), (40, 40))
    assert lab.redo_button.disabled
    lab.redo()
    # the undone relabel selected the box again, so the dropdown (and the new box) say square
    check(lab, blank, [*states[-3], ([10, 10, 40, 40], cat["square"])])
    lab.close()


def test_resize_cannot_invert_or_leave_the_image(wproject: dbn.Project, blank: Any) -> None:
    lab = Labeler(wproject)
    lab.show(blank)
    box_id = wproject.add_box(blank, "disc", [100, 100, 200, 180])
    settled()
    lab.mode.value = "select"
    lab.select(box_id)
    image_drag(lab, (200, 180), (50, 500))  # se corner past the west edge and below the image
    check(lab, blank, [([50, 100, 100, 300], wproject.category("disc").id)])
    lab.close()


def test_undo_across_an_image_switch(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    first = lab.image
    before = wproject.annotations(first)
    box_id, box = int(before.ids[0]), before.xyxy[0]
    lab.mode.value = "select"
    lab.select(box_id)
    # move it by an edge-free point: the centre
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    image_drag(lab, centre, (centre[0] + 5, centre[1] + 4))
    moved = wproject.annotations(first).xyxy[wproject.annotations(first).ids == box_id][0]
    assert not np.allclose(moved, box)
    key(lab, "n")
    second = lab.image
    assert second.id != first.id
    gone = int(wproject.annotations(second).ids[0])
    lab.select(gone)
    key(lab, "Backspace")
    assert gone not in wproject.annotations(second).ids
    key(lab, "p")
    assert lab.image.id == first.id
    n_second = len(wproject.annotations(second))
    key(lab, "z", ctrl=True)  # the delete was on the second image: it is shown again
    assert lab.image.id == second.id
    assert len(wproject.annotations(second)) == n_second + 1
    check(lab, second, boxes(wproject.annotations(second)))
    key(lab, "z", ctrl=True)  # the move was on the first image
    assert lab.image.id == first.id
    check(lab, first, boxes(before))
    lab.close()


def test_escape_cancels_a_drag_and_clears_the_selection(wproject: dbn.Project, blank: Any) -> None:
    lab = Labeler(wproject)
    lab.show(blank)
    c = lab.view.canvas
    mouse(c, "mouse_down", *view_pt(lab, (10, 10)))
    mouse(c, "mouse_move", *view_pt(lab, (100, 100)))
    key(lab, "Escape")
    mouse(c, "mouse_up", *view_pt(lab, (100, 100)))
    check(lab, blank, [])
    box_id = wproject.add_box(blank, "disc", [100, 100, 200, 180])
    settled()
    lab.mode.value = "select"
    lab.select(box_id)
    mouse(c, "mouse_down", *view_pt(lab, (150, 150)))
    mouse(c, "mouse_move", *view_pt(lab, (180, 170)))
    key(lab, "Escape")
    mouse(c, "mouse_up", *view_pt(lab, (180, 170)))
    assert lab.selected is None and lab.delete_button.disabled
    check(lab, blank, [([100, 100, 200, 180], wproject.category("disc").id)])
    assert lab.history.next_undo is None  # nothing was recorded
    lab.close()


def test_navigation_and_mode_keys(wproject: dbn.Project) -> None:
    lab = Labeler(wproject)
    names = [r.name for r in wproject.images()]
    key(lab, "n")
    assert lab.image.name == names[1]
    key(lab, "ArrowRight")
    assert lab.image.name == names[2]
    key(lab, "p")
    assert lab.image.name == names[1]
    key(lab, "ArrowLeft")
    key(lab, "ArrowLeft")
    assert lab.image.name == names[-1]
    key(lab, "h")
    assert lab.mode.value == "pan" and lab.view.mode == "pan"
    key(lab, "s", ctrl=True)  # a browser shortcut, not ours
    assert lab.mode.value == "pan"
    key(lab, "d")
    assert lab.mode.value == "draw"
    key(lab, "2")  # in draw mode a number picks the category for the next box
    assert lab.category.value == [i for _, i in lab.category.options][1]
    key(lab, "9")  # no ninth category: nothing happens
    assert lab.category.value == [i for _, i in lab.category.options][1]
    lab.close()


def test_shortcut_hint_is_shown(wproject: dbn.Project) -> None:
    lab = Labeler(wproject)
    assert lab.shortcuts in lab.children
    assert lab.children.index(lab.shortcuts) == lab.children.index(lab.view.canvas) + 1
    text = lab.shortcuts.value
    for part in ("Ctrl+Z", "Ctrl+Y", "Esc", "1-9", "h pan", "n/", "p/", "click outside"):
        assert part in text, part
    assert lab.undo_button.icon == "undo" and lab.redo_button.icon == "redo"
    lab.close()


def test_own_edits_update_in_memory_and_redraw_only_the_overlay(
    wproject: dbn.Project, blank: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = Labeler(wproject)
    lab.show(blank)
    settled()
    reads: list[object] = []
    overlays: list[object] = []
    original_read, original_overlay = wproject.annotations, lab.view.redraw_overlay
    monkeypatch.setattr(wproject, "annotations", lambda image: reads.append(image) or original_read(image))
    monkeypatch.setattr(
        lab.view, "redraw_overlay", lambda hold=True: overlays.append(1) or original_overlay(hold)
    )
    renders = lab.view.renders
    image_drag(lab, (100, 100), (200, 180))
    lab.mode.value = "select"
    lab.select(int(lab._boxes.ids[0]))
    image_drag(lab, (150, 150), (160, 160))
    image_drag(lab, (210, 190), (230, 200))
    key(lab, "2")
    lab.undo()
    lab.redo()
    key(lab, "Delete")
    lab.undo()
    settled()
    assert reads == []  # neither the edits nor their project events re-read the boxes
    assert lab.view.renders == renders  # the image layer was not repainted
    assert len(overlays) >= 8
    monkeypatch.setattr(wproject, "annotations", original_read)
    check(lab, blank, [([110, 110, 230, 200], [i for _, i in lab.category.options][1])])
    # an edit from elsewhere still reloads the boxes
    monkeypatch.setattr(wproject, "annotations", lambda image: reads.append(image) or original_read(image))
    wproject.add_box(blank, "disc", [1, 1, 20, 20])
    settled()
    assert reads and len(lab._boxes) == 2
    lab.close()


def test_done_marks_the_image_reviewed_and_the_list_shows_counts_and_filters(wproject: Any) -> None:
    from deepblock_nb.widgets import Labeler
    from deepblock_nb.widgets._util import ui_idle

    lab = Labeler(wproject)
    try:
        first = wproject.image(lab.image_list.value)
        assert not lab.done.value and not first.reviewed
        assert "boxes" in lab.image_list.label
        lab.done.value = True
        assert wproject.image(first.id).reviewed
        assert ui_idle(5)
        assert ", done" in lab.image_list.label and lab.image_list.value == first.id
        lab.review_filter.value = "todo"
        assert first.id not in [i for _, i in lab.image_list.options]
        lab.review_filter.value = "done"
        assert [i for _, i in lab.image_list.options] == [first.id] and lab.done.value
        lab.done.value = False
        assert not wproject.image(first.id).reviewed
    finally:
        lab.close()


def test_the_image_list_counts_follow_edits(wproject: Any) -> None:
    from deepblock_nb.widgets._util import ui_idle

    lab = Labeler(wproject)
    try:
        rec = lab.image
        before = len(wproject.annotations(rec))
        wproject.add_box(rec, wproject.categories[0].name, [1, 1, 20, 20])
        assert ui_idle(5)
        assert f"({before + 1} boxes" in lab.image_list.label and lab.image.id == rec.id
    finally:
        lab.close()


def test_an_image_with_100000_boxes_stays_usable(tmp_path: Any) -> None:
    import time

    from PIL import Image

    from tests.widgets.conftest import mouse

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (2000, 2000, 3), np.uint8)).save(tmp_path / "dense.png")
    project = dbn.Project.create(tmp_path / "p", categories=["cell"])
    try:
        rec = project.add_image(tmp_path / "dense.png")
        xy = rng.uniform(0, 1990, (100_000, 2))
        project.add_boxes(rec, "cell", np.concatenate([xy, xy + rng.uniform(2, 8, (100_000, 2))], 1))
        t0 = time.perf_counter()
        lab = Labeler(project, width=800, height=800)
        opened = time.perf_counter() - t0
        assert lab._box_index() is not None and len(lab._boxes) == 100_000
        t0 = time.perf_counter()
        drag(lab.view.canvas, (100, 100), (180, 160))
        added = time.perf_counter() - t0
        assert len(project.annotations(rec)) == 100_001
        lab.mode.value = "select"
        x1, y1, x2, y2 = project.annotations(rec).xyxy[-1]
        cx, cy = convert(lab.view.viewport, np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]), "view")[0]
        mouse(lab.view.canvas, "mouse_down", cx, cy)
        mouse(lab.view.canvas, "mouse_up", cx, cy)
        assert lab.selected is not None
        print(
            f"\n100,000 boxes: Labeler opened in {opened:.2f} s, a drawn box stored in {1000 * added:.0f} ms"
        )
        lab.close()
    finally:
        project.close()
