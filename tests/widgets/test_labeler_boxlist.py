"""The Labeler's box list, show/hide toggles and category labels, without a browser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets import Labeler
from deepblock_nb.widgets._boxlist import BoxList, box_order, centred_on
from deepblock_nb.widgets._imageview import text_color_on
from deepblock_nb.widgets._viewport import Viewport, convert, fit
from tests.widgets.conftest import drag, mouse, settled


def click_image(lab: Labeler, xy: tuple[float, float]) -> None:
    """A click (press and release on the spot) at an image point."""
    assert lab.view.viewport is not None
    x, y = convert(lab.view.viewport, xy, "view")
    mouse(lab.view.canvas, "mouse_down", x, y)
    mouse(lab.view.canvas, "mouse_up", x, y)


def strokes(lab: Labeler, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what the view's real stroke_boxes receives (the main call of each overlay redraw)."""
    calls: list[dict[str, Any]] = []
    real = lab.view.stroke_boxes

    def recording(xyxy: Any, colors: Any, *args: Any, **kwargs: Any) -> int:
        calls.append({"xyxy": np.asarray(xyxy).reshape(-1, 4).copy(), "colors": list(colors), **kwargs})
        return real(xyxy, colors, *args, **kwargs)

    monkeypatch.setattr(lab.view, "stroke_boxes", recording)
    return calls


@pytest.fixture
def two_cats(tmp_path: Path) -> Iterator[tuple[dbn.Project, Any]]:
    p = dbn.Project.create(tmp_path / "p", categories=["ant", "bee"])
    rec = p.add_image(np.full((300, 400, 3), 90, np.uint8), name="blank.png", split="train")
    yield p, rec
    settled()
    p.close()


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dbn.Project, Any]]:
    """One 2000x2000 image with 100,000 small boxes in two categories."""
    root = tmp_path_factory.mktemp("dense")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), np.uint8)).resize((2000, 2000)).save(root / "d.png")
    p = dbn.Project.create(root / "p", categories=["cell", "debris"])
    rec = p.add_image(root / "d.png")
    xy = rng.uniform(0, 1990, (100_000, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(2, 8, (100_000, 2))], 1)
    p.add_boxes(rec, [1 + int(k) for k in rng.integers(0, 2, 100_000)], xyxy)
    yield p, rec
    settled()
    p.close()


# -- pure parts ------------------------------------------------------------------------------
def test_box_order_and_centring() -> None:
    xyxy = np.array([[50, 10, 60, 20], [0, 10, 5, 20], [0, 0, 9, 9]], float)
    assert box_order(xyxy, [2, 1, 2], "position").tolist() == [2, 1, 0]
    assert box_order(xyxy, [2, 1, 2], "category").tolist() == [1, 2, 0]
    assert box_order(np.zeros((0, 4)), [], "position").tolist() == []
    with pytest.raises(ArgumentError):
        box_order(xyxy, [1, 1, 1], "size")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError):
        BoxList(lambda _: None, page_size=0)
    vp = fit((400, 300), (800, 560))
    big = centred_on(vp, [100, 100, 300, 250])  # 373 x 280 canvas px: same scale, centred
    assert big.scale == vp.scale
    np.testing.assert_allclose(convert(big, [200, 175], "view"), [400, 280])
    tiny = centred_on(vp, [10, 10, 14, 13])  # 7 canvas px: zoomed in to ~120
    assert 4 * tiny.scale == pytest.approx(120)
    np.testing.assert_allclose(convert(tiny, [12, 11.5], "view"), [400, 280])
    one = centred_on(Viewport((10, 10), (800, 560), 1.0), [0, 0, 1, 1])  # limited by the deepest zoom
    assert one.scale == 32.0
    huge = centred_on(Viewport((4000, 4000), (800, 560), 1.0), [0, 0, 2000, 2000])  # zoomed out to fit
    assert 2000 * huge.scale <= 0.9 * 560 + 1e-9


