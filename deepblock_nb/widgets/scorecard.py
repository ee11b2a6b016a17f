"""Scorecard (renders an EvaluationReport) and EvaluatePanel (runs ``project.evaluate``)."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from deepblock_nb.widgets._util import (
    JobPanel,
    Subscriptions,
    Throttle,
    error_html,
    follow_job,
    guarded,
    info_html,
)

__all__ = ["ErrorList", "EvaluatePanel", "Scorecard"]

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "–" if math.isnan(f) or f < 0 else f"{f:.3f}"


#: one line per headline figure, shown on hover (an HTML title)
EXPLAIN = {
    "map50": "mean over categories of the average precision, a prediction counting when it overlaps a "
    "true box of its category with IoU >= 0.5 (COCO)",
    "map": "average precision averaged over IoU thresholds 0.5, 0.55, ..., 0.95 and categories (COCO): "
    "rewards tight boxes",
    "precision": "of the boxes predicted at the threshold, the share that match a true box",
    "recall": "of the true boxes, the share that a prediction at the threshold found",
    "f1": "the harmonic mean of precision and recall at the threshold: 2 TP / (2 TP + FP + FN)",
}
#: how the marked error boxes are drawn in the Evaluate viewer: the truth solid, the prediction dashed
TRUTH_STYLE = {"color": "#00e5ff", "line_width": 3.0}
PREDICTED_STYLE = {"color": "#ffea00", "line_width": 3.0, "dash": [8, 5]}
ERROR_PAGE = 100


class Scorecard(W.VBox):
    """Headline numbers, a per-category table, the precision-recall curves and the
    precision, recall and F1 against the confidence threshold of a report, and the
    confusion matrix of its errors (``analysis``, from ``project.confusion_matrix()``).

    The headline says at which confidence threshold its precision, recall and F1 are
    (the best-F1 one, by default) and gives them at the user's threshold beside it
    when the report holds them (``report.at_threshold``); hovering a figure explains
    it. It only displays what the :class:`EvaluationReport` and the matrix hold; it
    computes nothing.
    """

    HEADLINE = (
        ("mAP50", "map50"),
        ("mAP50-95", "map"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("F1", "f1"),
    )

    def __init__(self, report: Any = None, **kwargs: Any) -> None:
        self.headline = W.HTML()
        self.table = W.HTML()
        self.x = bq.LinearScale(min=0.0, max=1.0)
        self.y = bq.LinearScale(min=0.0, max=1.02)
        self.pr_lines = bq.Lines(
            x=np.zeros(0), y=np.zeros(0), scales={"x": self.x, "y": self.y}, display_legend=True
        )
        self.figure = bq.Figure(
            marks=[self.pr_lines],
            axes=[
                bq.Axis(scale=self.x, label="recall"),
                bq.Axis(scale=self.y, label="precision", side="left"),
            ],
            title="Precision-recall (IoU 0.5)",
            legend_location="bottom-left",
            layout=W.Layout(width="560px", height="380px"),
        )
        self.tx = bq.LinearScale(min=0.0, max=1.0)
        self.ty = bq.LinearScale(min=0.0, max=1.02)
        # F1, precision and recall over all categories against the confidence threshold
        self.f1_lines = bq.Lines(
            x=np.zeros(0), y=np.zeros(0), scales={"x": self.tx, "y": self.ty}, display_legend=True,
            labels=["F1", "precision", "recall"], colors=["#000000", "#4363d8", "#e6194b"],
        )  # fmt: skip
        self.threshold_rule = bq.Lines(
            x=np.zeros(0),
            y=np.zeros(0),
            scales={"x": self.tx, "y": self.ty},
            colors=["#888888"],
            line_style="dashed",
        )
        self.f1_figure = bq.Figure(
            marks=[self.f1_lines, self.threshold_rule],
            axes=[
                bq.Axis(scale=self.tx, label="confidence threshold"),
                bq.Axis(scale=self.ty, label="score", side="left"),
            ],
            title="F1 against the threshold (IoU 0.5)",
            legend_location="bottom-left",
            layout=W.Layout(width="560px", height="380px"),
        )
        self.confusion = W.HTML()
        super().__init__(
            [self.headline, self.table, W.HBox([self.figure, self.f1_figure]), self.confusion], **kwargs
        )
        self._analysis: Any = None
        self.report = report

    @property
    def analysis(self) -> Any:
        """The confusion matrix shown (a DataFrame as ``project.confusion_matrix()`` gives), or None."""
        return self._analysis

    @analysis.setter
    def analysis(self, matrix: Any) -> None:
        self._analysis = matrix
        self.confusion.value = "" if matrix is None else confusion_html(matrix)

    @property
    def report(self) -> Any:
        return self._report

    @report.setter
    def report(self, report: Any) -> None:
        self._report = report
        self._render()

    def _render(self) -> None:
        r = self._report
        if r is None:
            with self.pr_lines.hold_sync():
                self.pr_lines.x, self.pr_lines.y, self.pr_lines.labels = np.zeros(0), np.zeros(0), []
            self.headline.value = info_html("no evaluation yet")
            self.table.value = ""
            self._plot_f1(None)
            return
        cells = "".join(
            f"<div title='{html.escape(EXPLAIN.get(attr, ''), quote=True)}' "
            f"style='display:inline-block;margin:0 18px 6px 0;text-align:center'>"
            f"<div style='font-size:22px;font-weight:600'>{_fmt(getattr(r, attr, float('nan')))}</div>"
            f"<div style='color:#666'>{label}</div></div>"
            for label, attr in self.HEADLINE
        )
        n = getattr(r, "n_images", None)
        self.headline.value = (
            cells
            + _threshold_lines(r)
            + (f"<div style='color:#666'>{n} images</div>" if n is not None else "")
        )
        frame = r.per_class
        # one header row: the category name is the row's label, its id not shown
        self.table.value = frame.to_html(
            index=False, float_format=lambda v: _fmt(v), border=0, classes="deepblock-table"
        )
        self._plot_pr(r)
        self._plot_f1(r)

    def _plot_f1(self, r: Any) -> None:
        curves = getattr(r, "curves", None)
        with self.f1_lines.hold_sync(), self.threshold_rule.hold_sync():
            if curves is None:
                self.f1_lines.x, self.f1_lines.y = np.zeros(0), np.zeros(0)
                self.threshold_rule.x, self.threshold_rule.y = np.zeros(0), np.zeros(0)
                return
            x = np.asarray(curves.confidence, dtype=np.float64)
            self.f1_lines.x = np.stack([x, x, x])
            self.f1_lines.y = np.stack(
                [
                    np.asarray(v, dtype=np.float64)
                    for v in (curves.f1_conf_all, curves.precision_conf_all, curves.recall_conf_all)
                ]
            )
            t = float(r.threshold)
            self.threshold_rule.x, self.threshold_rule.y = np.array([t, t]), np.array([0.0, 1.0])

    def _plot_pr(self, r: Any) -> None:
        curves = getattr(r, "curves", None)
        xs, ys, labels, colors = [], [], [], []
        if curves is not None:
            names = list(r.per_class["name"]) if "name" in r.per_class else []
            precision = np.asarray(curves.precision, dtype=np.float64).reshape(-1, len(curves.recall))
            for k, row in enumerate(precision):
                if np.all(np.isnan(row)):
                    continue  # a category without ground truth has no curve
                xs.append(np.asarray(curves.recall, dtype=np.float64))
                ys.append(np.nan_to_num(row, nan=0.0))
                labels.append(names[k] if k < len(names) else str(k))
                colors.append(_PALETTE[k % len(_PALETTE)])
        with self.pr_lines.hold_sync():
            if xs:
                self.pr_lines.x, self.pr_lines.y = np.stack(xs), np.stack(ys)
            else:
                self.pr_lines.x, self.pr_lines.y = np.zeros(0), np.zeros(0)
            self.pr_lines.labels, self.pr_lines.colors = labels, colors or ["#1f77b4"]


def _threshold_lines(r: Any) -> str:
    """Where the headline precision, recall and F1 are, and the figures at the user's threshold."""
    label = getattr(r, "threshold_label", None)
    if label is None:
        return ""
    line = f"precision, recall and F1 {html.escape(str(label))}"
    if getattr(r, "threshold_rule", None) != "best F1":
        line += f" (best F1 {_fmt(r.best_f1)} at {float(r.best_threshold):.2f})"
    out = f"<div class='deepblock-threshold'>{line}</div>"
    at = getattr(r, "at_threshold", None)
    if at is not None:
        out += (
            f"<div class='deepblock-at-threshold' style='color:#666'>at your threshold {float(at.threshold):.2f}: "
            f"P {_fmt(at.precision)} R {_fmt(at.recall)} F1 {_fmt(at.f1)} "
            f"({int(at.tp)} TP, {int(at.fp)} FP, {int(at.fn)} FN)</div>"
        )
    return out


