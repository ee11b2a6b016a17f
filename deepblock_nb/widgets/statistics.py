"""Statistics: boxes per category from ``project.statistics()``, as a bar chart and a table."""

from __future__ import annotations

from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html

__all__ = ["Statistics", "category_totals"]

_COUNT_COLUMNS = ("count", "boxes", "n", "n_boxes", "detections")
_NAME_COLUMNS = ("category", "category_name", "name", "class", "label")


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
    """Boxes per category over a split at the project's threshold; refreshed on project events."""

    def __init__(self, project: Any, split: str = "predict", interval: float = 0.2, **kwargs: Any) -> None:
        self.project = project
        self.split = split
        self.frame: pd.DataFrame | None = None
        self.totals = pd.Series(dtype=np.int64)
        self._subs = Subscriptions()
        # project events (any thread, e.g. a predict job's) only queue a refresh on the UI thread
        self._throttle = self._subs.own(Throttle(self.refresh, interval))
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0.0)
        self.bars = bq.Bars(x=[], y=[], scales={"x": x, "y": y}, colors=["#4363d8"])
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=x, label="category"),
                bq.Axis(scale=y, label="boxes", tick_format="d", orientation="vertical"),
            ],
            title="Boxes per category",
            layout=W.Layout(width="520px", height="320px"),
        )
        self.table = W.HTML()
        self.status = W.HTML()
        for topic in ("predictions", "threshold", "categories", "images"):
            self._subs.add(project.on(topic, lambda **_: self._throttle()))
        super().__init__([self.figure, self.table, self.status], **kwargs)
        self.refresh()

    def refresh(self) -> None:
        """Re-read ``project.statistics`` and redraw."""
        cats = self.project.categories
        try:
            frame = self.project.statistics(split=self.split)
        except Exception as exc:
            self.status.value = error_html(exc)
            frame = None
        else:
            self.status.value = ""
        self.frame = frame
        totals = category_totals(frame, [c.name for c in cats])
        self.totals = totals
        colors = {c.name: c.color for c in cats}
        with self.bars.hold_sync():
            self.bars.x = list(totals.index)
            self.bars.y = totals.to_numpy(np.float64)
            self.bars.colors = [colors.get(n, "#4363d8") for n in totals.index] or ["#4363d8"]
        shown = frame if frame is not None else totals.to_frame("boxes")
        self.table.value = shown.head(200).to_html(border=0, classes="deepblock-table")

    def close(self) -> None:
        self._subs.close()
        super().close()
