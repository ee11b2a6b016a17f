"""Labeler: draw, select, move and delete boxes on project images."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
import numpy as np
from ipycanvas import hold_canvas

from deepblock_nb.widgets._imageview import MODES, ImageView, Point
from deepblock_nb.widgets._util import DRAW_LOCK, Subscriptions, Throttle, error_html, guarded, info_html
from deepblock_nb.widgets._viewport import box_from_drag, convert, hit_test

__all__ = ["Labeler"]

# a Dropdown treats the value None as "nothing selected", hence the "all" sentinel
_SPLIT_OPTIONS = [("all images", "all"), ("train", "train"), ("evaluate", "evaluate"), ("predict", "predict")]


class Labeler(W.VBox):
    """Label boxes on a project's images.

    Modes: *draw* (drag to add a box of the chosen category), *select* (click a box
    to select it, drag it to move it; Delete removes it; choosing another category
    recolours it), *pan* (drag to move the view). The mouse wheel and the +/-
    buttons zoom; "fit" shows the whole image. Every box goes through
    ``project.add_box`` / ``update_box`` / ``delete_box``; the canvas is redrawn
    from the project, so nothing lives only in the browser. Project events (from
    any thread) are redrawn on the UI thread, at most once per ``interval`` seconds.
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
        self._color_map: dict[int, str] = {}
        self._boxes: Any = None  # the current image's Detections
        self._subs = Subscriptions()
        own = self._subs.own
        self._images_throttle = own(Throttle(self.refresh_images, interval))
        self._categories_throttle = own(Throttle(self._refresh_categories_and_boxes, interval))
        self._boxes_throttle = own(Throttle(self._reload_boxes, interval))
        self._grid_throttle = own(Throttle(self._refresh_grid, interval))

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
        self.show_grid = W.Checkbox(
            value=True, description="grid", indent=False, layout=W.Layout(width="60px")
        )
        self.info = W.HTML()
        self.status = W.HTML()

        self.split.observe(guarded(lambda _: self.refresh_images(), self._error), "value")
        self.image_list.observe(guarded(self._on_image_selected, self._error), "value")
        self.prev_button.on_click(guarded(lambda _: self.step(-1), self._error))
        self.next_button.on_click(guarded(lambda _: self.step(1), self._error))
        self.mode.observe(self._on_mode, "value")
        self.category.observe(guarded(self._on_category, self._error), "value")
        self.zoom_in.on_click(guarded(lambda _: self.view.zoom(1.5), self._error))
        self.zoom_out.on_click(guarded(lambda _: self.view.zoom(1 / 1.5), self._error))
        self.fit_button.on_click(guarded(lambda _: self.view.fit_view(), self._error))
        self.delete_button.on_click(guarded(lambda _: self.delete_selected(), self._error))
        self.show_grid.observe(lambda _: self.view.redraw_overlay(), "value")
        self.view.canvas.on_key_down(guarded(self._on_key, self._error))

        for topic, handler in (
            ("images", self._on_images),
            ("annotations", self._on_annotations),
            ("categories", self._on_categories),
            ("grid", self._on_grid),
        ):
            self._subs.add(project.on(topic, handler))

        toolbar = W.HBox([self.split, self.image_list, self.prev_button, self.next_button])
        tools = W.HBox(
            [
                self.mode,
                self.category,
                self.delete_button,
                self.zoom_out,
                self.zoom_in,
                self.fit_button,
                self.show_grid,
            ]
        )
        hint = W.HTML(
            "<span style='color:#666'>draw: drag a box &middot; select: click a box, drag to move it, "
            "Delete removes it, the category list changes it &middot; pan: drag &middot; wheel: zoom</span>"
        )
        super().__init__([toolbar, tools, hint, self.view.canvas, self.info, self.status], **kwargs)
        self.refresh_categories()
        self.refresh_images()

    # -- lists ---------------------------------------------------------------------
    @property
    def image(self) -> Any:
        """The image record being labelled, or None."""
        return self.view.image

    def refresh_images(self) -> None:
        """Reload the image list, keeping the current image when it is still listed."""
        records = self.project.images(None if self.split.value == "all" else self.split.value)
        options = [(r.name, r.id) for r in records]
        current = self.image_list.value
        self.image_list.options = options
        ids = [i for _, i in options]
        if current in ids:
            self.image_list.value = current
        elif ids:
            self.image_list.value = ids[0]
        else:
            self.image_list.value = None
            self._show(None)

    def refresh_categories(self) -> None:
        cats = self.project.categories
        self._color_map = {c.id: c.color for c in cats}
        current = self.category.value
        self.category.options = [(c.name, c.id) for c in cats]
        ids = [c.id for c in cats]
        self.category.value = current if current in ids else (ids[0] if ids else None)

    def show(self, image: Any) -> None:
        """Open an image (record, id or name) in the labeler."""
        rec = self.project.image(image)
        if rec.id not in [i for _, i in self.image_list.options]:
            self.split.value = "all"
        self.image_list.value = rec.id

    def step(self, delta: int) -> None:
        ids = [i for _, i in self.image_list.options]
        if not ids:
            return
        pos = ids.index(self.image_list.value) if self.image_list.value in ids else 0
        self.image_list.value = ids[(pos + delta) % len(ids)]

    def _on_image_selected(self, change: dict[str, Any]) -> None:
        self._show(change["new"])

    def _show(self, image_id: int | None) -> None:
        self.selected = None
        self.delete_button.disabled = True
        self._boxes = None if image_id is None else self.project.annotations(image_id)
        self.view.show(image_id)
        self._update_info()

    # -- project events (any thread): only queue a redraw on the UI thread --------------
    def _on_images(self, topic: str, **payload: Any) -> None:
        self._images_throttle()

    def _on_categories(self, topic: str, **payload: Any) -> None:
        self._categories_throttle()

    def _on_annotations(self, topic: str, image: Any = None, **payload: Any) -> None:
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
            self.view.redraw_overlay()
            self._update_info()

    def _reload_boxes(self) -> None:
        if self.image is None:
            return
        self._boxes = self.project.annotations(self.image.id)
        if self.selected is not None and self.selected not in set(self._boxes.ids.tolist()):
            self.selected = None
            self.delete_button.disabled = True
        self.view.redraw_overlay()
        self._update_info()

    # -- drawing ---------------------------------------------------------------------
    def _colors(self) -> dict[int, str]:
        """Category id -> colour, cached until the categories change (read on every drag redraw)."""
        return self._color_map

    def _draw_overlay(self, view: ImageView) -> None:
        if self.show_grid.value and self.image is not None and self.image.grid is not None:
            view.stroke_grid(self.project.tiles(self.image.id))
        det = self._boxes
        if det is None or len(det.xyxy) == 0:
            return
        colors = self._colors()
        view.stroke_boxes(det.xyxy, [colors.get(int(c), "#ffffff") for c in det.class_id])
        if self.selected is not None:
            k = np.flatnonzero(det.ids == self.selected)
            if len(k):
                names = {c.id: c.name for c in self.project.categories}
                cid = int(det.class_id[k[0]])
                view.stroke_boxes(det.xyxy[k], ["#ffff00"], line_width=4, labels=[names.get(cid, "?")])

    def _rubber_band(self, xyxy_view: np.ndarray | None, color: str) -> None:
        layer = self.view.canvas[2]
        with DRAW_LOCK, hold_canvas():
            layer.clear()
            if xyxy_view is not None:
                x1, y1, x2, y2 = (float(v) for v in xyxy_view)
                layer.line_width = 2
                layer.stroke_style = color
                layer.set_line_dash([5, 3])
                layer.stroke_rect(x1, y1, x2 - x1, y2 - y1)
                layer.set_line_dash([])

    def _category_color(self) -> str:
        return self._colors().get(self.category.value, "#ffffff")

    # -- gestures (canvas pixels) ------------------------------------------------------
    def _on_press(self, p: Point) -> None:
        if self.view.mode != "select" or self._boxes is None:
            return
        k = hit_test(self._boxes.xyxy, tuple(self.view.to_image(p)))
        self.select(None if k < 0 else int(self._boxes.ids[k]))

    def _on_drag(self, p0: Point, p: Point) -> None:
        if self.view.mode == "draw":
            self._rubber_band(np.array([*np.minimum(p0, p), *np.maximum(p0, p)]), self._category_color())
        elif self.view.mode == "select" and self.selected is not None:
            box = self._selected_box()
            if box is not None:
                shifted = convert(self.view.viewport, box, "view") + np.array([*np.subtract(p, p0)] * 2)  # type: ignore[arg-type]
                self._rubber_band(shifted, "#ffff00")

    def _on_release(self, p0: Point, p: Point) -> None:
        self._rubber_band(None, "")
        vp = self.view.viewport
        if vp is None or self.image is None:
            return
        if self.view.mode == "draw":
            box = box_from_drag(vp, p0, p)
            if box is None:
                return
            if self.category.value is None:
                self._error("add a category before drawing boxes")
                return
            box_id = self.project.add_box(self.image.id, self.category.value, box)
            self.status.value = info_html(f"added box {box_id}: {np.round(box, 1).tolist()}")
        elif self.view.mode == "select" and self.selected is not None:
            d = np.subtract(p, p0) / vp.scale  # [2] image pixels
            box = self._selected_box()
            if box is not None and np.hypot(*np.subtract(p, p0)) >= 3:
                self.project.update_box(self.selected, xyxy=box + np.array([*d, *d]))

    def _on_cancel(self) -> None:
        self._rubber_band(None, "")

    def _selected_box(self) -> np.ndarray | None:
        if self._boxes is None or self.selected is None:
            return None
        k = np.flatnonzero(self._boxes.ids == self.selected)
        return self._boxes.xyxy[k[0]] if len(k) else None

    # -- selection -----------------------------------------------------------------------
    def select(self, box_id: int | None) -> None:
        """Select a box by id (None clears); the category dropdown shows its category."""
        self.selected = box_id
        self.delete_button.disabled = box_id is None
        if box_id is not None and self._boxes is not None:
            k = np.flatnonzero(self._boxes.ids == box_id)
            if len(k):
                self._selecting = True
                try:
                    self.category.value = int(self._boxes.class_id[k[0]])
                finally:
                    self._selecting = False
        self.view.redraw_overlay()
        self._update_info()

    def delete_selected(self) -> None:
        if self.selected is not None:
            box_id, self.selected = self.selected, None
            self.delete_button.disabled = True
            self.project.delete_box(box_id)
            self.status.value = info_html(f"deleted box {box_id}")

    def _on_category(self, change: dict[str, Any]) -> None:
        if self._selecting or self.selected is None or change["new"] is None:
            return
        if self.view.mode == "select":
            self.project.update_box(self.selected, category=change["new"])

    def _on_mode(self, change: dict[str, Any]) -> None:
        self.view.mode = change["new"]
        if change["new"] != "select":
            self.select(None)

    def _on_key(self, key: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
        if key in ("Delete", "Backspace"):
            self.delete_selected()
        elif key in ("+", "="):
            self.view.zoom(1.5)
        elif key == "-":
            self.view.zoom(1 / 1.5)
        elif key in ("0", "f"):
            self.view.fit_view()
        elif key in ("d", "s", "p"):
            self.mode.value = {"d": "draw", "s": "select", "p": "pan"}[key]
        elif key in ("ArrowRight", "n"):
            self.step(1)
        elif key in ("ArrowLeft", "b"):
            self.step(-1)

    # -- status ------------------------------------------------------------------------------
    def _update_info(self) -> None:
        rec, vp = self.image, self.view.viewport
        if rec is None or vp is None:
            self.info.value = info_html("no image: add images to the project first")
            return
        n = 0 if self._boxes is None else len(self._boxes.xyxy)
        grid = "" if rec.grid is None else f", grid {rec.grid.rows} x {rec.grid.cols}"
        self.info.value = (
            f"<b>{html.escape(rec.name)}</b> {rec.width} x {rec.height} px ({rec.split}{grid}), "
            f"{n} boxes, zoom {100 * vp.scale:.0f}%"
            + ("" if self.selected is None else f", selected box {self.selected}")
        )

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def close(self) -> None:
        self._subs.close()
        self.view.close()
        super().close()
