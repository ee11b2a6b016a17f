"""The Labeler driven by the same messages the browser sends: boxes land in the project."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ipycanvas import canvas as ipycanvas_canvas

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler
from deepblock_nb.widgets._viewport import convert
from tests.widgets.conftest import drag, mouse, settled, wait_until


def _new_box(project: dbn.Project, image: object, before: set[int]) -> np.ndarray:
    det = project.annotations(image)  # type: ignore[arg-type]
    new = [i for i, b in enumerate(det.ids) if int(b) not in before]
    assert len(new) == 1, f"expected one new box, got {len(new)}"
    return det.xyxy[new[0]]


@pytest.mark.parametrize(
    "setup",
    ["fit", "zoom_in", "zoom_in_panned", "zoom_out", "wheel"],
)
def test_drawing_stores_the_image_pixel_box_at_any_zoom_and_pan(wproject: dbn.Project, setup: str) -> None:
    lab = Labeler(wproject, split="train")
    img = lab.image
    view = lab.view
    canvas = view.canvas
    if setup == "zoom_in":
        lab.zoom_in.click()
        lab.zoom_in.click()
    elif setup == "zoom_in_panned":
        lab.zoom_in.click()
        lab.mode.value = "pan"
        drag(canvas, (400, 300), (330, 250))
        lab.mode.value = "draw"
    elif setup == "zoom_out":
        lab.zoom_out.click()
    elif setup == "wheel":
        mouse(canvas, "mouse_move", 100, 120)
        canvas._handle_custom_msg({"event": "mouse_wheel", "x": 0, "y": -100}, [])
    vp = view.viewport
    assert vp is not None
    if setup != "fit":
        assert not np.isclose(vp.scale, vp.fit_scale) or setup == "zoom_in_panned"
    # choose canvas points that cover image pixels (60, 40) .. (150, 110)
    p0, p1 = convert(vp, [60, 40], "view"), convert(vp, [150, 110], "view")
    before = set(wproject.annotations(img).ids.tolist())
    lab.category.value = wproject.category("square").id
    drag(canvas, tuple(p0), tuple(p1))
    box = _new_box(wproject, img, before)
    np.testing.assert_allclose(box, [60, 40, 150, 110], atol=1e-6)
    det = wproject.annotations(img)
    assert det.class_id[-1] == wproject.category("square").id
    assert "added box" in lab.status.value


def test_drag_backwards_and_off_the_image_is_clipped_and_a_click_adds_nothing(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    img, vp = lab.image, lab.view.viewport
    assert vp is not None
    before = set(wproject.annotations(img).ids.tolist())
    far = convert(vp, [500, 400], "view")  # beyond the 400x300 image
    near = convert(vp, [300, 200], "view")
    drag(lab.view.canvas, tuple(far), tuple(near))
    np.testing.assert_allclose(_new_box(wproject, img, before), [300, 200, 400, 300])
    n = len(wproject.annotations(img))
    drag(lab.view.canvas, (100, 100), (100.5, 100.5))  # a click, not a box
    assert len(wproject.annotations(img)) == n


def test_a_drag_that_leaves_the_canvas_ends_at_its_edge(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    before = wproject.annotations(lab.image)
    c = lab.view.canvas
    vp = lab.view.viewport
    assert vp is not None
    cw = lab.view.canvas_wh[0]
    mouse(c, "mouse_down", 100, 100)
    mouse(c, "mouse_move", 200, 200)
    mouse(c, "mouse_move", cw + 40, 220)  # the last move the page reports is past the right edge
    mouse(c, "mouse_out", cw + 40, 220)
    mouse(c, "mouse_up", 250, 250)  # outside: the page never sends it; ignored if it did
    after = wproject.annotations(lab.image)
    assert len(after) == len(before) + 1
    expected = np.r_[convert(vp, [100, 100], "image"), convert(vp, [cw, 220], "image")]
    np.testing.assert_allclose(after.xyxy[-1], np.minimum(expected, [*vp.image_wh, *vp.image_wh]), atol=0.5)
    # Escape still cancels a drag
    mouse(c, "mouse_down", 100, 100)
    mouse(c, "mouse_move", 200, 200)
    lab._on_key("Escape")
    mouse(c, "mouse_out", 200, 200)
    assert len(wproject.annotations(lab.image)) == len(before) + 1


def test_select_move_recolour_and_delete(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    img, vp = lab.image, lab.view.viewport
    assert vp is not None
    box_id = wproject.add_box(img, "disc", [10, 10, 60, 50])
    settled()  # the labeler reloads its boxes on the UI thread
    lab.mode.value = "select"
    c = lab.view.canvas
    inside = convert(vp, [20, 20], "view")
    mouse(c, "mouse_down", *inside)
    mouse(c, "mouse_up", *inside)
    assert lab.selected == box_id and not lab.delete_button.disabled
    assert lab.category.value == wproject.category("disc").id
    # drag the box 10 image pixels right and 5 down
    target = convert(vp, [30, 25], "view")
    drag(c, tuple(inside), tuple(target))
    settled()
    det = wproject.annotations(img)
    np.testing.assert_allclose(det.xyxy[det.ids == box_id][0], [20, 15, 70, 55], atol=1e-6)
    lab.category.value = wproject.category("triangle").id
    det = wproject.annotations(img)
    assert det.class_id[det.ids == box_id][0] == wproject.category("triangle").id
    lab.delete_button.click()
    assert box_id not in wproject.annotations(img).ids
    assert lab.selected is None
    # clicking empty space selects nothing
    outside = convert(vp, [399, 299], "view")
    mouse(c, "mouse_down", *outside)
    mouse(c, "mouse_up", *outside)
    assert lab.selected is None


def test_keys_delete_and_switch_modes(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    box_id = wproject.add_box(lab.image, "disc", [300, 200, 390, 290])
    settled()
    lab.mode.value = "select"
    lab.select(box_id)
    key = {"event": "key_down", "key": "Delete", "shift_key": False, "ctrl_key": False, "meta_key": False}
    lab.view.canvas._handle_custom_msg(key, [])
    assert box_id not in wproject.annotations(lab.image).ids
    lab.view.canvas._handle_custom_msg({**key, "key": "h"}, [])
    assert lab.mode.value == "pan" and lab.view.mode == "pan"


def test_image_list_next_prev_and_split_filter(wproject: dbn.Project) -> None:
    lab = Labeler(wproject)
    names = [r.name for r in wproject.images()]
    assert [o[0].split(" (")[0] for o in lab.image_list.options] == names
    first = lab.image.name
    lab.next_button.click()
    assert lab.image.name == names[1]
    lab.prev_button.click()
    lab.prev_button.click()
    assert lab.image.name == names[-1] and first == names[0]
    lab.split.value = "train"
    assert len(lab.image_list.options) == 2
    lab.show(wproject.images("predict")[0])
    assert lab.split.value == "all" and lab.image.split == "predict"


def test_large_image_is_never_read_whole(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]
    lab = Labeler(wproject, width=400, height=300)
    reads: list[tuple[int, int]] = []
    lab.show(big)
    src = lab.view._source
    original = src.read_region

    def counting(x: int, y: int, w: int, h: int, level: int = 0):  # type: ignore[no-untyped-def]
        reads.append((w, h))
        return original(x, y, w, h, level)

    src.read_region = counting
    for _ in range(6):
        lab.zoom_in.click()
    assert reads, "zoomed in past the overview: the view reads regions of the image"
    assert max(w * h for w, h in reads) < big.width * big.height / 4
    assert max(w for w, _ in reads) <= 400 + 2 and max(h for _, h in reads) <= 300 + 2


def test_events_from_other_threads_and_client_ready_redraw(wproject: dbn.Project) -> None:
    lab = Labeler(wproject, split="train")
    img = lab.image
    n = len(lab._boxes.xyxy)
    t = threading.Thread(target=lambda: wproject.add_box(img, "disc", [1, 1, 30, 30]))
    t.start()
    t.join()
    settled()
    assert len(lab._boxes.xyxy) == n + 1
    assert f"{n + 1} boxes" in lab.info.value
    renders = lab.view.renders
    lab.view.canvas._handle_custom_msg({"event": "client_ready"}, [])
    assert lab.view.renders == renders + 1
    wproject.add_category("star")
    settled()
    assert "star" in [o[0] for o in lab.category.options]
    wproject.add_image(np.zeros((20, 30, 3), np.uint8), name="new.png")
    assert wait_until(lambda: "new.png" in [o[0].split(" (")[0] for o in lab.image_list.options])


def test_mouse_moves_are_cheap(wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Labeler(wproject, split="train")
    sent: list[object] = []
    manager = ipycanvas_canvas._CANVAS_MANAGER
    original = manager._send_custom

    def counting(*args: object, **kwargs: object) -> None:
        sent.append(args)
        original(*args, **kwargs)

    monkeypatch.setattr(manager, "_send_custom", counting)
    c = lab.view.canvas
    t0 = time.perf_counter()
    for i in range(2000):  # hovering: nothing is drawn
        mouse(c, "mouse_move", i % 800, i % 500)
    hover = time.perf_counter() - t0
    assert sent == []
    assert hover < 1.0
    mouse(c, "mouse_down", 10, 10)
    t0 = time.perf_counter()
    for i in range(300):
        mouse(c, "mouse_move", 10 + i, 10 + i)
    elapsed = time.perf_counter() - t0
    # the rubber band is redrawn at most ~30 times a second, not once per move
    assert len(sent) <= 30 * elapsed + 2
    mouse(c, "mouse_up", 300, 300)


def test_no_categories_gives_a_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = dbn.Project.create(tmp_path / "p")
    p.add_image(np.full((50, 60, 3), 128, np.uint8), name="a.png")
    lab = Labeler(p)
    drag(lab.view.canvas, (100, 100), (300, 300))
    assert "category" in lab.status.value
    assert len(p.annotations("a.png")) == 0
    lab.close()
    p.close()


def test_boxes_are_stroked_in_their_category_colours(
    wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = Labeler(wproject, split="train")
    layer = lab.view.canvas[1]
    strokes: list[tuple[str, int]] = []
    original = layer.stroke_rects

    def recording(x, y, width, height=None):  # type: ignore[no-untyped-def]
        strokes.append((layer.stroke_style, len(np.atleast_1d(x))))
        return original(x, y, width, height)

    monkeypatch.setattr(layer, "stroke_rects", recording)
    wproject.recolor_category("square", "#00ff00")
    settled()  # the redraw after the event, on the UI thread, is over before strokes are cleared
    det = wproject.annotations(lab.image)
    expected: dict[str, int] = {}
    for c in det.class_id:
        color = wproject.category(int(c)).color
        expected[color] = expected.get(color, 0) + 1
    strokes.clear()
    lab.select(int(det.ids[0]))  # a selection redraws, and adds a highlight of its own
    drawn = dict(strokes[: len(expected)])
    assert drawn == expected
    assert strokes[-1] == ("#ffff00", 1)


def test_the_labeler_labels_the_evaluate_split_with_its_grid_drawn(
    wproject: dbn.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = wproject.add_image(np.full((240, 320, 3), 90, np.uint8), name="held.png", split="evaluate")
    wproject.set_grid(rec, 2, 2)
    lab = Labeler(wproject, split="evaluate")
    grids: list[list[tuple[int, int, int, int]]] = []
    real = lab.view.stroke_grid
    monkeypatch.setattr(
        lab.view, "stroke_grid", lambda tiles, *a, **k: grids.append(list(tiles)) or real(tiles, *a, **k)
    )
    try:
        assert lab.image is not None and lab.image.id == rec.id
        assert [i for _, i in lab.image_list.options] == [rec.id]  # only evaluate images are listed
        lab.view.redraw_overlay()
        assert grids and sorted(map(tuple, grids[-1])) == sorted(map(tuple, wproject.tiles(rec)))
        drag(lab.view.canvas, (40, 40), (160, 120))  # a box drawn on the evaluate image is stored there
        assert len(wproject.annotations(rec)) == 1
        assert wproject.image(rec).split == "evaluate"
    finally:
        lab.close()
