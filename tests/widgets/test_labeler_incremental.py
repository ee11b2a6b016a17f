"""Own edits on an image with 100,000 boxes keep the Labeler's spatial index in step, never rebuilding it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.widgets import Labeler, _editor
from deepblock_nb.widgets._boxindex import BoxIndex
from deepblock_nb.widgets._viewport import convert
from tests.widgets.conftest import drag, mouse, settled

SIDE = 2000


class CountedIndex(BoxIndex):
    """The real BoxIndex, counting how often one is built or rebuilt."""

    built = 0
    rebuilt = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        CountedIndex.built += 1
        super().__init__(*args, **kwargs)

    def rebuild(self) -> None:
        CountedIndex.rebuilt += 1
        super().rebuild()


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dbn.Project, Any]]:
    tmp = tmp_path_factory.mktemp("incremental")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (SIDE, SIDE, 3), np.uint8)).save(tmp / "dense.png")
    project = dbn.Project.create(tmp / "p", categories=["cell", "other", "rare"])
    rec = project.add_image(tmp / "dense.png")
    xy = rng.uniform(0, SIDE - 10, (100_000, 2))
    project.add_boxes(rec, "cell", np.concatenate([xy, xy + rng.uniform(2, 8, (100_000, 2))], 1))
    yield project, rec
    settled()
    project.close()


def view_pt(lab: Labeler, xy: Any) -> tuple[float, float]:
    assert lab.view.viewport is not None
    p = convert(lab.view.viewport, np.asarray(xy, dtype=np.float64), "view")
    return (float(p[0]), float(p[1]))


def click(lab: Labeler, p: tuple[float, float]) -> None:
    mouse(lab.view.canvas, "mouse_down", *p)
    mouse(lab.view.canvas, "mouse_up", *p)


def free_point(stored: Any, box_id: int) -> tuple[float, float]:
    """A point inside box ``box_id``, away from its handles, where no smaller box covers it."""
    index = BoxIndex(stored.xyxy)
    row = int(np.flatnonzero(stored.ids == box_id)[0])
    x1, y1, x2, y2 = stored.xyxy[row]
    for x in np.linspace(x1 + 20, x2 - 20, 15):
        for y in np.linspace(y1 + 20, y2 - 20, 15):
            if index.hit((x, y)) == row:
                return (float(x), float(y))
    raise AssertionError("no free point")


def consistent(
    lab: Labeler, project: dbn.Project, rec: Any, rng: np.random.Generator, focus: Any = None
) -> None:
    """The Labeler's shown boxes and index answer as a fresh index over the project's boxes does."""
    stored = project.annotations(rec)
    shown_rows = lab.toggles.shown_rows(stored.class_id)
    stored = stored[shown_rows]
    fresh = BoxIndex(stored.xyxy, extent_wh=(SIDE, SIDE))
    shown = lab._shown()
    order = np.argsort(shown.ids)
    expected = np.argsort(stored.ids)
    np.testing.assert_array_equal(shown.ids[order], stored.ids[expected])
    np.testing.assert_array_equal(shown.xyxy[order], stored.xyxy[expected])
    np.testing.assert_array_equal(shown.class_id[order], stored.class_id[expected])
    index = lab._box_index()
    assert index is not None
    assert len(index.index) == len(stored) == len(index.row_to_id)
    np.testing.assert_array_equal(index.id_to_row[index.row_to_id], np.arange(len(shown)))
    np.testing.assert_array_equal(index.index.coords[index.row_to_id], shown.xyxy)  # drawing arrays
    np.testing.assert_array_equal(index.class_id[index.row_to_id], shown.class_id)
    windows = [(0.0, 0.0, SIDE, SIDE)]
    windows += [(x, y, x + 150, y + 100) for x, y in rng.uniform(0, SIDE - 150, (20, 2))]
    if focus is not None:
        x1, y1, x2, y2 = np.asarray(focus, dtype=np.float64)
        windows.append((x1 - 20, y1 - 20, x2 + 20, y2 + 20))
    for w in windows:
        got = np.sort(shown.ids[index.id_to_row[index.index.query(w)]])
        np.testing.assert_array_equal(got, np.sort(stored.ids[fresh.query(w)]))
    # hit tests through the canvas, in select mode: the smallest box under the pointer, or nothing
    points = [view_pt(lab, p) for p in rng.uniform(0, SIDE, (15, 2))]
    if focus is not None:
        x1, y1, x2, y2 = np.asarray(focus, dtype=np.float64)
        points.append(view_pt(lab, ((x1 + x2) / 2, (y1 + y2) / 2)))
    keep, mode = lab.selected, lab.mode.value
    lab.mode.value = "select"
    for p in points:
        lab.select(None)  # so that no click lands on a handle of the selected box
        k = fresh.hit(tuple(lab.view.to_image(p)))
        click(lab, p)
        assert lab.selected == (None if k < 0 else int(stored.ids[k]))
    lab.select(keep if keep in lab._shown().ids else None)  # selecting a hidden box would show it
    lab.mode.value = mode


def test_edits_on_100000_boxes_follow_the_index_without_rebuilding_it(
    dense: tuple[dbn.Project, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, rec = dense
    monkeypatch.setattr(_editor, "BoxIndex", CountedIndex)
    CountedIndex.built = CountedIndex.rebuilt = 0
    rng = np.random.default_rng(0)
    lab = Labeler(project, width=800, height=800)
    settled()
    try:
        assert CountedIndex.built == 1 and len(lab._boxes) == 100_000  # built once, on the first draw
        cats = {c.name: c.id for c in project.categories}
        reads: list[Any] = []
        overlays: list[Any] = []
        real_read, real_overlay = project.annotations, lab.view.redraw_overlay
        times: dict[str, float] = {}
        lists: dict[str, float] = {}

        def timed(name: str, edit: Callable[[], None]) -> None:
            monkeypatch.setattr(project, "annotations", lambda image: reads.append(image) or real_read(image))
            monkeypatch.setattr(
                lab.view,
                "redraw_overlay",
                lambda hold=True: (overlays.append(1) if hold else None) or real_overlay(hold),
            )
            overlays.clear()
            listing = [0.0]
            real_list = lab.box_list.set_boxes

            def set_boxes(*args: Any) -> None:
                t = time.perf_counter()
                real_list(*args)
                listing[0] += time.perf_counter() - t

            monkeypatch.setattr(lab.box_list, "set_boxes", set_boxes)
            t = time.perf_counter()
            edit()
            times[name] = time.perf_counter() - t
            lists[name] = listing[0]
            monkeypatch.setattr(lab.box_list, "set_boxes", real_list)
            monkeypatch.setattr(project, "annotations", real_read)
            monkeypatch.setattr(lab.view, "redraw_overlay", real_overlay)
            assert reads == [], f"{name} re-read the project's boxes"
            assert overlays == [1], f"{name} redrew the overlay {len(overlays)} times"
            assert CountedIndex.built == 1 and CountedIndex.rebuilt == 0, f"{name} rebuilt the index"

        # add: a drawn box
        a, b = (1000.0, 1000.0), (1100.0, 1080.0)
        timed("add", lambda: drag(lab.view.canvas, view_pt(lab, a), view_pt(lab, b)))
        stored = project.annotations(rec)
        new_id = int(stored.ids[-1])
        assert len(stored) == 100_001 and new_id in lab._shown().ids
        consistent(lab, project, rec, rng, stored.xyxy[-1])
        # move it (select mode; the selected box is dragged from its centre)
        lab.mode.value = "select"
        lab.select(new_id)
        old = project.annotations(rec).xyxy[-1].copy()
        centre = view_pt(lab, free_point(project.annotations(rec), new_id))
        timed("move", lambda: drag(lab.view.canvas, centre, (centre[0] + 40, centre[1] + 20)))
        moved = project.annotations(rec).xyxy[-1]
        np.testing.assert_allclose(moved - old, [100, 50, 100, 50], atol=1e-6)
        consistent(lab, project, rec, rng, old)  # nothing is hit at the old place any more
        consistent(lab, project, rec, rng, moved)
        # resize it from its south-east handle
        lab.select(new_id)
        se = view_pt(lab, moved[2:])
        timed("resize", lambda: drag(lab.view.canvas, se, (se[0] + 12, se[1] + 16)))
        resized = project.annotations(rec).xyxy[-1]
        np.testing.assert_allclose(resized - moved, [0, 0, 30, 40], atol=1e-6)
        consistent(lab, project, rec, rng, resized)
        # relabel it
        lab.select(new_id)
        timed("relabel", lambda: setattr(lab.category, "value", cats["other"]))
        assert int(project.annotations(rec).class_id[-1]) == cats["other"]
        consistent(lab, project, rec, rng, resized)
        # delete a box from the middle of the rows
        victim = int(lab._boxes.ids[50_000])
        gone = lab._boxes.xyxy[50_000].copy()
        lab.select(victim)
        timed("delete", lab.delete_selected)
        assert victim not in project.annotations(rec).ids and len(project.annotations(rec)) == 100_000
        consistent(lab, project, rec, rng, gone)
        # undo the delete (a new id, appended), then the relabel
        lab.select(None)
        timed("undo delete", lab.undo)
        assert len(project.annotations(rec)) == 100_001 and lab.selected is not None
        consistent(lab, project, rec, rng, gone)
        timed("undo relabel", lab.undo)
        stored = project.annotations(rec)
        assert int(stored.class_id[stored.ids == new_id][0]) == cats["cell"]
        consistent(lab, project, rec, rng, resized)
        print(
            "\n100,000 boxes, one edit each (project write + in-memory update + box list + overlay): "
            + ", ".join(f"{k} {v * 1e3:.1f} ms (box list {lists[k] * 1e3:.1f})" for k, v in times.items())
        )
    finally:
        lab.close()


def test_edits_with_a_hidden_category_keep_the_shown_index_in_step(
    dense: tuple[dbn.Project, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, rec = dense
    monkeypatch.setattr(_editor, "BoxIndex", CountedIndex)
    rng = np.random.default_rng(1)
    cats = {c.name: c.id for c in project.categories}
    lab = Labeler(project, width=800, height=800)
    settled()
    try:
        lab.mode.value = "select"
        lab.toggles.checks[cats["rare"]].value = False  # hide "rare"
        assert lab._box_index() is not None
        CountedIndex.built = CountedIndex.rebuilt = 0
        # relabel a shown box into the hidden category: it leaves the shown boxes and the index
        box_id = int(lab._boxes.ids[123])
        where = lab._boxes.xyxy[123].copy()
        lab.select(box_id)
        lab.category.value = cats["rare"]
        assert box_id not in lab._shown().ids and CountedIndex.built == 0
        consistent(lab, project, rec, rng, where)
        # a box added (through the editor, as undo does) in the hidden category stays hidden
        hidden_id = lab._editor.add_box(rec.id, cats["rare"], [5, 5, 40, 40])
        assert hidden_id not in lab._shown().ids and CountedIndex.built == 0
        consistent(lab, project, rec, rng, [5, 5, 40, 40])
        # deleting a hidden box leaves the shown ones alone
        lab._editor.delete_box(hidden_id)
        assert CountedIndex.built == 0 and CountedIndex.rebuilt == 0
        consistent(lab, project, rec, rng)
        # relabelling back out of the hidden category is rebuilt (its row order differs), and is right
        lab._editor.update_box(box_id, category=cats["cell"])
        consistent(lab, project, rec, rng, where)
    finally:
        lab.close()