# -- the list ----------------------------------------------------------------------------------
def test_the_list_pages_through_100000_boxes(dense: tuple[dbn.Project, Any]) -> None:
    project, _ = dense
    t0 = time.perf_counter()
    lab = Labeler(project, width=800, height=800)
    opened = time.perf_counter() - t0
    bl = lab.box_list
    try:
        assert bl.count.value == "1-50 of 100,000" and len(bl.rows.options) == 50
        assert bl.prev_button.disabled and not bl.next_button.disabled
        first = [i for _, i in bl.rows.options]
        t0 = time.perf_counter()
        bl.next_button.click()
        paged = time.perf_counter() - t0
        assert bl.count.value == "51-100 of 100,000"
        assert not set(first) & {i for _, i in bl.rows.options}
        y1 = {int(i): y for i, y in zip(lab._boxes.ids, lab._boxes.xyxy[:, 1])}
        ys = [y1[i] for i in first] + [y1[i] for _, i in bl.rows.options]
        assert ys == sorted(ys)  # by position: top to bottom across pages
        bl.set_page(10**6)
        assert bl.count.value == "99,951-100,000 of 100,000" and bl.next_button.disabled
        t0 = time.perf_counter()
        bl.sort.value = "category"
        resorted = time.perf_counter() - t0
        assert bl.page == 0 and "cell" in bl.rows.options[0][0]
        cats = {int(i): int(c) for i, c in zip(lab._boxes.ids, lab._boxes.class_id)}
        listed = [cats[i] for i in bl.ids.tolist()]
        assert listed == sorted(listed)
        # a click on the canvas highlights the box's row, on its page
        lab.mode.value = "select"
        target = int(bl.ids[77_777])
        x1, y1_, x2, y2 = lab._boxes.xyxy[lab._boxes.ids == target][0]
        lab.view.set_viewport(centred_on(lab.view.viewport, [x1, y1_, x2, y2]))
        t0 = time.perf_counter()
        click_image(lab, ((x1 + x2) / 2, (y1_ + y2) / 2))
        clicked = time.perf_counter() - t0
        sel = lab.selected  # the target, or a smaller box overlapping its centre
        assert sel is not None
        pos = int(np.flatnonzero(bl.ids == sel)[0])
        assert bl.page == pos // 50 and bl.page > 0 and bl.rows.value == sel
        assert bl.rows.label is not None and f"#{sel}" in bl.rows.label
        # an edit and its undo: the list follows from memory, the project's boxes are not re-read
        reads: list[Any] = []
        real_read = project.annotations
        project.annotations = lambda image: reads.append(image) or real_read(image)  # type: ignore[method-assign]
        try:
            t0 = time.perf_counter()
            lab.delete_selected()
            deleted = time.perf_counter() - t0
            assert bl.count.value.endswith("of 99,999") and sel not in bl.ids
            t0 = time.perf_counter()
            lab.undo()
            undone = time.perf_counter() - t0
            assert bl.count.value.endswith("of 100,000") and bl.rows.value == lab.selected
            settled()
            assert reads == []
        finally:
            del project.annotations  # the instance attribute goes: the class's method again
        print(
            f"\n100,000 boxes: opened {opened:.2f} s, next page {1000 * paged:.1f} ms, "
            f"re-sort by category {1000 * resorted:.0f} ms, canvas click to highlighted row {1000 * clicked:.0f} ms, "
            f"delete {1000 * deleted:.0f} ms, undo {1000 * undone:.0f} ms (list and overlay updated)"
        )
    finally:
        lab.close()


def test_rows_show_category_size_and_source(two_cats: tuple[dbn.Project, Any]) -> None:
    project, rec = two_cats
    project.add_box(rec, "ant", [10, 20, 40, 60])
    (accepted,) = project._store.annotations.add(
        rec.id, [2], np.array([[100.0, 5, 150, 25]]), source="accepted"
    )
    lab = Labeler(project)
    try:
        labels = [label for label, _ in lab.box_list.rows.options]
        assert labels[0].startswith("bee") and "50 x 20 px" in labels[0] and "accepted" in labels[0]
        assert labels[1].startswith("ant") and "30 x 40 px" in labels[1] and "manual" in labels[1]
        assert f"#{accepted}" in labels[0]
    finally:
        lab.close()


def test_a_row_click_selects_and_centres_zooming_in_on_a_small_box(two_cats: tuple[dbn.Project, Any]) -> None:
    project, rec = two_cats
    small = project.add_box(rec, "ant", [10, 10, 14, 13])
    big = project.add_box(rec, "bee", [100, 100, 300, 250])
    lab = Labeler(project)
    try:
        fit_scale = lab.view.viewport.scale
        lab.box_list.rows.value = big  # what the front end sends for a click on the row
        vp = lab.view.viewport
        assert lab.selected == big and lab.mode.value == "select" and lab.category.value == 2
        assert vp.scale == fit_scale
        np.testing.assert_allclose(convert(vp, [200, 175], "view"), [400, 280])
        lab.box_list.rows.value = small
        vp = lab.view.viewport
        assert lab.selected == small
        np.testing.assert_allclose(convert(vp, [12, 11.5], "view"), [400, 280])
        assert 4 * vp.scale >= 40 > 4 * fit_scale
    finally:
        lab.close()


