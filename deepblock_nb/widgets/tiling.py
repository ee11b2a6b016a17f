"""TilingControls: divide an image into a grid of tiles ("Divide")."""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np
from ipycanvas import Canvas, hold_canvas

from deepblock_nb.core.tiling import tile_windows
from deepblock_nb.widgets._util import DRAW_LOCK, Subscriptions, Throttle, error_html, guarded, info_html

__all__ = ["TilingControls", "grid_lines"]


def grid_lines(
    image_wh: tuple[int, int], rows: int, cols: int, overlap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tile edges of a grid, image pixels: ``(xs, ys)``, sorted and unique.

    The edges are those of ``core.tiling.tile_windows`` (what ``project.set_grid``
    stores), so with overlap each cut shows as two close lines.
    """
    row = tile_windows(image_wh, 1, cols, overlap)  # [cols,4]
    col = tile_windows(image_wh, rows, 1, overlap)  # [rows,4]
    xs = np.unique(np.concatenate([row[:, 0], row[:, 0] + row[:, 2]]))
    ys = np.unique(np.concatenate([col[:, 1], col[:, 1] + col[:, 3]]))
    return xs, ys


class TilingControls(W.VBox):
    """Rows, cols and overlap of an image's grid, with a preview on its overview.

    "Suggest" fills rows and cols for tiles of about ``tile size`` pixels
    (``project.suggest_grid``); "Apply" stores the grid (``project.set_grid``);
    "Clear" removes it. The image file is never altered. Project events (from any
    thread) are shown on the UI thread, at most once per ``interval`` seconds.
    """

    def __init__(
        self,
        project: Any,
        image: Any = None,
        preview_side: int = 480,
        interval: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.project = project
        self._subs = Subscriptions()
        self._images_throttle = self._subs.own(Throttle(self.refresh_images, interval))
        self._grid_throttle = self._subs.own(Throttle(self._describe_current, interval))
        self._overview: np.ndarray | None = None
        self.image_list = W.Dropdown(description="Image", layout=W.Layout(width="320px"))
        self.rows = W.BoundedIntText(
            value=1, min=1, max=1000, description="rows", layout=W.Layout(width="150px")
        )
        self.cols = W.BoundedIntText(
            value=1, min=1, max=1000, description="cols", layout=W.Layout(width="150px")
        )
        self.overlap = W.BoundedFloatText(
            value=0.0, min=0.0, max=0.49, step=0.05, description="overlap", layout=W.Layout(width="160px")
        )
        self.tile_size = W.BoundedIntText(
            value=1000, min=32, max=100_000, description="tile size", layout=W.Layout(width="170px")
        )
        self.suggest_button = W.Button(description="Suggest", tooltip="rows and cols for tiles of this size")
        self.apply_button = W.Button(description="Apply", button_style="primary")
        self.clear_button = W.Button(description="Clear grid")
        self.preview = Canvas(width=preview_side, height=preview_side)
        self.preview.layout.width = f"{preview_side}px"
        self.preview.layout.height = f"{preview_side}px"
        self.preview_side = preview_side
        self.preview_lines = 0  # grid lines in the last preview
        self.status = W.HTML()

        self.image_list.observe(guarded(lambda c: self._load(c["new"]), self._error), "value")
        for w in (self.rows, self.cols, self.overlap):
            w.observe(guarded(lambda _: self.draw_preview(), self._error), "value")
        self.suggest_button.on_click(guarded(lambda _: self.suggest(), self._error))
        self.apply_button.on_click(guarded(lambda _: self.apply(), self._error))
        self.clear_button.on_click(guarded(lambda _: self.clear(), self._error))
        self.preview.on_client_ready(self.draw_preview)
        self._subs.add(project.on("images", lambda **_: self._images_throttle()))
        self._subs.add(project.on("grid", self._on_grid))

        super().__init__(
            [
                self.image_list,
                W.HBox([self.rows, self.cols, self.overlap]),
                W.HBox([self.tile_size, self.suggest_button, self.apply_button, self.clear_button]),
                self.preview,
                self.status,
            ],
            **kwargs,
        )
        self.refresh_images()
        if image is not None:
            self.image_list.value = project.image(image).id

    @property
    def image(self) -> Any:
        return None if self.image_list.value is None else self.project.image(self.image_list.value)

    def refresh_images(self) -> None:
        current = self.image_list.value
        records = self.project.images()
        self.image_list.options = [(f"{r.name} ({r.width} x {r.height}, {r.split})", r.id) for r in records]
        ids = [r.id for r in records]
        if current in ids:
            return
        self.image_list.value = ids[0] if ids else None
        if not ids:
            self._load(None)

    def _load(self, image_id: int | None) -> None:
        self._overview = None
        if image_id is not None:
            rec = self.project.image(image_id)
            with self.project.open_image(rec) as src:
                ov = src.overview(self.preview_side)
            # a small image fills the preview too: enlarged by a whole factor (pixels stay sharp)
            k = max(1, self.preview_side // max(ov.shape[:2]))
            self._overview = ov if k == 1 else np.repeat(np.repeat(ov, k, axis=0), k, axis=1)
            grid = rec.grid
            with self.hold_sync():
                self.rows.value, self.cols.value = (grid.rows, grid.cols) if grid else (1, 1)
                self.overlap.value = grid.overlap if grid else 0.0
            self._describe(rec)
        self.draw_preview()

    def suggest(self) -> None:
        if self.image_list.value is None:
            return
        rows, cols = self.project.suggest_grid(self.image_list.value, tile_size=int(self.tile_size.value))
        self.rows.value, self.cols.value = rows, cols

    def apply(self) -> None:
        if self.image_list.value is None:
            self._error("no image selected")
            return
        rec = self.project.set_grid(
            self.image_list.value, self.rows.value, self.cols.value, self.overlap.value
        )
        self._describe(rec)

    def clear(self) -> None:
        if self.image_list.value is not None:
            self._describe(self.project.clear_grid(self.image_list.value))

    def _on_grid(self, topic: str, image: Any = None, **payload: Any) -> None:
        # any thread: only queue the description on the UI thread
        if image is not None and image.id == self.image_list.value:
            self._grid_throttle()

    def _describe_current(self) -> None:
        rec = self.image
        if rec is not None:
            self._describe(rec)

    def _describe(self, rec: Any) -> None:
        if rec.grid is None:
            self.status.value = info_html(f"{rec.name}: no grid (one tile, {rec.width} x {rec.height} px)")
            return
        tiles = self.project.tiles(rec.id)
        w, h = tiles[0][2], tiles[0][3]
        self.status.value = info_html(
            f"{rec.name}: {rec.grid.rows} x {rec.grid.cols} grid, overlap {rec.grid.overlap:.2f}, "
            f"{len(tiles)} tiles of about {w} x {h} px"
        )

    def draw_preview(self) -> None:
        """The overview with the (not yet applied) grid's tile edges in red."""
        c = self.preview
        with DRAW_LOCK, hold_canvas():
            c.clear()
            c.fill_style = "#3a3a3a"
            c.fill_rect(0, 0, self.preview_side, self.preview_side)
            rec = self.image
            if self._overview is None or rec is None:
                return
            ov = self._overview
            oh, ow = ov.shape[:2]
            ox, oy = (self.preview_side - ow) // 2, (self.preview_side - oh) // 2  # centred, as the Labeler
            c.put_image_data(ov, ox, oy)
            xs, ys = grid_lines((rec.width, rec.height), self.rows.value, self.cols.value, self.overlap.value)
            sx, sy = ow / rec.width, oh / rec.height
            c.stroke_style = "#ff3030"
            c.line_width = 1
            inner_x = xs[(xs > 0) & (xs < rec.width)] * sx + ox
            inner_y = ys[(ys > 0) & (ys < rec.height)] * sy + oy
            segments = [[(x, float(oy)), (x, float(oy + oh))] for x in inner_x.tolist()]
            segments += [[(float(ox), y), (float(ox + ow), y)] for y in inner_y.tolist()]
            if segments:
                c.stroke_line_segments(np.asarray(segments))
            self.preview_lines = len(segments)

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def close(self) -> None:
        self._subs.close()
        super().close()
