"""EvaluationReport: tables, curves, serialisation, plotting, and the public alias."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from deepblock_nb.core.detections import Detections
from deepblock_nb.core.metrics import ClassScores, Curves, EvaluationReport, ThresholdScores, evaluate


def sample(seed: int = 0, n_images: int = 10) -> tuple[list[Detections], list[Detections]]:
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        xy = rng.uniform(0, 200, (5, 2))
        g = np.c_[xy, xy + rng.uniform(10, 80, (5, 2))]
        gts.append(Detections(g, rng.integers(1, 4, 5)))
        p = np.r_[g + rng.normal(0, 4, (5, 4)), np.c_[xy[:3] + 30, xy[:3] + 60]]
        preds.append(Detections(p, rng.integers(1, 4, 8), rng.random(8)))
    return gts, preds


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    # category 4 is listed but has no boxes at all
    return evaluate(*sample(), categories={1: "car", 2: "person", 3: "boat", 4: "plane"})


def test_per_class_frame(report: EvaluationReport) -> None:
    pc = report.per_class
    assert list(pc.index) == [1, 2, 3, 4]
    assert list(pc.columns) == ["name", "gt", "ap", "ap50", "precision", "recall", "f1", "tp", "fp", "fn"]
    assert pc["name"].tolist() == ["car", "person", "boat", "plane"]
    assert pc["gt"].sum() == 50
    assert np.isnan(pc["ap"].iloc[3]) and pc["gt"].iloc[3] == 0
    assert (pc["tp"] + pc["fn"] == pc["gt"]).all()
    assert pc["tp"].sum() == report.tp and pc["fp"].sum() == report.fp
    # mAP is the mean AP of the categories with ground truth
    assert report.map == pytest.approx(pc["ap"].dropna().mean(), abs=1e-12)


def test_to_frame_adds_an_overall_row(report: EvaluationReport) -> None:
    frame = report.to_frame()
    assert len(frame) == 5
    last = frame.iloc[-1]
    assert last["name"] == "all" and last["ap"] == report.map and last["f1"] == report.f1
    assert last["tp"] == report.tp and last["gt"] == 50


def test_curves_shapes_and_pycocotools_pr(report: EvaluationReport) -> None:
    cv = report.curves
    assert cv.recall.shape == (101,) and cv.precision.shape == (4, 101)
    assert cv.confidence.shape == (101,) and cv.f1_conf.shape == (4, 101) and cv.f1_conf_all.shape == (101,)
    assert np.all(np.isnan(cv.precision[3]))  # no ground truth
    assert np.all(np.diff(cv.precision[:3], axis=1) <= 0)  # interpolated: non-increasing
    assert np.all(np.diff(cv.recall_conf, axis=1) <= 0)  # recall falls as the threshold rises
    # AP50 is the mean of the interpolated precision
    np.testing.assert_allclose(np.nanmean(cv.precision[:3], axis=1), report.classes.ap50[:3], atol=1e-12)

    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO

    gts, preds = sample()
    anns: list[dict[str, Any]] = []
    res: list[dict[str, Any]] = []
    for i, (g, p) in enumerate(zip(gts, preds)):
        for b, c in zip(g.xywh.tolist(), g.class_id.tolist()):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
        for b, c, s in zip(p.xywh.tolist(), p.class_id.tolist(), p.confidence.tolist()):  # type: ignore[union-attr]
            res.append({"image_id": i, "category_id": c, "bbox": b, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i} for i in range(len(gts))],
            "annotations": anns,
            "categories": [{"id": c} for c in (1, 2, 3, 4)],
        }
        gt.createIndex()
        ev = cocoeval.COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
    ref = ev.eval["precision"][0, :, :, 0, -1].T
    np.testing.assert_array_equal(cv.precision[:3], ref[:3])


def test_to_dict_is_strict_json_and_round_trips(report: EvaluationReport) -> None:
    text = json.dumps(report.to_dict(), allow_nan=False)
    back = EvaluationReport.from_dict(json.loads(text))
    for f in fields(EvaluationReport):
        if f.name not in ("classes", "curves"):
            assert getattr(back, f.name) == getattr(report, f.name), f.name
    for part, cls in (("classes", ClassScores), ("curves", Curves)):
        for f in fields(cls):
            a, b = getattr(getattr(report, part), f.name), getattr(getattr(back, part), f.name)
            if isinstance(a, list):
                assert a == b
            else:
                np.testing.assert_array_equal(a, b)
                assert a.dtype == b.dtype and a.shape == b.shape, f.name
    assert back.per_class.equals(report.per_class)


def test_the_stated_thresholds_round_trip() -> None:
    r = evaluate(*sample(), at_threshold=0.5)
    back = EvaluationReport.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False)))
    assert (back.threshold_rule, back.threshold, back.at_threshold) == (
        r.threshold_rule,
        r.threshold,
        r.at_threshold,
    )
    assert isinstance(back.at_threshold, ThresholdScores) and back.at_threshold.threshold == 0.5
    given = evaluate(*sample(), threshold=0.3)
    back = EvaluationReport.from_dict(given.to_dict())
    assert (back.threshold_rule, back.threshold, back.at_threshold) == ("given", 0.3, None)


def test_a_report_stored_before_the_threshold_rule_still_loads(report: EvaluationReport) -> None:
    data = report.to_dict()
    del data["threshold_rule"], data["at_threshold"]
    old = EvaluationReport.from_dict(data)
    assert old.threshold_rule == "given" and old.at_threshold is None  # scored at the caller's threshold
    assert old.threshold == report.threshold and old.f1 == report.f1


def test_to_frame_states_the_thresholds() -> None:
    r = evaluate(*sample(), at_threshold=0.5)
    frame = r.to_frame()
    assert frame["name"].tolist()[-2:] == ["all", "all at 0.50"] and list(frame.index[-2:]) == [-1, -2]
    assert frame["threshold"].tolist() == [r.threshold] * (len(frame) - 1) + [0.5]
    at = frame.loc[-2]
    assert (at["recall"], at["f1"], at["tp"]) == (r.at_threshold.recall, r.at_threshold.f1, r.at_threshold.tp)  # type: ignore[union-attr]
    assert np.isnan(at["ap"]) and at["gt"] == frame.loc[-1, "gt"]


def test_round_trip_without_categories() -> None:
    empty = evaluate([Detections.empty()], [Detections.empty(with_confidence=True)])
    back = EvaluationReport.from_dict(json.loads(json.dumps(empty.to_dict(), allow_nan=False)))
    assert back.curves.precision.shape == (0, 101) and back.map == -1


def test_from_dict_rejects_unknown_version(report: EvaluationReport) -> None:
    from deepblock_nb.errors import DeepBlockError

    data = report.to_dict()
    data["version"] = 99
    with pytest.raises(DeepBlockError, match="version 99"):
        EvaluationReport.from_dict(data)


def test_plot_returns_a_matplotlib_figure(report: EvaluationReport) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = report.plot()
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 3  # PR curve of each category with ground truth
    assert len(fig.axes[1].lines) >= 5  # F1 per category, overall, best-threshold marker
    assert "best-F1 threshold" in fig.axes[1].get_title()
    given = evaluate(*sample(), threshold=0.3, at_threshold=0.6).plot()
    labels = [line.get_label() for line in given.axes[1].lines]
    assert "headline 0.30" in labels and "your threshold 0.60" in labels
    assert "given threshold 0.30" in given.axes[1].get_title()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_public_alias() -> None:
    import deepblock_nb.metrics as m

    assert m.evaluate is evaluate and m.EvaluationReport is EvaluationReport


def test_core_metrics_imports_numpy_only() -> None:
    code = (
        "import sys, deepblock_nb.core.metrics as m; "
        "bad = [n for n in ('pandas', 'matplotlib', 'bqplot', 'torch') if n in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
