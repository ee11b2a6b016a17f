"""Scorecard renders what an EvaluationReport holds; Statistics shows boxes per category."""

from __future__ import annotations

import html

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
    assert list(stats.bars.x) == ["disc", "square", "triangle"]
    assert np.asarray(stats.bars.y)[-1].tolist() == [1, 0, 1]  # the bars of all predict images
    wproject.threshold = 0.1
    stats._throttle.flush()
    assert stats.totals.tolist() == [2, 0, 1]
    stats.image = big  # "this image" counts the image given
    stats._throttle.flush()
    assert f"this image = {big.name}" in stats.children[0].value


def test_scorecard_plots_f1_against_the_threshold_and_explains_each_figure() -> None:
    from deepblock_nb.widgets.scorecard import EXPLAIN

    report = _report()
    card = Scorecard(report)
    c = report.curves
    assert np.asarray(card.f1_lines.x).shape == (3, len(c.confidence))
    assert np.allclose(card.f1_lines.x[0], c.confidence)
    assert np.allclose(card.f1_lines.y[0], c.f1_conf_all) and np.allclose(
        card.f1_lines.y[2], c.recall_conf_all
    )
    assert list(card.threshold_rule.x) == [report.threshold] * 2
    assert sorted(ax.orientation for ax in card.f1_figure.axes) == ["horizontal", "vertical"]
    for attr in ("map50", "recall", "f1"):
        assert f"title='{html.escape(EXPLAIN[attr], quote=True)}'" in card.headline.value
    card.report = None
    assert len(card.f1_lines.y) == 0


def _evaluated(project: dbn.Project) -> tuple[object, object]:
    """Move the first train image to evaluate and store an evaluation with one confusion, one
    false positive and the other boxes found (the way project.evaluate stores it)."""
    from tests.project.test_evaluation_errors import store_evaluation

    rec = project.set_split(project.images("train")[0], "evaluate")
    truth = project.annotations(rec)
    cls = truth.class_id.copy()
    cls[0] = 2 if cls[0] != 2 else 3  # the first box taken for another category
    xyxy = np.r_[truth.xyxy, [[350, 250, 390, 290]]]
    scores = np.r_[np.full(len(cls), 0.9), 0.95]  # the best-F1 threshold keeps the false positive
    run_id = project._store.runs.create("test", {})
    report = store_evaluation(project, run_id, {rec.id: Detections(xyxy, np.r_[cls, 1], scores)})
    return rec, report


def test_evaluate_panel_shows_the_matrix_the_errors_and_applies_the_threshold(wproject: dbn.Project) -> None:
    from deepblock_nb.widgets.scorecard import EvaluatePanel

    rec, report = _evaluated(wproject)
    panel = EvaluatePanel(wproject)
    try:
        matrix = wproject.confusion_matrix()
        html_table = panel.scorecard.confusion.value
        assert "<table" in html_table and "background" in html_table and "missed" in html_table
        for name in ("disc", "square", "triangle"):
            assert f">{name}</th>" in html_table
        assert (
            int(matrix.loc["background"].sum()) == 1 and int(np.trace(matrix.to_numpy()[:3, :3])) == report.tp
        )  # type: ignore[attr-defined]
        # the error list: sorted by score, filtered by kind, a click reaches on_error
        labels = [label for label, _ in panel.errors.list.options]
        assert (
            len(labels) == 2 and labels[0].startswith("false positive") and labels[1].startswith("confused")
        )
        panel.errors.kind.value = "false positive"
        assert len(panel.errors.list.options) == 1
        picked: list[object] = []
        panel.on_error = picked.append
        panel.errors.list.value = panel.errors.list.options[0][1]
        assert picked[0]["kind"] == "false positive" and picked[0]["image"] == rec.id  # type: ignore[index]
        assert picked[0]["predicted_xyxy"] == pytest.approx((350, 250, 390, 290))  # type: ignore[index]
        # the apply button
        wproject.threshold = 0.05
        assert not panel.apply_button.disabled
        panel.apply_button.click()
        assert wproject.threshold == report.best_threshold  # type: ignore[attr-defined]
    finally:
        panel.close()


def test_error_list_shows_a_page_of_at_most_100_rows() -> None:
    from deepblock_nb.widgets.scorecard import ErrorList

    n = 250
    frame = pd.DataFrame(
        {
            "image": np.ones(n, np.int64),
            "kind": ["false positive"] * (n - 1) + ["missed"],
            "truth": [None] * (n - 1) + ["disc"],
            "predicted": ["disc"] * (n - 1) + [None],
            "score": np.r_[np.linspace(0.99, 0.5, n - 1), np.nan],
            "truth_xyxy": [None] * n,
            "predicted_xyxy": [(0.0, 0.0, 1.0, 1.0)] * n,
        }
    )
    errors = ErrorList()
    errors.set_errors(frame)
    assert len(errors.list.options) == 100 and errors.prev_button.disabled
    assert "250 errors, page 1/3" in errors.summary.value
    errors.next_button.click()
    errors.next_button.click()
    assert len(errors.list.options) == 50 and errors.next_button.disabled
    assert errors.list.options[-1][0].startswith("missed")
    errors.kind.value = "missed"
    assert len(errors.list.options) == 1 and errors.page == 0
    errors.set_errors(None)
    assert errors.list.options == ()
