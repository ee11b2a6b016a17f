"""Statistics: boxes per category for the shown image and the predict split, at the slider's threshold."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import deepblock_nb as dbn
from deepblock_nb.widgets import PredictPanel, Statistics
from deepblock_nb.widgets.statistics import category_totals
from tests.widgets.conftest import seed_predictions, settled

CATS = ["disc", "square", "triangle"]


class _Cells(HTMLParser):
    """The rows of an HTML table as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_counts(html_text: str) -> dict[str, tuple[int, int]]:
    """{row name: (this image, whole split)} read from the rendered table."""
    parser = _Cells()
    parser.feed(html_text)
    out = {}
    for row in parser.rows:
        if len(row) == 3 and row[1].isdigit():
            out[row[0]] = (int(row[1]), int(row[2]))
    return out


def _second_image(project: dbn.Project, tmp_path: Path) -> Any:
    f = tmp_path / "second.png"
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(f)
    return project.add_image(f, split="predict")


def _seed(project: dbn.Project, big: object, second: object) -> None:
    # big: disc 0.2, square 0.55, triangle 0.7, disc 0.95; second: square 0.3, square 0.58, disc 0.8
    boxes = np.array([[10, 10, 50, 50], [100, 100, 200, 220], [300, 300, 400, 380], [5, 600, 90, 700]], float)
    seed_predictions(project, big, boxes, [1, 2, 3, 1], [0.2, 0.55, 0.7, 0.95])
    seed_predictions(project, second, boxes[:3] / 4, [2, 2, 1], [0.3, 0.58, 0.8])


def test_the_slider_refilters_boxes_and_both_tables(wproject: dbn.Project, tmp_path: Path) -> None:
    big = wproject.images("predict")[0]
    second = _second_image(wproject, tmp_path)
    _seed(wproject, big, second)
    panel = PredictPanel(wproject)
    stats = Statistics(wproject, panel=panel)
    settled()
    assert panel.image.id == big.id and stats.image == big.id
    assert panel.threshold.value == 50 and panel.shown == 3
    at50 = {"disc": (1, 2), "square": (1, 2), "triangle": (1, 1), "total": (3, 5)}
    assert table_counts(stats.table.value) == at50
    assert "50 %" in stats.caption.value and big.name in stats.caption.value

    panel.threshold.value = 60  # the user moves the slider to 60 %
    assert wproject.threshold == 0.6
    settled()  # the "threshold" event reaches both widgets on the UI thread
    assert panel.shown == 2 and "2 boxes at threshold 60 %" in panel.info.value
    at60 = {"disc": (1, 2), "square": (0, 0), "triangle": (1, 1), "total": (2, 3)}
    assert table_counts(stats.table.value) == at60
    assert stats.frame.loc["square"].tolist() == [0, 0]

    panel.image_list.value = second.id  # the shown image changes: "this image" follows
    assert stats.image == second.id and panel.shown == 1
    assert table_counts(stats.table.value) == {
        "disc": (1, 2),
        "square": (0, 0),
        "triangle": (0, 1),
        "total": (1, 3),
    }
    wproject.threshold = 0.25  # from a cell: the slider and the statistics follow
    settled()
    assert panel.threshold.value == 25 and panel.shown == 3
    assert table_counts(stats.table.value)["total"] == (3, 6)
    stats.close()
    panel.close()


def test_the_chart_bars_equal_the_table(wproject: dbn.Project, tmp_path: Path) -> None:
    big = wproject.images("predict")[0]
    second = _second_image(wproject, tmp_path)
    _seed(wproject, big, second)
    stats = Statistics(wproject)
    stats.image = big
    for threshold in (0.5, 0.6, 0.0, 1.0):
        wproject.threshold = threshold
        settled()
        counts = table_counts(stats.table.value)
        assert list(stats.bars.x) == CATS
        y = np.asarray(stats.bars.y)
        assert y.shape == (2, 3)
        assert y[0].tolist() == [counts[c][0] for c in CATS]
        assert y[1].tolist() == [counts[c][1] for c in CATS]
        assert int(y.sum()) == sum(counts["total"])
        assert stats.value_scale.min == 0 and max(1, y.max()) <= stats.value_scale.max <= max(1, 2 * y.max())
        assert list(stats.value_axis.tick_values) == list(range(int(y.max()) + 1))  # whole numbers
    assert np.asarray(stats.bars.y).sum() == 0  # at 100 % no box is kept
    assert stats.bars.type == "grouped" and list(stats.bars.labels) == ["this image", "all predict images"]
    assert stats.bars.orientation == "vertical"  # bars grow up: the value axis is the vertical one
    category_axis, value_axis = stats.figure.axes
    assert (category_axis.side, category_axis.scale) == ("bottom", stats.bars.scales["x"])
    assert (value_axis.side, value_axis.scale) == ("left", stats.bars.scales["y"])
    stats.close()


def test_no_image_and_no_predictions_count_zero(wproject: dbn.Project) -> None:
    stats = Statistics(wproject)
    assert stats.image is None and "no image" in stats.caption.value
    assert table_counts(stats.table.value) == {c: (0, 0) for c in [*CATS, "total"]}
    assert np.asarray(stats.bars.y).tolist() == [[0, 0, 0], [0, 0, 0]]
    big = wproject.images("predict")[0]
    stats.image = big.id
    seed_predictions(wproject, big, np.array([[1, 1, 9, 9]], float), [3], [0.9])
    settled()
    assert table_counts(stats.table.value)["triangle"] == (1, 1)
    wproject.remove_image(big)  # the counted image is gone: zero, and no error
    settled()
    assert table_counts(stats.table.value)["total"] == (0, 0) and stats.status.value == ""
    stats.close()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (None, [0, 0]),
        (
            pd.DataFrame({"a": [1, 2, 3], "b": [0, 1, 1]}, index=pd.Index(["x", "y", "total"], name="image")),
            [3, 1],
        ),
        (pd.DataFrame({"category": ["a", "b", "a"], "count": [2, 1, 4]}), [6, 1]),
        (pd.DataFrame({"a": [5]}, index=pd.Index(["x"], name="image")), [5, 0]),  # a category with no column
    ],
)
def test_category_totals(frame: pd.DataFrame | None, expected: list[int]) -> None:
    assert category_totals(frame, ["a", "b"]).tolist() == expected
