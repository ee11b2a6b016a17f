"""Labeler: draw, select, move and delete boxes on project images."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import ipywidgets as W
import numpy as np

from deepblock_nb.widgets._boxlist import BoxList, CategoryToggles, centred_on, source_reader
from deepblock_nb.widgets._editor import MANUAL_SOURCE, Editor, ShownIndex
from deepblock_nb.widgets._history import History
from deepblock_nb.widgets._imageview import MODES, ImageView, Point
from deepblock_nb.widgets._keys import SHORTCUTS, on_key
from deepblock_nb.widgets._predlayer import PredictionLayer
from deepblock_nb.widgets._proposals import ProposalLayer
from deepblock_nb.widgets._tilereview import TileReview
from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html, guarded, info_html
from deepblock_nb.widgets._viewport import (
    HANDLE_RADIUS,
    MIN_DRAG,
    box_from_drag,
    convert,
    handle_at,
    hit_test,
    resize_box,
)

__all__ = ["SHORTCUTS", "Labeler"]

#: from this many boxes on an image, hit tests and drawing go through a spatial index
INDEX_MIN_BOXES = 500

# a Dropdown treats the value None as "nothing selected", hence the "all" sentinel
_SPLIT_OPTIONS = [("all images", "all"), ("train", "train"), ("evaluate", "evaluate"), ("predict", "predict")]
LABEL_MIN_HEIGHT = 24.0  # canvas pixels a box must be tall for its category name to be written on it
MAX_LABELS = 300  # category names written at once, at most


class Labeler(W.VBox):
    """Label boxes on a project's images.

    Modes: *draw* (drag to add a box of the chosen category), *select* (click a box
    to select it, drag it to move it, drag one of its 8 corner/edge handles to
    resize it; Delete removes it; choosing another category recolours it), *pan*
    (drag to move the view). The mouse wheel and the +/- buttons zoom; "fit" shows
    the whole image. Keys (while the canvas has the focus): see :data:`SHORTCUTS`.
    With the grid shown, reviewed tiles are outlined in green with a check mark; key
    "t" toggles the tile under the pointer, ``tile_done`` the one at the view centre.

    Below the image, ``box_list`` lists the shown boxes a page at a time (a click on
    a row selects the box and centres the view on it); ``toggles`` hide boxes, all
    or per category (hidden boxes are neither drawn, hit nor listed). Boxes at
    least :data:`LABEL_MIN_HEIGHT` canvas pixels tall carry their category's name.
    "predictions" draws the image's stored predictions at the project's threshold,
    dashed and read-only (:class:`~deepblock_nb.widgets._predlayer.PredictionLayer`);
    "proposals" draws a model's proposals, dotted, to accept, correct or reject
    (:class:`~deepblock_nb.widgets._proposals.ProposalLayer`, its controls in a row of their own).

    Every box goes through ``project.add_box`` / ``update_box`` / ``delete_box``.
    Edits are recorded in one :class:`History` per Labeler (``undo()`` /
    ``redo()``, across images). After its own edit the Labeler updates its
    in-memory boxes and redraws only the overlay; project events from other
    sources (any thread) reload the boxes on the UI thread, at most once per
    ``interval`` seconds.
    """

    def __init__(
        self,
        project: Any,
        split: str | None = None,
        width: int = 800,
        height: int = 560,
        interval: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.project = project
        self.view = ImageView(project, width, height)
        self.view.mode = "draw"
        self.view.overlay = self._draw_overlay
        self.view.on_press = self._on_press
        self.view.on_drag = self._on_drag
        self.view.on_release = self._on_release
        self.view.on_cancel = self._on_cancel
        self.view.on_view_change = self._update_info
        self.selected: int | None = None
        self._selecting = False
        self._gesture: str | None = None  # "move" or "resize:<handle>" while a select-mode drag runs
        self._own_thread: int | None = None  # the thread inside this Labeler's own project call
        self.history = History()
        self._color_map: dict[int, str] = {}
        self._boxes: Any = None  # the current image's Detections
        self._shown_of: tuple[Any, Any] = (None, None)  # (boxes, hidden key) _shown_det was made from
        self._shown_det: Any = None
        self._names: dict[int, str] = {}
        self._luts = (np.array(["#ffffff"], dtype=object), np.array(["?"], dtype=object))
        self.box_list = BoxList(guarded(self._on_pick_row, self._error), read=source_reader(project))
        self.toggles = CategoryToggles(guarded(self._on_visibility, self._error))
        self._subs = Subscriptions()
        own = self._subs.own
        self._images_throttle = own(Throttle(self.refresh_images, interval))
        self._categories_throttle = own(Throttle(self._refresh_categories_and_boxes, interval))
        self._boxes_throttle = own(Throttle(self._reload_boxes, interval))
        self._grid_throttle = own(Throttle(self._refresh_grid, interval))
        self._pixels_throttle = own(Throttle(self.view.reload_pixels, interval))  # display changed

        self.split = W.Dropdown(options=_SPLIT_OPTIONS, value=split or "all", layout=W.Layout(width="130px"))
        self.image_list = W.Dropdown(description="Image", layout=W.Layout(width="300px"))
        self.prev_button = W.Button(
            icon="arrow-left", tooltip="previous image", layout=W.Layout(width="40px")
        )
        self.next_button = W.Button(icon="arrow-right", tooltip="next image", layout=W.Layout(width="40px"))
        self.mode = W.ToggleButtons(options=list(MODES), value="draw", style={"button_width": "60px"})
        self.category = W.Dropdown(description="Category", layout=W.Layout(width="230px"))
        self.zoom_in = W.Button(icon="search-plus", tooltip="zoom in", layout=W.Layout(width="40px"))
        self.zoom_out = W.Button(icon="search-minus", tooltip="zoom out", layout=W.Layout(width="40px"))
        self.fit_button = W.Button(
            description="fit", tooltip="show the whole image", layout=W.Layout(width="50px")
        )
        self.delete_button = W.Button(
            icon="trash", tooltip="delete the selected box", disabled=True, layout=W.Layout(width="40px")
        )
        self.undo_button = W.Button(
            icon="undo", tooltip="undo (Ctrl+Z)", disabled=True, layout=W.Layout(width="40px")
        )
        self.redo_button = W.Button(
            icon="redo", tooltip="redo (Ctrl+Shift+Z, Ctrl+Y)", disabled=True, layout=W.Layout(width="40px")
        )
        self.show_grid = W.Checkbox(
            value=True, description="grid", indent=False, layout=W.Layout(width="60px")
        )
        self.tiles_review = TileReview(self)
        self.done, self.tile_done = self.tiles_review.image_checkbox, self.tiles_review.checkbox
        self.predictions_layer = PredictionLayer(self, interval)  # read-only, dashed
        self.proposals_layer = ProposalLayer(self, interval)  # dotted: accept, correct, reject
        self.review_filter = W.Dropdown(
            options=[("any image", "any"), ("not done", "todo"), ("done", "done")],
            value="any",
            layout=W.Layout(width="110px"),
        )
        self._relisting = False
        self._list_lock = threading.RLock()
        self._index: ShownIndex | None = None
        self._index_of: Any = None  # the shown Detections the index is in step with
        self.info = W.HTML()
        self.status = W.HTML()

        self.split.observe(guarded(lambda _: self.refresh_images(), self._error), "value")
        self.review_filter.observe(guarded(lambda _: self.refresh_images(), self._error), "value")
        self.image_list.observe(guarded(self._on_image_selected, self._error), "value")
        self.prev_button.on_click(guarded(lambda _: self.step(-1), self._error))
        self.next_button.on_click(guarded(lambda _: self.step(1), self._error))
        self.mode.observe(self._on_mode, "value")
        self.category.observe(guarded(self._on_category, self._error), "value")
        self.zoom_in.on_click(guarded(lambda _: self.view.zoom(1.5), self._error))
        self.zoom_out.on_click(guarded(lambda _: self.view.zoom(1 / 1.5), self._error))
        self.fit_button.on_click(guarded(lambda _: self.view.fit_view(), self._error))
        self.delete_button.on_click(guarded(lambda _: self.delete_selected(), self._error))
        self.undo_button.on_click(guarded(lambda _: self.undo(), self._error))
        self.redo_button.on_click(guarded(lambda _: self.redo(), self._error))
        self.show_grid.observe(lambda _: self.view.redraw_overlay(), "value")
        self.view.canvas.on_key_down(guarded(self._on_key, self._error))

        for topic, handler in (
            ("images", self._on_images),
            ("annotations", self._on_annotations),
            ("categories", self._on_categories),
            ("grid", self._on_grid),
        ):
            self._subs.add(project.on(topic, handler))

        nav = [self.split, self.review_filter, self.image_list, self.prev_button, self.next_button]
        toolbar = W.HBox([*nav, self.done, self.tile_done])
        tools = W.HBox(
            [
                self.mode,
                self.category,
                self.delete_button,
                self.undo_button,
                self.redo_button,
                self.zoom_out,
                self.zoom_in,
                self.fit_button,
                self.show_grid,
                self.predictions_layer.checkbox,
            ]
        )
        hint = W.HTML(
            "<span style='color:#666'>draw: drag a box &middot; select: click a box, drag to move it, "
            "drag a corner or edge to resize it &middot; pan: drag &middot; wheel: zoom</span>"
        )
        self.shortcuts = W.HTML(f"<span style='color:#666;font-size:smaller'>{SHORTCUTS}</span>")
        super().__init__(
            [
                toolbar,
                tools,
                self.proposals_layer.bar,
                self.toggles,
                hint,
                self.view.canvas,
                self.shortcuts,
                self.info,
                self.box_list,
                self.status,
            ],
            **kwargs,
        )
        self.refresh_categories()
        self.refresh_images()

    # -- lists ---------------------------------------------------------------------
    @property
    def image(self) -> Any:
        """The image record being labelled, or None."""
        return self.view.image

    def refresh_images(self) -> None:
        """Reload the image list, keeping the current image when it is still listed."""
        with self._list_lock:  # the UI thread's refresh and a cell's show() take turns
            self._refresh_images()

    def _refresh_images(self) -> None:
        records = self.project.images(None if self.split.value == "all" else self.split.value)
        wanted = self.review_filter.value
        if wanted != "any":
            records = [r for r in records if r.reviewed == (wanted == "done")]
        records = self.proposals_layer.rank(records)  # as added, or worth labelling first
        counts = self.project.image_box_counts()
        options = [
            (f"{r.name} ({counts.get(r.id, 0)} boxes{', done' if r.reviewed else ''})", r.id) for r in records
        ]
        current = self.image_list.value
        ids = [i for _, i in options]
        self._relisting = True  # new labels, maybe the same images: no reload on the way
        try:
            self.image_list.options = options
            self.image_list.value = current if current in ids else None
        finally:
            self._relisting = False
        if current in ids:
            if self.image is None or self.image.id != current:
                self._show(current)
        elif ids:
            self.image_list.value = ids[0]
        else:
            self._show(None)

    def refresh_categories(self) -> None:
        cats = self.project.categories
        self._color_map = {c.id: c.color for c in cats}
        self._names = {c.id: c.name for c in cats}
        size = max([0, *self._names]) + 1  # lookup tables by category id; row 0: unknown ids
        colors, names = np.full(size, "#ffffff", dtype=object), np.full(size, "?", dtype=object)
        for c in cats:
            colors[c.id], names[c.id] = c.color, c.name
        self._luts = (colors, names)
        self.toggles.set_categories([(c.id, c.name) for c in cats])
        current = self.category.value
        self.category.options = [(c.name, c.id) for c in cats]
        ids = [c.id for c in cats]
        self.category.value = current if current in ids else (ids[0] if ids else None)

    def show(self, image: Any) -> None:
        """Open an image (record, id or name) in the labeler."""
        rec = self.project.image(image)
        with self._list_lock:
            if rec.id not in [i for _, i in self.image_list.options]:
                self._refresh_images()  # an image added a moment ago: the list may not have it yet
            if rec.id not in [i for _, i in self.image_list.options]:
                self.split.value, self.review_filter.value = "all", "any"
                self._refresh_images()
            self.image_list.value = rec.id
            if self.image is None or self.image.id != rec.id:
                self._show(rec.id)

    def step(self, delta: int) -> None:
        ids = [i for _, i in self.image_list.options]
        if not ids:
            return
        pos = ids.index(self.image_list.value) if self.image_list.value in ids else 0
        self.image_list.value = ids[(pos + delta) % len(ids)]

    def _on_image_selected(self, change: dict[str, Any]) -> None:
        if self._relisting:
            return
        self._show(change["new"])

    def _show(self, image_id: int | None) -> None:
        self.selected = None
        self.proposals_layer.reset()
        self.delete_button.disabled = True
        self._boxes = None if image_id is None else self.project.annotations(image_id)
        self.box_list.reset()
        self._list_boxes()
        self.view.show(image_id)
        self.tiles_review.reload()
        self._update_info()

    # -- project events (any thread): only queue a redraw on the UI thread --------------
    def _on_images(self, topic: str, action: str = "", images: Any = (), **payload: Any) -> None:
        self._images_throttle()
        shown = self.image
        if action == "tile_reviewed" and shown is not None and shown.id in [r.id for r in images]:
            self._grid_throttle()  # its reviewed tiles changed: outlines and "tile done"
        if action == "display" and shown is not None and shown.id in [r.id for r in images]:
            self._pixels_throttle()  # its bands or intensity window changed

    def _on_categories(self, topic: str, **payload: Any) -> None:
        self._categories_throttle()

    def _on_annotations(self, topic: str, image: Any = None, **payload: Any) -> None:
        self._images_throttle()  # the image list shows box counts
        if self._own_thread == threading.get_ident():
            return  # this Labeler's own edit: its boxes are already up to date
        shown = self.image
        if shown is not None and (image is None or image.id == shown.id):
            self._boxes_throttle()

    def _on_grid(self, topic: str, image: Any = None, **payload: Any) -> None:
        shown = self.image
        if shown is not None and image is not None and image.id == shown.id:
            self._grid_throttle()

    # -- redraws after project events (UI thread) -------------------------------------
    def _refresh_categories_and_boxes(self) -> None:
        self.refresh_categories()
        self._reload_boxes()

    def _refresh_grid(self) -> None:
        if self.image is not None:
            self.view.refresh_record()
            self.tiles_review.reload()
            self.view.redraw_overlay()
            self._update_info()

    def _reload_boxes(self) -> None:
        if self.image is None:
            return
        self._boxes = self.project.annotations(self.image.id)
        if self.selected is not None and self.selected not in set(self._boxes.ids.tolist()):
            self.selected = None
            self.delete_button.disabled = True
        self.box_list.sources.clear()  # another writer may have replaced boxes
        self._list_boxes()
        self.view.redraw_overlay()
        self._update_info()

    # -- drawing ---------------------------------------------------------------------
    def _draw_overlay(self, view: ImageView) -> None:
        if self.show_grid.value and self.image is not None and self.image.grid is not None:
            view.stroke_grid(
                self.image.windows()
            )  # the record, kept fresh by grid events: no query per redraw
            self.tiles_review.draw(view)
        self.predictions_layer.draw(view)  # below the annotations and the selection
        self.proposals_layer.draw(view)
        det = self._shown()
        if det is not None and len(det.xyxy):
            colors, names = self._luts
            shown = self._box_index()  # with one, rows below are index ids, removed ones included
            cls = det.class_id if shown is None else shown.class_id
            cls = np.where(cls < len(colors), cls, 0)  # [N]
            view.stroke_boxes(
                det.xyxy if shown is None else shown.index.coords,
                colors[cls],
                index=None if shown is None else shown.index,
                labels=names[cls],
                label_min_height=LABEL_MIN_HEIGHT,
                max_labels=MAX_LABELS,
            )
        box = self._selected_box()
        if box is not None:
            name = self._names.get(self._selected_category(), "?")
            view.stroke_boxes(box.reshape(1, 4), ["#ffff00"], line_width=4, labels=[name])

    def _shown(self) -> Any:
        """The shown image's boxes that are not hidden (a Detections, cached until either changes)."""
        det, key = self._boxes, self.toggles.key()
        if det is None:
            return None
        if self._shown_of[0] is not det or self._shown_of[1] != key:
            rows = self.toggles.shown_rows(det.class_id)
            self._shown_det = det if len(rows) == len(det.class_id) else det[rows]
            self._shown_of = (det, key)
        return self._shown_det

    def _list_boxes(self) -> None:
        self.box_list.set_boxes(self._shown(), self._names)

    def _on_visibility(self) -> None:
        shown = self._shown()
        if self.selected is not None and (shown is None or self.selected not in shown.ids):
            self.select(None)
        self._list_boxes()
        self.view.redraw_overlay()
        self._update_info()

    def _box_index(self) -> ShownIndex | None:
        """A spatial index of the shown boxes, for images with many: hit tests and drawing
        then touch only what the view shows, and a zoomed-out view draws a density. Own
        edits keep it in step (see :class:`Editor`); it is rebuilt (vectorised, about
        40 ms for 100,000 boxes) only when another image, other categories or boxes
        edited elsewhere are shown."""
        det = self._shown()
        if det is None or len(det.xyxy) < INDEX_MIN_BOXES or self.image is None:
            return None
        if self._index is None or self._index_of is not det:
            self._index, self._index_of = ShownIndex(det, self.image.image_wh), det
        return self._index

    # -- gestures (canvas pixels) ------------------------------------------------------
    def _on_press(self, p: Point) -> None:
        self._gesture = None
        if self.view.mode != "select" or self._boxes is None or self.view.viewport is None:
            return
        if self.proposals_layer.press(p):  # the selected proposal: move or resize it
            return
        box = self._selected_box()
        if box is not None:
            handle = handle_at(convert(self.view.viewport, box, "view"), p, HANDLE_RADIUS)
            if handle is not None:
                self._gesture = f"resize:{handle}"
                return
        index, shown = self._box_index(), self._shown()
        point = tuple(self.view.to_image(p))
        k = index.hit(point) if index is not None else hit_test(shown.xyxy, point)
        hit = None if k < 0 else int(shown.ids[k])
        if hit is None and self.proposals_layer.pick(p):
            return
        if hit != self.selected:  # pressing the selected box again (to drag it) redraws nothing
            self.select(hit)
        self._gesture = None if k < 0 else "move"

    def _dragged_box(self, p0: Point, p: Point) -> np.ndarray | None:
        """The selected box (image pixels) as the select-mode drag from p0 to p would leave it."""
        box, vp = self._selected_box(), self.view.viewport
        if box is None or vp is None or self._gesture is None:
            return None
        dx, dy = np.subtract(p, p0) / vp.scale  # image pixels
        if self._gesture == "move":
            return box + np.array([dx, dy, dx, dy])
        return resize_box(box, self._gesture.split(":")[1], dx, dy, bounds_wh=vp.image_wh)

    def _on_drag(self, p0: Point, p: Point) -> None:
        if self.proposals_layer.drag(p0, p):
            return
        if self.view.mode == "draw":
            self.view.rubber_band(
                np.array([*np.minimum(p0, p), *np.maximum(p0, p)]),
                self._color_map.get(self.category.value, "#ffffff"),
            )
        elif self.view.mode == "select":
            box = self._dragged_box(p0, p)
            if box is not None:
                self.view.rubber_band(convert(self.view.viewport, box, "view"), "#ffff00")  # type: ignore[arg-type]

    def _on_release(self, p0: Point, p: Point) -> None:
        self.view.rubber_band(None, "")
        gesture, self._gesture = self._gesture, None
        vp = self.view.viewport
        if vp is None or self.image is None or self.proposals_layer.release(p0, p):
            return
        if self.view.mode == "draw":
            box = box_from_drag(vp, p0, p)
            if box is None:
                self.proposals_layer.pick(p)  # a click: select the proposal under it
                return
            if self.category.value is None:
                self._error("add a category before drawing boxes")
                return
            self.toggles.show(self.category.value)  # a new box is never drawn hidden
            box_id = self._editor.add_box(self.image.id, self.category.value, box)
            self.history.added(self.image.id, box_id, self.category.value, box)
            self._history_changed()
            self.status.value = info_html(f"added box {box_id}: {np.round(box, 1).tolist()}")
        elif self.view.mode == "select" and self.selected is not None and gesture is not None:
            self._gesture = gesture
            new = self._dragged_box(p0, p)
            self._gesture = None
            old = self._selected_box()
            if new is None or old is None or np.hypot(*np.subtract(p, p0)) < MIN_DRAG:
                return
            new = self._clip(new)
            kind: Literal["move", "resize"] = "move" if gesture == "move" else "resize"
            cat = self._selected_category()
            self._editor.update_box(self.selected, xyxy=new)
            self.history.updated(self.image.id, self.selected, kind, (old, cat), (new, cat))
            self._history_changed()
            self.status.value = info_html(f"{kind}d box {self.selected}: {np.round(new, 1).tolist()}")

    def _on_cancel(self) -> None:
        self._gesture = None
        self.proposals_layer.cancel()
        self.view.rubber_band(None, "")

    def cancel_drag(self) -> None:
        """Abandon a drag in progress (nothing is stored)."""
        self.view._down = None  # ImageView has no public cancel; a released press is how it ends a drag
        self._on_cancel()

    def _selected_box(self) -> np.ndarray | None:
        if self._boxes is None or self.selected is None:
            return None
        k = np.flatnonzero(self._boxes.ids == self.selected)
        return self._boxes.xyxy[k[0]] if len(k) else None

    def _selected_category(self) -> int:
        assert self._boxes is not None
        return int(self._boxes.class_id[np.flatnonzero(self._boxes.ids == self.selected)[0]])

    def _clip(self, xyxy: np.ndarray) -> np.ndarray:
        """Clip to the image as the project does, so the in-memory box equals the stored one."""
        w, h = self.image.width, self.image.height
        return np.clip(np.asarray(xyxy, dtype=np.float64), 0.0, [w, h, w, h])

    # -- own edits: project call, then the in-memory boxes and the overlay only -----------
    @contextmanager
    def _own(self) -> Iterator[None]:
        self._own_thread = threading.get_ident()
        try:
            yield
        finally:
            self._own_thread = None

    @property
    def _editor(self) -> Editor:
        return Editor(self)

    def _boxes_changed(self, redraw: bool = True) -> None:
        if self.selected is not None and (self._boxes is None or self.selected not in self._boxes.ids):
            self.selected = None
            self.delete_button.disabled = True
        self._list_boxes()
        if redraw:
            self.view.redraw_overlay()
        self._update_info()
        self._images_throttle()  # the image list shows box counts

    # -- undo / redo -------------------------------------------------------------------------
    def undo(self) -> None:
        """Undo the last edit, switching to its image when another one is shown."""
        self._replay(self.history.next_undo, self.history.undo, "undid")

    def redo(self) -> None:
        """Redo the last undone edit, switching to its image when another one is shown."""
        self._replay(self.history.next_redo, self.history.redo, "redid")

    def _replay(self, cmd: Any, step: Any, verb: str) -> None:
        if cmd is None:
            self.status.value = info_html(f"nothing to {verb[:-2]}o")
            return
        self.cancel_drag()
        if self.image is None or self.image.id != cmd.image_id:
            self.show(cmd.image_id)
        done = False
        try:
            step(Editor(self, redraw=False))  # one overlay redraw below, not one per step
            done = True
        finally:
            self._history_changed()
            if not done:
                self.view.redraw_overlay()
        box_id = self.history.current_id(cmd)
        if box_id is not None and self.view.mode == "select":
            self.select(box_id)
        else:
            self.view.redraw_overlay()
        self.status.value = info_html(f"{verb} {cmd.kind}" + ("" if box_id is None else f" of box {box_id}"))

    def _history_changed(self) -> None:
        self.undo_button.disabled = self.history.next_undo is None
        self.redo_button.disabled = self.history.next_redo is None

    # -- selection -----------------------------------------------------------------------
    def select(self, box_id: int | None) -> None:
        """Select a box by id (None clears); the category dropdown shows its category, the
        box list its row, and a hidden category is shown again."""
        self.selected = box_id
        self.delete_button.disabled = box_id is None
        if box_id is not None:
            self.proposals_layer.selected = None
        if box_id is not None and self._boxes is not None:
            k = np.flatnonzero(self._boxes.ids == box_id)
            if len(k):
                cid = int(self._boxes.class_id[k[0]])
                self._selecting = True
                try:
                    self.category.value = cid
                finally:
                    self._selecting = False
                if box_id not in self._shown().ids:
                    self.toggles.show(cid)
        self.box_list.reveal(box_id)
        self.view.redraw_overlay()
        self._update_info()

    def centre_on(self, box_id: int) -> None:
        """Centre the view on a box, zooming in when it would be under ~40 canvas pixels."""
        if self._boxes is None or self.view.viewport is None or box_id not in self._boxes.ids:
            return
        k = int(np.flatnonzero(self._boxes.ids == box_id)[0])
        self.view.set_viewport(centred_on(self.view.viewport, self._boxes.xyxy[k]))

    def _on_pick_row(self, box_id: int) -> None:
        if self.mode.value != "select":
            self.mode.value = "select"  # a selection is a select-mode state
        self.select(box_id)
        self.centre_on(box_id)

    def delete_selected(self) -> None:
        box = self._selected_box()
        if self.selected is None or box is None or self.image is None:
            return
        box_id, cat = self.selected, self._selected_category()
        source = self.box_list.sources.get(box_id) or self.project.annotation_sources([box_id]).get(box_id)
        self.selected = None  # no redraw here: the deletion redraws the overlay once
        self.delete_button.disabled = True
        self.box_list.selected = None
        try:
            self._editor.delete_box(box_id)
        except BaseException:
            self.select(None)
            raise
        self.history.deleted(self.image.id, box_id, cat, box, source or MANUAL_SOURCE)
        self._history_changed()
        self.status.value = info_html(f"deleted box {box_id}")

    def _on_category(self, change: dict[str, Any]) -> None:
        if not self._selecting and change["new"] is not None and self.proposals_layer.relabel(change["new"]):
            return  # the selected proposal, accepted as that category
        if self._selecting or self.selected is None or change["new"] is None or self.image is None:
            return
        if self.view.mode == "select":
            box, old = self._selected_box(), self._selected_category()
            if box is None or old == change["new"]:
                return
            self._editor.update_box(self.selected, category=change["new"])
            self.history.updated(self.image.id, self.selected, "relabel", (box, old), (box, change["new"]))
            self._history_changed()

    def _on_mode(self, change: dict[str, Any]) -> None:
        self.view.mode = change["new"]
        if change["new"] != "select":
            self.select(None)

    def _on_key(self, key: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
        on_key(self, key, shift, ctrl, meta)

    # -- status ------------------------------------------------------------------------------
    def _update_info(self) -> None:
        self.tiles_review.sync()
        rec, vp = self.image, self.view.viewport
        if rec is None or vp is None:
            self.info.value = info_html("no image: add images to the project first")
            return
        n = 0 if self._boxes is None else len(self._boxes.xyxy)
        hidden = n - (0 if self._boxes is None else len(self._shown().xyxy))
        grid = "" if rec.grid is None else f", grid {rec.grid.rows} x {rec.grid.cols}"
        self.info.value = (
            f"<b>{html.escape(rec.name)}</b> {rec.width} x {rec.height} px ({rec.split}{grid}), "
            f"{n} boxes{f' ({hidden} hidden)' if hidden else ''}, zoom {100 * vp.scale:.0f}%"
            + ("" if self.selected is None else f", selected box {self.selected}")
        )

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def close(self) -> None:
        self._subs.close()
        self.predictions_layer.close()
        self.proposals_layer.close()
        self.view.close()
        super().close()
