"""Statistics: boxes per category for the shown image and the whole split, as a table and a bar chart."""

from __future__ import annotations

import html
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from deepblock_nb.errors import DeepBlockError
from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html

__all__ = ["Statistics", "category_totals"]

_COUNT_COLUMNS = ("count", "boxes", "n", "n_boxes", "detections")
_NAME_COLUMNS = ("category", "category_name", "name", "class", "label")

IMAGE_COLUMN = "this image"
SERIES_COLORS = ("#f58231", "#4363d8")  # this image, the whole split
TABLE_STYLE = (
    "<style>.deepblock-table th, .deepblock-table td {padding: 2px 12px; text-align: right}"
    " .deepblock-table tbody tr:last-child {font-weight: bold}</style>"
)
LEGEND_ROOM = 1.4  # the value axis reaches this many times the tallest bar


def category_totals(frame: pd.DataFrame | None, categories: list[str]) -> pd.Series:
    """Total boxes per category name from a statistics frame, in ``categories`` order.

    Reads either a long frame (a category column and a count column, one row per
    image and category) or a wide one (one numeric column per category). A
    category the frame does not mention counts 0; rows named "total"/"all" are
    ignored.
    """
    index = pd.Index(categories, name="category")
    if frame is None or len(frame) == 0:
        return pd.Series(0, index=index, dtype=np.int64)
    f = frame.reset_index()
    name_col = next((c for c in _NAME_COLUMNS if c in f.columns), None)
    count_col = next((c for c in _COUNT_COLUMNS if c in f.columns), None)
    sums: dict[str, float]
    if name_col is not None and count_col is not None:
        f = f[~f[name_col].astype(str).str.lower().isin(("total", "all"))]
        grouped = (
            pd.to_numeric(f[count_col], errors="coerce").fillna(0).groupby(f[name_col].astype(str)).sum()
        )
        sums = {str(k): float(v) for k, v in grouped.items()}
    else:
        for col in ("image", "image_name", "name", "index"):
            if col in f.columns:
                f = f[~f[col].astype(str).str.lower().isin(("total", "all"))]
        cols = [c for c in f.columns if str(c) in categories]
        sums = {str(c): float(pd.to_numeric(f[c], errors="coerce").fillna(0).sum()) for c in cols}
    return pd.Series([int(sums.get(n, 0)) for n in categories], index=index, dtype=np.int64)


class Statistics(W.VBox):
    """Boxes per category at ``project.threshold``: for the shown image and for the whole split.

    A table (``frame``: one row per category and a ``total`` row; columns "this image"
    and "all <split> images") and a grouped bar chart of the same numbers (categories
    along x, boxes up). ``image`` is the image counted in "this image" (an id, or
    None); ``panel`` (a PredictPanel, or any widget with an ``image_list`` dropdown of
    image ids) makes it follow the image shown there. Refreshed, at most once per
    ``interval`` seconds, on the project's "predictions", "threshold", "categories"
    and "images" events.
    """

    def __init__(
        self,
        project: Any,
        split: str = "predict",
        panel: Any = None,
        interval: float = 0.2,
        **kwargs: Any,
    ) -> None:
        self.project = project
        self.split = split
        self.statistics: pd.DataFrame | None = None  # project.statistics(split) as last read
        self.frame = pd.DataFrame()
        self.totals = pd.Series(dtype=np.int64)  # the split's boxes per category
        self.image_totals = pd.Series(dtype=np.int64)  # the image's boxes per category
        self._image: int | None = None
        self._subs = Subscriptions()
        # project events (any thread, e.g. a predict job's) only queue a refresh on the UI thread
        self._throttle = self._subs.own(Throttle(self.refresh, interval))
        # both ends set: with only min given, the page's scale ignores the data (flat bars)
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0.0, max=1.0)
        self.value_scale = y
        self.value_axis = bq.Axis(scale=y, label="boxes", tick_format="d", side="left")
        self.bars = bq.Bars(
            x=[],
            y=[],
            scales={"x": x, "y": y},
            type="grouped",
            orientation="vertical",  # bars grow up from the category axis; the value axis is vertical
            colors=list(SERIES_COLORS),
            labels=[IMAGE_COLUMN, self.split_column],
            display_legend=True,
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=x, label="category", side="bottom"),
                self.value_axis,
            ],
            title="Boxes per category",
            legend_location="top-right",
            layout=W.Layout(width="520px", height="320px"),
        )
        self.caption = W.HTML()
        self.table = W.HTML()
        self.status = W.HTML()
        for topic in ("predictions", "threshold", "categories", "images"):
            self._subs.add(project.on(topic, lambda **_: self._throttle()))
        super().__init__([self.caption, self.table, self.figure, self.status], **kwargs)
        if panel is not None:
            self.follow(panel)
        self.refresh()

    @property
    def split_column(self) -> str:
        return f"all {self.split} images"

    @property
    def image(self) -> int | None:
        """The id of the image counted in the "this image" column (None: no image)."""
        return self._image

    @image.setter
    def image(self, image: Any) -> None:
        self._image = None if image is None else int(getattr(image, "id", image))
        self.refresh()

    def follow(self, panel: Any) -> None:
        """Count the image shown in ``panel`` (its ``image_list`` value), now and whenever it changes."""
        dropdown = panel.image_list
        dropdown.observe(lambda change: setattr(self, "image", change["new"]), "value")
        self.image = dropdown.value

    def refresh(self) -> None:
        """Re-read ``project.statistics`` at ``project.threshold`` and redraw the table and the chart."""
        cats = self.project.categories
        names = [c.name for c in cats]
        image_name = self._image_name()
        try:
            frame = self.project.statistics(split=self.split)
        except Exception as exc:  # shown in the page: a refresh has no cell to raise into
            self.status.value = error_html(exc)
            frame = None
        else:
            self.status.value = ""
        self.statistics = frame
        self.totals = category_totals(frame, names)
        if frame is not None and image_name is not None and image_name in frame.index:
            self.image_totals = category_totals(frame.loc[[image_name]], names)
        else:
            self.image_totals = pd.Series(0, index=self.totals.index, dtype=np.int64)
        table = pd.DataFrame({IMAGE_COLUMN: self.image_totals, self.split_column: self.totals})
        table.loc["total"] = table.sum(axis=0)
        self.frame = table
        with self.bars.hold_sync():
            self.bars.x = names
            heights = np.vstack([self.image_totals.to_numpy(np.float64), self.totals.to_numpy(np.float64)])
            self.bars.y = heights
        tallest = float(heights.max(initial=0.0))
        with self.value_scale.hold_sync(), self.value_axis.hold_sync():
            # room above the tallest bar for the legend; whole-number ticks while they are few
            self.value_scale.max = max(1.0, np.ceil(tallest * LEGEND_ROOM))
            self.value_axis.tick_values = np.arange(0, tallest + 1) if tallest <= 10 else None
        threshold = float(self.project.threshold)
        shown = "no image" if image_name is None else html.escape(image_name)
        self.caption.value = (
            f"<b>Boxes per category</b> at threshold {round(threshold * 100, 6):g} %: this image = {shown}"
        )
        # one header row: the index (category) as the first column
        self.table.value = TABLE_STYLE + table.reset_index().to_html(
            index=False, border=0, classes="deepblock-table"
        )

    def _image_name(self) -> str | None:
        if self._image is None:
            return None
        try:
            return str(self.project.image(self._image).name)
        except DeepBlockError:  # removed since: nothing to count
            return None

    def close(self) -> None:
        self._subs.close()
        super().close()