# -- hide / show ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_per_cat", [0, 2, 300]
)  # none; a few; 600 in all (drawn and hit through a BoxIndex)
def test_hiding_a_category_hides_its_boxes_from_drawing_hits_and_the_list(
    two_cats: tuple[dbn.Project, Any], monkeypatch: pytest.MonkeyPatch, n_per_cat: int
) -> None:
    project, rec = two_cats
    ants = np.array([[x, 10, x + 1, 11] for x in np.linspace(0, 390, n_per_cat)]).reshape(-1, 4)
    project.add_boxes(rec, "ant", ants) if n_per_cat else None
    bee = project.add_box(rec, "bee", [100, 100, 200, 200])
    ant = project.add_box(rec, "ant", [250, 100, 350, 200])
    lab = Labeler(project)
    calls = strokes(lab, monkeypatch)
    try:
        n = n_per_cat + 2
        assert lab.box_list.count.value == f"1-{min(n, 50)} of {n}"
        lab.mode.value = "select"
        lab.toggles.checks[2].value = False  # hide "bee"
        drawn = calls[-1]["xyxy"]
        assert len(drawn) == n - 1 and not np.any(np.all(drawn == [100, 100, 200, 200], axis=1))
        assert lab.box_list.count.value == f"1-{min(n - 1, 50)} of {n - 1}" and bee not in lab.box_list.ids
        click_image(lab, (150, 150))
        assert lab.selected is None  # a hidden box is not hit
        click_image(lab, (300, 150))
        assert lab.selected == ant
        assert "(1 hidden)" in lab.info.value
        calls.clear()
        lab.toggles.all.value = False  # hide everything: the selection goes, nothing is drawn
        assert lab.selected is None and calls == [] and lab.box_list.count.value == "0-0 of 0"
        click_image(lab, (300, 150))
        assert lab.selected is None
        lab.toggles.all.value = True
        lab.toggles.checks[2].value = True
        assert len(calls[-1]["xyxy"]) == n and lab.box_list.count.value.endswith(f"of {n}")
        click_image(lab, (150, 150))
        assert lab.selected == bee
    finally:
        lab.close()


def test_drawing_in_a_hidden_category_shows_it(two_cats: tuple[dbn.Project, Any]) -> None:
    project, _ = two_cats
    lab = Labeler(project)
    try:
        lab.toggles.checks[1].value = False
        lab.category.value = 1
        vp = lab.view.viewport
        drag(lab.view.canvas, tuple(convert(vp, [20, 20], "view")), tuple(convert(vp, [80, 90], "view")))
        assert lab.toggles.checks[1].value and lab.box_list.count.value == "1-1 of 1"
    finally:
        lab.close()


