"""The Labeler's box list (one page of rows) and its category show/hide toggles.

The list never holds a widget per box: one ``Select`` shows a page of rows (50 by
default) of the shown image's in-memory boxes, sorted by position or by category.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal

import ipywidgets as W
import numpy as np
import numpy.typing as npt

from deepblock_nb.errors import ArgumentError
from deepblock_nb.widgets._viewport import MAX_SCALE, Viewport

__all__ = ["BoxList", "CategoryToggles", "box_order", "centred_on", "source_reader"]

PAGE_SIZE = 50
SORTS = ("position", "category")


def box_order(
    xyxy: npt.ArrayLike, class_id: npt.ArrayLike, by: Literal["position", "category"]
) -> np.ndarray:
    """Row order ``(N,)`` of boxes ``(N, 4)`` xyxy: top to bottom then left to right
    (``"position"``), or by category id first (``"category"``)."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    if by == "position":
        return np.lexsort((b[:, 0], b[:, 1]))
    if by == "category":
        return np.lexsort((b[:, 0], b[:, 1], np.asarray(class_id).reshape(-1)))
    raise ArgumentError(f"sort must be one of {SORTS}, got {by!r}")


def centred_on(
    vp: Viewport, xyxy: npt.ArrayLike, min_side: float = 40.0, target_side: float = 120.0, margin: float = 0.9
) -> Viewport:
    """The viewport centred on an image box ``(4,)`` xyxy.

    The scale is kept unless the box's longer side would be under ``min_side``
    canvas pixels (then it becomes about ``target_side``) or the box would not fit
    ``margin`` of the canvas (then it is zoomed out to fit); it stays between half
    the fit scale and :data:`MAX_SCALE`.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy, dtype=np.float64).reshape(4))
    w, h = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
    cw, ch = vp.canvas_wh
    scale = vp.scale if max(w, h) * vp.scale >= min_side else target_side / max(w, h)
    scale = min(scale, margin * cw / w, margin * ch / h)
    scale = float(np.clip(scale, min(vp.fit_scale / 2, MAX_SCALE), MAX_SCALE))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return replace(vp, scale=scale, x0=cx - cw / (2 * scale), y0=cy - ch / (2 * scale))


def source_reader(project: Any) -> Callable[[Sequence[int]], dict[int, str]] | None:
    """The project's reader of the annotations' ``source`` field ("manual", "imported", ...),
    ``annotation_sources(box_ids) -> {id: source}``, or None when the project has none."""
    reader = getattr(project, "annotation_sources", None)
    if reader is None:
        return None
    return lambda ids: {int(k): str(v) for k, v in reader(list(ids)).items()}


class BoxList(W.VBox):
    """One page of rows (category, ``w x h`` image pixels, source, id) of an image's boxes.

    ``set_boxes`` gives it the boxes to list (in memory; they are sorted again,
    vectorised, on every change); ``reveal(box_id)`` turns to the box's page and
    highlights its row; a click on a row calls ``on_pick(box_id)``. Sources are
    read with ``read(ids)`` per page, only for ids not yet known (``sources``
    caches them); without ``read`` a row shows the source only when ``sources``
    knows it (boxes added in this list's Labeler are "manual").
    """

    def __init__(
        self,
        on_pick: Callable[[int], None],
        read: Callable[[Sequence[int]], dict[int, str]] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if page_size < 1:
            raise ArgumentError(f"page_size must be at least 1, got {page_size}")
        self.on_pick = on_pick
        self.read = read
        self.page_size = page_size
        self.page = 0
        self.sources: dict[int, str] = {}
        self.selected: int | None = None
        self.renders = 0  # page renders (for tests and benchmarks)
        self._rows = np.zeros(0, np.int64)  # rows of the listed Detections, in list order
        self._ids = np.zeros(0, np.int64)  # their box ids
        self._det: Any = None
        self._names: dict[int, str] = {}
        self._rendering = False
        self.rows = W.Select(rows=12, layout=W.Layout(width="420px"))
        self.sort = W.Dropdown(
            options=[("by position", "position"), ("by category", "category")],
            value="position",
            layout=W.Layout(width="120px"),
        )
        self.prev_button = W.Button(
            icon="chevron-left", tooltip="previous page", layout=W.Layout(width="40px")
        )
        self.next_button = W.Button(icon="chevron-right", tooltip="next page", layout=W.Layout(width="40px"))
        self.count = W.HTML()
        self.rows.observe(self._on_row, "value")
        self.sort.observe(lambda _: self._resort(), "value")
        self.prev_button.on_click(lambda _: self.set_page(self.page - 1))
        self.next_button.on_click(lambda _: self.set_page(self.page + 1))
        bar = W.HBox([W.HTML("<b>boxes</b>"), self.sort, self.prev_button, self.next_button, self.count])
        super().__init__([bar, self.rows])

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self._ids) // self.page_size))

    @property
    def ids(self) -> np.ndarray:
        """Listed box ids ``(N,)`` in list order; a copy."""
        return self._ids.copy()

    def reset(self) -> None:
        """Forget the sources, the selection and the page (another image is shown)."""
        self.sources, self.selected, self.page = {}, None, 0

    def set_boxes(self, det: Any, names: dict[int, str]) -> None:
        """List these boxes (a Detections with ids, or None); keeps the page where it can."""
        self._det, self._names = det, names
        self._resort(keep_page=True)

    def _resort(self, keep_page: bool = False) -> None:
        det = self._det
        if det is None or len(det.xyxy) == 0:
            self._rows = np.zeros(0, np.int64)
        else:
            self._rows = box_order(det.xyxy, det.class_id, self.sort.value)
        self._ids = np.zeros(0, np.int64) if det is None else det.ids[self._rows]
        if self.selected is not None and not keep_page:
            self.reveal(self.selected)
        else:
            self.set_page(self.page if keep_page else 0)

    def set_page(self, page: int) -> None:
        self.page = int(np.clip(page, 0, self.n_pages - 1))
        self._render()

    def reveal(self, box_id: int | None) -> None:
        """Highlight a box's row, turning to its page (None or an unlisted id: no highlight)."""
        self.selected = box_id
        k = np.flatnonzero(self._ids == box_id) if box_id is not None else np.zeros(0, np.int64)
        if len(k):
            self.page = int(k[0]) // self.page_size
        self._render()

    def _render(self) -> None:
        n, start = len(self._ids), self.page * self.page_size
        page = self._ids[start : start + self.page_size].tolist()
        missing = [i for i in page if i not in self.sources]
        if missing and self.read is not None:
            self.sources.update(self.read(missing))
        rows = self._rows[start : start + self.page_size].tolist()
        options = [(self._row_label(k), i) for k, i in zip(rows, page)]
        self._rendering = True
        try:
            self.rows.options = options
            self.rows.value = self.selected if self.selected in page else None
        finally:
            self._rendering = False
        self.count.value = f"{start + 1 if n else 0:,}-{start + len(page):,} of {n:,}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.n_pages - 1
        self.renders += 1

    def _row_label(self, k: int) -> str:
        """The text of row ``k`` of the listed Detections."""
        det, box_id = self._det, int(self._det.ids[k])
        x1, y1, x2, y2 = det.xyxy[k]
        name = self._names.get(int(det.class_id[k]), "?")
        source = self.sources.get(box_id)
        return " \u00b7 ".join(
            [name, f"{x2 - x1:.0f} x {y2 - y1:.0f} px", *([source] if source else []), f"#{box_id}"]
        )

    def _on_row(self, change: dict[str, Any]) -> None:
        if self._rendering or change["new"] is None:
            return
        self.selected = int(change["new"])
        self.on_pick(self.selected)


class CategoryToggles(W.HBox):
    """Show/hide boxes: one checkbox for all of them and one per category."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.all = W.Checkbox(
            value=True, description="show boxes:", indent=False, layout=W.Layout(width="auto")
        )
        self.checks: dict[int, W.Checkbox] = {}
        self.all.observe(lambda _: self.on_change(), "value")
        super().__init__([self.all])

    def set_categories(self, categories: Iterable[tuple[int, str]]) -> None:
        """Rebuild the per-category checkboxes from ``(id, name)`` pairs, keeping each one's state."""
        old, self.checks = self.checks, {}
        for cid, name in categories:
            box = W.Checkbox(
                value=old[cid].value if cid in old else True,
                description=name,
                indent=False,
                layout=W.Layout(width="auto"),
            )
            box.observe(lambda _: self.on_change(), "value")
            self.checks[cid] = box
        self.children = [self.all, *self.checks.values()]

    def key(self) -> tuple[bool, frozenset[int]]:
        """What is hidden: (all shown, hidden category ids); equal keys hide the same boxes."""
        return (bool(self.all.value), frozenset(c for c, box in self.checks.items() if not box.value))

    def shown_rows(self, class_id: npt.ArrayLike) -> np.ndarray:
        """Rows ``(K,)`` of boxes with these category ids ``(N,)`` that are shown."""
        cls = np.asarray(class_id).reshape(-1)
        shown, hidden = self.key()
        if not shown:
            return np.zeros(0, np.int64)
        if not hidden:
            return np.arange(len(cls))
        return np.flatnonzero(~np.isin(cls, list(hidden)))

    def show(self, category_id: int) -> None:
        """Make sure a category's boxes are shown (ticks its box and the all box)."""
        self.all.value = True
        if category_id in self.checks:
            self.checks[category_id].value = True