def confusion_html(matrix: Any) -> str:
    """The confusion matrix (rows the true category and "background", columns the predicted
    one and "missed") as an HTML table; the diagonal (the true positives) in bold."""
    names_r, names_c = [str(i) for i in matrix.index], [str(c) for c in matrix.columns]
    counts = np.asarray(matrix.to_numpy(), dtype=np.int64)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in names_c)
    body = ""
    for i, name in enumerate(names_r):
        cells = "".join(
            f"<td style='text-align:right;{'font-weight:600' if names_r[i] == names_c[j] else ''}'>"
            f"{int(counts[i, j])}</td>"
            for j in range(len(names_c))
        )
        body += f"<tr><th style='text-align:left'>{html.escape(name)}</th>{cells}</tr>"
    return (
        "<div><b>Confusion matrix</b> <span style='color:#666'>(rows: truth, columns: predicted)</span></div>"
        f"<table class='deepblock-table deepblock-confusion'><tr><th>truth / predicted</th>{head}</tr>"
        f"{body}</table>"
    )


class ErrorList(W.VBox):
    """The errors of an evaluation (``project.evaluation_errors()``), a page at a time, by kind.

    A click on a row calls ``on_pick(row)`` with the table's row (a pandas Series:
    ``image``, ``kind``, ``truth``, ``predicted``, ``score``, the boxes ``xyxy``).
    """

    def __init__(self, on_pick: Callable[[Any], None] | None = None, page_size: int = ERROR_PAGE) -> None:
        self.on_pick = on_pick
        self.page_size = int(page_size)
        self.page = 0
        self.frame: Any = None
        self.kind = W.Dropdown(
            description="errors",
            options=[
                ("all", "all"),
                ("false positives", "false positive"),
                ("confused", "confused"),
                ("missed", "missed"),
            ],
            value="all",
            layout=W.Layout(width="240px"),
        )
        self.list = W.Select(rows=10, layout=W.Layout(width="640px"))
        self.prev_button = W.Button(description="◀", layout=W.Layout(width="40px"))
        self.next_button = W.Button(description="▶", layout=W.Layout(width="40px"))
        self.summary = W.HTML()
        self.kind.observe(lambda _: self._turn(0, absolute=True), "value")
        self.prev_button.on_click(lambda _: self._turn(-1))
        self.next_button.on_click(lambda _: self._turn(1))
        self.list.observe(self._on_row, "value")
        super().__init__([W.HBox([self.kind, self.prev_button, self.next_button, self.summary]), self.list])

    def set_errors(self, frame: Any) -> None:
        """Show an error table (None clears), from its first page."""
        self.frame = frame
        self._turn(0, absolute=True)

    def rows(self) -> Any:
        """The rows the filter keeps, in the table's order (by score; missed ones last)."""
        f = self.frame
        if f is None or self.kind.value == "all":
            return f
        return f[f["kind"] == self.kind.value]

    def _turn(self, delta: int, absolute: bool = False) -> None:
        rows = self.rows()
        n = 0 if rows is None else len(rows)
        pages = max(1, -(-n // self.page_size))
        self.page = min(max(0, delta if absolute else self.page + delta), pages - 1)
        lo = self.page * self.page_size
        page = rows.iloc[lo : lo + self.page_size] if rows is not None else None
        self.list.value = None
        self.list.options = [] if page is None else [(_row_label(r), int(i)) for i, r in page.iterrows()]
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        self.summary.value = (
            ""
            if rows is None
            else f"{n} errors{'' if n <= self.page_size else f', page {self.page + 1}/{pages}'}"
        )

    def _on_row(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and self.frame is not None and self.on_pick is not None:
            self.on_pick(self.frame.loc[change["new"]])


def _row_label(r: Any) -> str:
    score = "" if r["score"] != r["score"] else f" {float(r['score']):.2f}"  # NaN for a missed box
    what = {
        "false positive": f"{r['predicted']} where there is nothing",
        "confused": f"{r['truth']} taken for {r['predicted']}",
        "missed": f"{r['truth']} missed",
    }.get(str(r["kind"]), str(r["kind"]))
    return f"{r['kind']}: {what}{score} in {r.get('name', r['image'])}"


class EvaluatePanel(JobPanel):
    """An Evaluate button over the project's evaluate split, with progress, a Scorecard
    and the list of the errors at the report's threshold.

    "Apply threshold to Predict" sets ``project.threshold`` to the report's best-F1
    threshold. A click on an error calls ``on_error(row)`` (a row of
    ``project.evaluation_errors()``) when set.
    """

    def __init__(self, project: Any, interval: float = 0.1, **kwargs: Any) -> None:
        self.project = project
        self.job: Any = None
        self._job_subs = Subscriptions()
        self._throttle = Throttle(self._refresh, interval)
        self.run = W.Dropdown(
            description="run", options=[("latest", 0)], value=0, layout=W.Layout(width="260px")
        )
        self.evaluate_button = W.Button(description="Evaluate", icon="check", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.status = W.HTML()
        self.scorecard = Scorecard()
        self.on_error: Callable[[Any], None] | None = None
        self.errors = ErrorList(on_pick=guarded(self._on_error_row, self._error))
        self.apply_button = W.Button(
            description="Apply threshold to Predict",
            icon="check",
            disabled=True,
            tooltip="set the Predict threshold to the best-F1 threshold of this evaluation",
            layout=W.Layout(width="auto"),
        )
        self.apply_button.on_click(guarded(lambda _: self.apply_threshold(), self._error))
        self.evaluate_button.on_click(guarded(lambda _: self.start(), self._error))
        self.stop_button.on_click(guarded(lambda _: self.job and self.job.stop(), self._error))
        self._subs = Subscriptions()
        # a training job's "runs" events only queue the refresh on the UI thread
        self._runs_throttle = self._subs.own(Throttle(self.refresh_runs, interval))
        self._subs.add(project.on("runs", lambda **_: self._runs_throttle()))
        super().__init__(
            [
                W.HBox([self.run, self.evaluate_button, self.stop_button, self.progress]),
                self.status,
                self.scorecard,
                self.apply_button,
                self.errors,
            ],
            **kwargs,
        )
        self.refresh_runs()
        self._show_stored()

    def show_report(self, report: Any) -> None:
        """Show a report, and its errors and confusion matrix at its threshold (the newest evaluation's)."""
        self.scorecard.report = report
        self.apply_button.disabled = report is None
        if report is None:
            self.errors.set_errors(None)
            self.scorecard.analysis = None
            return
        t = float(report.threshold)
        try:
            self.errors.set_errors(self.project.evaluation_errors(threshold=t))
            self.scorecard.analysis = self.project.confusion_matrix(threshold=t)
        except Exception as exc:  # an evaluation stored by an older version, say: the report stays
            self.errors.set_errors(None)
            self.scorecard.analysis = None
            self._error(exc)

    def apply_threshold(self) -> None:
        """``project.threshold = report.best_threshold`` (what Predict filters by)."""
        report = self.scorecard.report
        if report is None:
            self._error("no evaluation yet: evaluate first")
            return
        self.project.threshold = float(report.best_threshold)
        self.status.value = info_html(
            f"Predict now keeps boxes scoring >= {float(report.best_threshold):.2f}"
        )

    def _on_error_row(self, row: Any) -> None:
        if self.on_error is not None:
            self.on_error(row)

    def _show_stored(self) -> None:
        """Show the newest stored evaluation, so a reopened notebook keeps its scorecard."""
        try:
            reports = self.project.evaluations()
        except Exception:  # none stored, or an unreadable record: start empty
            return
        if reports:
            self.show_report(reports[-1])
            self.status.value = info_html("the latest stored evaluation")

    def refresh_runs(self) -> None:
        try:
            runs = self.project.runs()
        except Exception:  # no training part available yet
            return
        options: list[tuple[str, int]] = [("latest", 0)]  # 0: a Dropdown reads None as "no selection"
        if runs is not None and len(runs):
            ids = runs["id"] if "id" in runs else runs.index
            options += [(f"run {int(i)}", int(i)) for i in ids]
        current = self.run.value
        self.run.options = options
        self.run.value = current if current in [v for _, v in options] else 0

    def start(self) -> Any:
        job = self.project.evaluate(run=self.run.value or None)
        self.job = job
        follow_job(job, self._job_subs, self._throttle)
        return job

    def _refresh(self) -> None:
        job = self.job
        if job is None:
            return
        done = job.status.done
        self.progress.value = float(job.progress)
        self.evaluate_button.disabled = not done
        self.stop_button.disabled = done
        if job.error is not None:
            self.status.value = error_html(job.error)
        else:
            self.status.value = f"<b>{job.status.value}</b> {html.escape(str(job.message))}"
        if done and job.result is not None and job.result is not self.scorecard.report:
            self.show_report(job.result)