# -- labels ----------------------------------------------------------------------------------------
def fill_texts(lab: Labeler, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    layer = lab.view.canvas[1]
    texts: list[tuple[str, str]] = []
    real = layer.fill_text

    def recording(text: str, x: float, y: float, max_width: float | None = None) -> None:
        texts.append((text, layer.fill_style))
        real(text, x, y, max_width)

    monkeypatch.setattr(layer, "fill_text", recording)
    return texts


def test_labels_appear_only_when_boxes_are_tall_enough(
    two_cats: tuple[dbn.Project, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, rec = two_cats
    project.add_box(rec, "bee", [50, 50, 90, 62])  # 12 px tall: 22 canvas px at the fit scale
    lab = Labeler(project)
    texts = fill_texts(lab, monkeypatch)
    try:
        lab.view.redraw_overlay()
        assert texts == []
        lab.view.zoom(1.2)  # 27 canvas px
        color = project.category("bee").color
        assert texts == [("bee", text_color_on(color))]  # on a tag of the category's colour
        assert text_color_on(color) != color
    finally:
        lab.close()


def test_label_text_is_black_or_white_whichever_reads() -> None:
    assert text_color_on("#ffe119") == text_color_on("#fff") == "#000000"  # yellow, white: black text
    assert text_color_on("#e6194b") == text_color_on("#000080") == "#ffffff"  # crimson, navy: white
    assert text_color_on("rgba(1, 2, 3, 0.5)") == text_color_on("") == "#ffffff"


def test_labels_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = dbn.Project.create(tmp_path / "p", categories=["cell"])
    try:
        rec = p.add_image(np.full((2000, 2000, 3), 60, np.uint8), name="grid.png")
        xy = np.stack(np.meshgrid(np.arange(0, 2000, 32.0), np.arange(0, 2000, 32.0)), -1).reshape(-1, 2)
        p.add_boxes(rec, "cell", np.concatenate([xy, xy + 30], 1))  # 3,969 boxes of 30 x 30 px
        lab = Labeler(p)
        texts = fill_texts(lab, monkeypatch)
        lab.view.redraw_overlay()  # 8 canvas px each at the fit scale
        assert texts == []
        vp = lab.view.viewport
        lab.view.set_viewport(Viewport(vp.image_wh, vp.canvas_wh, 1.0, 500, 500))  # ~450 boxes in view
        assert len(texts) == 300 and {t for t, _ in texts} == {"cell"}
        lab.close()
    finally:
        p.close()


# -- edits ---------------------------------------------------------------------------------------
def test_edits_and_undo_update_the_list_without_rereading_the_project(
    two_cats: tuple[dbn.Project, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, rec = two_cats
    for x in (10, 110, 210):
        project.add_box(rec, "ant", [x, 10, x + 40, 50])
    lab = Labeler(project)
    bl = lab.box_list
    reads: list[Any] = []
    source_reads: list[list[int]] = []
    real_read, real_sources = project.annotations, bl.read
    monkeypatch.setattr(project, "annotations", lambda image: reads.append(image) or real_read(image))
    assert real_sources is not None
    monkeypatch.setattr(bl, "read", lambda ids: source_reads.append(list(ids)) or real_sources(ids))

    def listed() -> list[tuple[int, str]]:
        """(id, label) of every listed row, from the list itself."""
        return [(i, label) for label, i in bl.rows.options]

    try:
        vp = lab.view.viewport
        drag(lab.view.canvas, tuple(convert(vp, [20, 200], "view")), tuple(convert(vp, [60, 230], "view")))
        new = int(lab._boxes.ids[-1])
        assert bl.count.value == "1-4 of 4" and listed()[-1][0] == new and "manual" in listed()[-1][1]
        lab.mode.value = "select"
        lab.select(new)
        assert bl.rows.value == new
        lab.category.value = 2  # relabel
        assert listed()[-1][1].startswith("bee")
        drag(
            lab.view.canvas, tuple(convert(lab.view.viewport, [40, 215], "view")), (400, 5)
        )  # move to the top
        assert listed()[0][0] == new  # re-sorted by position
        lab.delete_selected()
        assert bl.count.value == "1-3 of 3" and new not in bl.ids
        lab.undo()
        restored = int(lab._boxes.ids[-1])
        assert bl.count.value == "1-4 of 4" and restored in bl.ids and bl.rows.value == restored
        lab.undo()  # the move
        lab.undo()  # the relabel
        assert listed()[-1][0] == restored and listed()[-1][1].startswith("ant")
        settled()
        assert reads == []  # no edit re-read the image's boxes
        assert source_reads == []  # a new box's source is known: nothing read for it
        stored = real_read(rec)
        assert sorted(bl.ids.tolist()) == sorted(stored.ids.tolist())
    finally:
        lab.close()


def test_undoing_a_delete_keeps_the_box_source(two_cats: tuple[dbn.Project, Any]) -> None:
    project, rec = two_cats
    (box,) = project.add_boxes(rec, "bee", [[100.0, 5, 150, 25]], source="accepted")
    assert project.annotation_sources([box, 10_000]) == {int(box): "accepted"}
    lab = Labeler(project)
    try:
        lab.mode.value = "select"
        lab.select(int(box))
        lab.delete_selected()
        assert project.annotation_sources([box]) == {}
        lab.undo()
        (restored,) = project.annotations(rec).ids.tolist()
        assert project.annotation_sources([restored]) == {restored: "accepted"}
        assert "accepted" in lab.box_list.rows.options[0][0]
    finally:
        lab.close()
