"""The Labeler's reviews: the image's "done" checkbox; which grid tile is done, the "tile done"
checkbox, the outlines."""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np

from deepblock_nb.store.reviews import windows_inside
from deepblock_nb.widgets._imageview import ImageView, Point
from deepblock_nb.widgets._util import guarded, info_html

__all__ = ["TILE_DONE_COLOR", "TileReview"]

TILE_DONE_COLOR = "#00e676"  # outline of the reviewed tiles, apart from the white grid
TILE_DONE_LABEL = "\u2713 done"


class TileReview:
    """Reviewed tiles of the image a Labeler shows (``lab.image``, ``lab.view``).

    ``checkbox`` ("tile done") shows and sets the state of :attr:`focus`: the tile at
    the view centre, or the one :meth:`toggle` last changed. A tile counts as done
    when its window lies inside a reviewed window (``store.reviews.windows_inside``,
    the rule training uses).
    """

    def __init__(self, lab: Any) -> None:
        self._lab = lab
        self.windows = np.zeros((0, 4), np.int64)  # [R,4] the shown image's reviewed windows
        self.focus: int | None = None
        self._syncing = False
        self.checkbox = W.Checkbox(
            value=False,
            description="tile done",
            indent=False,
            disabled=True,
            tooltip="the tile at the view centre is fully labelled (key t: the tile under the pointer)",
            layout=W.Layout(width="90px"),
        )
        self.checkbox.observe(guarded(self._on_checkbox, lab._error), "value")
        self.image_checkbox = W.Checkbox(
            value=False,
            description="done",
            indent=False,
            tooltip="this image is fully labelled (with no boxes: a true negative for training and Evaluate)",
            layout=W.Layout(width="70px"),
        )
        self.image_checkbox.observe(guarded(self._on_image_checkbox, lab._error), "value")

    def reload(self) -> None:
        """Read the shown image's reviewed windows and "done" state again (after it or its grid changed)."""
        rec = self._lab.image
        tiles = [] if rec is None else self._lab.project.reviewed_tiles(rec.id)
        self.windows = np.array(tiles, np.int64).reshape(-1, 4)
        self._syncing = True
        try:
            self.image_checkbox.disabled = rec is None
            self.image_checkbox.value = bool(rec is not None and rec.reviewed)
        finally:
            self._syncing = False

    def _on_image_checkbox(self, change: dict[str, Any]) -> None:
        """Mark the shown image reviewed ("done") or not."""
        lab = self._lab
        if self._syncing or lab.image is None:
            return
        lab.view.image = lab.project.set_reviewed(lab.image, bool(change["new"]))

    def tile_at(self, p: Point | None = None) -> int | None:
        """The grid tile (index into ``project.tiles``) under canvas point ``p`` (default: the
        view centre) whose centre is nearest, or None (no grid, or off the image)."""
        view: ImageView = self._lab.view
        rec = self._lab.image
        if rec is None or rec.grid is None or view.viewport is None:
            return None
        xy = view.to_image(np.divide(view.canvas_wh, 2) if p is None else p)
        w = rec.windows().astype(np.float64)  # [T,4]
        inside = ((w[:, :2] <= xy) & (xy < w[:, :2] + w[:, 2:])).all(axis=1)  # [T]
        if not inside.any():
            return None
        dist = np.abs(w[:, :2] + w[:, 2:] / 2 - xy).sum(axis=1)  # [T]
        return int(np.argmin(np.where(inside, dist, np.inf)))

    def is_done(self, i: int) -> bool:
        return bool(windows_inside(self._lab.image.windows()[i : i + 1], self.windows)[0])

    def toggle(self, p: Point | None = None) -> None:
        """Mark the tile under canvas point ``p`` (default: the pointer) done, or not done again."""
        i = self.tile_at(self._lab.view._pointer if p is None else p)
        if i is None:
            self._lab.status.value = info_html("no tile here: divide the image into a grid first")
        else:
            self.set_done(i, not self.is_done(i))

    def set_done(self, i: int, done: bool) -> None:
        lab = self._lab
        lab.view.image = lab.project.set_reviewed(lab.image, done, tile=i)
        self.reload()
        self.sync(i)
        lab.view.redraw_overlay()
        lab.status.value = info_html(f"tile {i} {'done' if done else 'not done'}")

    def sync(self, i: int | None = None) -> None:
        """Show the state of tile ``i`` (default: the one at the view centre) in the checkbox."""
        i = self.tile_at() if i is None else i
        self.focus, self._syncing = i, True
        try:
            self.checkbox.disabled = i is None
            self.checkbox.value = i is not None and self.is_done(i)
        finally:
            self._syncing = False

    def _on_checkbox(self, change: dict[str, Any]) -> None:
        if not self._syncing and self.focus is not None:
            self.set_done(self.focus, bool(change["new"]))

    def draw(self, view: ImageView) -> None:
        """Outline the reviewed windows in :data:`TILE_DONE_COLOR`, each with a check mark."""
        n = len(self.windows)
        if n:
            t = self.windows.astype(np.float64)
            xyxy = np.concatenate([t[:, :2], t[:, :2] + t[:, 2:]], axis=1)  # [R,4]
            view.stroke_boxes(xyxy, [TILE_DONE_COLOR] * n, line_width=3.0, labels=[TILE_DONE_LABEL] * n)
