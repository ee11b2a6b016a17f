"""Scorecard (renders an EvaluationReport) and EvaluatePanel (runs ``project.evaluate``)."""

from __future__ import annotations

import html
import math
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

__all__ = ["EvaluatePanel", "Scorecard"]

_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "–" if math.isnan(f) or f < 0 else f"{f:.3f}"


class Scorecard(W.VBox):
    """Headline numbers, a per-category table and the precision-recall curves of a report.

    The headline says at which confidence threshold its precision, recall and F1 are
    (the best-F1 one, by default) and gives them at the user's threshold beside it
    when the report holds them (``report.at_threshold``). It only displays what the
    :class:`EvaluationReport` holds; it computes nothing.
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
            axes=[bq.Axis(scale=self.x, label="recall"), bq.Axis(scale=self.y, label="precision", orientation="vertical")],
            title="Precision-recall (IoU 0.5)",
            legend_location="bottom-left",
            layout=W.Layout(width="560px", height="380px"),
        )
        super().__init__([self.headline, self.table, self.figure], **kwargs)
        self.report = report

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
            return
        cells = "".join(
            f"<div style='display:inline-block;margin:0 18px 6px 0;text-align:center'>"
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
        self.table.value = frame.to_html(float_format=lambda v: _fmt(v), border=0, classes="deepblock-table")
        self._plot_pr(r)

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


class EvaluatePanel(JobPanel):
    """An Evaluate button over the project's evaluate split, with progress and a Scorecard."""

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
            ],
            **kwargs,
        )
        self.refresh_runs()
        self._show_stored()

    def _show_stored(self) -> None:
        """Show the newest stored evaluation, so a reopened notebook keeps its scorecard."""
        try:
            reports = self.project.evaluations()
        except Exception:  # none stored, or an unreadable record: start empty
            return
        if reports:
            self.scorecard.report = reports[-1]
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
            self.scorecard.report = job.result
