"""Scorecard renders what an EvaluationReport holds; Statistics shows boxes per category."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import deepblock_nb as dbn
from deepblock_nb.core.detections import Detections
from deepblock_nb.widgets import Scorecard, Statistics
from deepblock_nb.widgets.statistics import category_totals
from tests.widgets.conftest import seed_predictions


def _report():  # type: ignore[no-untyped-def]
    gt = [
        Detections(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float), np.array([1, 2])),
        Detections(np.array([[5, 5, 25, 25]], float), np.array([1])),
    ]
    pred = [
        Detections(
            np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float), np.array([1, 2]), np.array([0.9, 0.6])
        ),
        Detections(np.array([[5, 5, 25, 25]], float), np.array([1]), np.array([0.8])),
    ]
    return dbn.metrics.evaluate(gt, pred, categories={1: "disc", 2: "square", 3: "triangle"})


def test_scorecard_shows_the_report() -> None:
    report = _report()
    card = Scorecard(report)
    for label in ("mAP50", "recall", "F1"):
        assert label in card.headline.value
    assert f"{report.map50:.3f}" in card.headline.value
    assert f"{report.recall:.3f}" in card.headline.value
    assert f"{report.f1:.3f}" in card.headline.value
    for name in ("disc", "square", "triangle"):
        assert name in card.table.value
    # one precision-recall curve per category with ground truth (triangle has none)
    assert list(card.pr_lines.labels) == ["disc", "square"]
    assert np.asarray(card.pr_lines.y).shape == (2, len(report.curves.recall))
    card.report = None
    assert "no evaluation" in card.headline.value and len(card.pr_lines.y) == 0


def test_scorecard_states_the_headline_threshold_and_the_users_beside_it() -> None:
    from tests.core.test_metrics_threshold import low_scoring_case

    report = dbn.metrics.evaluate(*low_scoring_case(), at_threshold=0.5)
    card = Scorecard(report)
    text = card.headline.value
    assert f"precision, recall and F1 at {report.threshold:.2f}, the best-F1 threshold" in text
    assert f"{report.recall:.3f}" in text and report.recall == 1.0
    assert "at your threshold 0.50: P 0.000 R 0.000 F1 0.000 (0 TP, 0 FP, 24 FN)" in text
    # a report scored at a given threshold (as every report stored before) says so, and where F1 is best
    given = dbn.metrics.EvaluationReport.from_dict(
        {k: v for k, v in dbn.metrics.evaluate(*low_scoring_case(), threshold=0.5).to_dict().items()
         if k not in ("threshold_rule", "at_threshold")}
    )  # fmt: skip
    text = Scorecard(given).headline.value
    assert f"at the given threshold 0.50 (best F1 1.000 at {report.best_threshold:.2f})" in text
    assert "your threshold" not in text


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (None, [0, 0, 0]),
        (pd.DataFrame(), [0, 0, 0]),
        (
            pd.DataFrame(
                {"disc": [1, 2, 3], "square": [0, 1, 1], "total": [1, 3, 4]},
                index=pd.Index(["a", "b", "total"], name="image"),
            ),
            [3, 1, 0],
        ),
        (
            pd.DataFrame(
                {"image": ["a", "a", "b"], "category": ["disc", "triangle", "disc"], "count": [2, 1, 4]}
            ),
            [6, 0, 1],
        ),
    ],
)
def test_category_totals_reads_wide_and_long_frames(frame: pd.DataFrame | None, expected: list) -> None:
    totals = category_totals(frame, ["disc", "square", "triangle"])
    assert totals.tolist() == expected


def test_statistics_follow_predictions_and_threshold(wproject: dbn.Project) -> None:
    big = wproject.images("predict")[0]
    stats = Statistics(wproject, interval=0.0)
    assert stats.totals.tolist() == [0, 0, 0]
    seed_predictions(
        wproject,
        big,
        np.array([[0, 0, 9, 9], [10, 10, 30, 30], [40, 40, 60, 60]], float),
        [1, 1, 3],
        [0.9, 0.3, 0.8],
    )
    wproject.threshold = 0.5
    stats._throttle.flush()
    assert stats.totals.tolist() == [1, 0, 1]
    assert list(stats.bars.x) == ["disc", "square", "triangle"] and list(stats.bars.y) == [1, 0, 1]
    wproject.threshold = 0.1
    stats._throttle.flush()
    assert stats.totals.tolist() == [2, 0, 1]
    assert big.name in stats.table.value
