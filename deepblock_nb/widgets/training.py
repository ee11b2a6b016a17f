"""TrainingPanel: start, stop and resume training; progress with an ETA, live curves, past runs."""

from __future__ import annotations

import html
import math
import threading
import time
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from deepblock_nb.ml.presets import AUTO, preset_summaries
from deepblock_nb.widgets._util import JobPanel, Subscriptions, Throttle, error_html, follow_job, guarded

__all__ = ["EPOCHS_HELP", "TrainingPanel", "curves_from_history", "eta_text", "runs_html"]

DEVICES = ("auto", "cpu", "cuda", "mps")
EPOCHS_HELP = (
    "0 = automatic: trains until the held-out score stops rising. "
    "About 15 epochs suit ~1,000 boxes per category; fewer labels need more epochs."
)
# what the panel says for each job status (shown upper-case), and the colour it says it in
STATE_WORDS = {
    "queued": ("queued", "#7f8c8d"),
    "running": ("training", "#2471a3"),
    "stopping": ("stopping", "#b9770e"),
    "finished": ("finished", "#1e8449"),
    "stopped": ("stopped", "#b9770e"),
    "failed": ("failed", "#c0392b"),
}
RUN_COLUMNS = {
    "id": "id",
    "status": "status",
    "epochs_done": "epochs",
    "best_score": "best score",
    "model": "model",
    "created": "started",
}


def _small(inner_html: str) -> str:
    # widget HTML inherits a 28 px line height (a widget row's); help text wants its own
    return f"<div style='font-size:90%;line-height:1.35;color:#444'>{inner_html}</div>"


def state_html(word: str, color: str = "#555") -> str:
    """A status word in bold capitals (the text keeps its case; CSS draws the capitals)."""
    return f"<b style='text-transform:uppercase;color:{color}'>{html.escape(word)}</b>"


def _duration(seconds: float) -> str:
    fives = max(5, 5 * math.ceil(seconds / 5))  # whole 5 s steps, rounded up
    if fives < 60:
        return f"{fives} s"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def eta_text(progress: float, elapsed_s: float) -> str:
    """ "about 3 min left" from a job's progress (0..1) and seconds since it started.

    Assumes the rest goes at the pace so far; "" when nothing can be said yet
    (no progress, done, or no time elapsed).
    """
    if not (0.0 < progress < 1.0) or not elapsed_s > 0 or not math.isfinite(elapsed_s):
        return ""
    return f"about {_duration(elapsed_s * (1.0 - progress) / progress)} left"


def runs_html(runs: pd.DataFrame, limit: int = 20) -> str:
    """Past runs as an HTML table, newest first: id, status, epochs, best score, model, started."""
    if runs is None or len(runs) == 0:
        return "<i>no training runs yet</i>"
    table = runs.reindex(columns=list(RUN_COLUMNS)).sort_values("id", ascending=False).head(limit)
    table["best_score"] = [
        "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.3f}"
        for v in table["best_score"]
    ]
    table["epochs_done"] = [
        "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(int(v))
        for v in table["epochs_done"]
    ]
    table["created"] = [
        v.strftime("%Y-%m-%d %H:%M") if isinstance(v, pd.Timestamp) and not pd.isna(v) else ""
        for v in pd.to_datetime(table["created"], errors="coerce")
    ]
    table = table.rename(columns=RUN_COLUMNS)
    more = len(runs) - len(table)
    note = f"<div><i>and {more} older runs (project.runs())</i></div>" if more > 0 else ""
    style = (
        "<style>.deepblock-runs{border-collapse:collapse;line-height:1.3}"
        ".deepblock-runs th,.deepblock-runs td{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}"
        "</style>"
    )
    table_html = table.to_html(index=False, escape=True, border=0, na_rep="", classes="deepblock-runs")
    return style + str(table_html) + note


def curves_from_history(history: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The loss and score curves in a job's history, ``{"loss": (x, y), "score": (x, y)}``.

    x is the optimiser step when the rows have one, else the epoch, else the row
    number. Loss comes from step rows (``kind == "step"``) when there are any,
    else from every row with a loss; score from rows with a score. Missing columns
    and NaN values are skipped.
    """
    empty = (np.zeros(0), np.zeros(0))
    out = {"loss": empty, "score": empty}
    if history is None or len(history) == 0:
        return out
    h = history.reset_index(drop=True)
    x_all = np.arange(len(h), dtype=np.float64)
    for col in ("epoch", "step"):  # step wins where a row has one
        if col in h:
            v = pd.to_numeric(h[col], errors="coerce").to_numpy(np.float64)
            x_all = np.where(np.isfinite(v), v, x_all)
    rows = np.ones(len(h), bool)
    if "kind" in h and (h["kind"] == "step").any():
        rows = (h["kind"] == "step").to_numpy()
    for name, mask in (("loss", rows), ("score", np.ones(len(h), bool))):
        if name not in h:
            continue
        y = pd.to_numeric(h[name], errors="coerce").to_numpy(np.float64)
        keep = mask & np.isfinite(y) & np.isfinite(x_all)
        out[name] = (x_all[keep], y[keep])
    return out


def stored_history(project: Any, run_id: int) -> pd.DataFrame:
    """A run's history rows as stored in the project (every run, also one of an earlier session)."""
    return project.run_history(int(run_id))  # type: ignore[no-any-return]


class TrainingPanel(JobPanel):
    """Epochs, model preset, Train / Stop / Resume, progress with an ETA, live curves,
    status, and a table of past runs.

    Follows the project's latest training job, also one started from a cell; opened
    on a project without one in this session, it shows the newest stored run's
    curves. Curves update from the job's "history" events at most ``1 / interval``
    times a second (``hold_sync`` batches each update); the runs table follows the
    project's "runs" events, throttled too.
    """

    def __init__(self, project: Any, interval: float = 0.1, **kwargs: Any) -> None:
        self.project = project
        self.job: Any = None
        self.shown_run: int | None = None  # the stored run on show while no job is followed
        self._job_subs = Subscriptions()
        self._subs = Subscriptions()
        self._throttle = Throttle(self._refresh, interval)
        self._announced: Any = None  # the latest training job a "jobs" event reported
        self._attach_lock = threading.Lock()  # start() (main thread) and the UI thread both attach
        self._jobs_throttle = self._subs.own(Throttle(self._follow_announced, interval))
        self._runs_throttle = self._subs.own(Throttle(self.refresh_runs, max(interval, 0.5)))

        # 0: the trainer decides (ends once the held-out score stops rising)
        self.epochs = W.BoundedIntText(
            value=0,
            min=0,
            max=10_000,
            description="epochs (0 = auto)",
            tooltip=EPOCHS_HELP,
            style={"description_width": "initial"},
            layout=W.Layout(width="200px"),
        )
        self.epochs_help = W.HTML(_small(html.escape(EPOCHS_HELP)))
        self._summaries = preset_summaries()
        self.model = W.Dropdown(
            options=list(self._summaries),
            value=AUTO,
            description="model",
            tooltip=self._summaries[AUTO],
            layout=W.Layout(width="280px"),
        )
        self.model_help = W.HTML()
        self.device = W.Dropdown(
            options=list(DEVICES), value="auto", description="device", layout=W.Layout(width="180px")
        )
        self.train_button = W.Button(description="Train", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.resume_button = W.Button(
            description="Resume", icon="forward", tooltip="continue the last run from its checkpoint"
        )
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="360px"))
        self.eta = W.HTML(layout=W.Layout(width="auto", flex="0 0 auto"))
        self.status = W.HTML(state_html("idle") + " no training yet")
        self.runs_table = W.HTML()

        x = bq.LinearScale()
        y_loss, y_score = bq.LinearScale(), bq.LinearScale(min=0.0, max=1.0)
        self.loss_line = bq.Lines(
            x=np.zeros(0),
            y=np.zeros(0),
            scales={"x": x, "y": y_loss},
            colors=["#1f77b4"],
            labels=["loss"],
            display_legend=True,
        )
        self.score_line = bq.Lines(
            x=np.zeros(0),
            y=np.zeros(0),
            scales={"x": x, "y": y_score},
            colors=["#ff7f0e"],
            labels=["training score (mAP50)"],
            display_legend=True,
            marker="circle",
        )
        self.figure = bq.Figure(
            marks=[self.loss_line, self.score_line],
            axes=[
                bq.Axis(scale=x, label="step"),
                bq.Axis(scale=y_loss, label="loss", side="left"),
                bq.Axis(scale=y_score, label="score", side="right"),
            ],
            title="Training",
            legend_location="top-right",
            layout=W.Layout(width="720px", height="340px"),
            fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 60},
        )

        self.train_button.on_click(guarded(lambda _: self.start(resume=False), self._error))
        self.resume_button.on_click(guarded(lambda _: self.start(resume=True), self._error))
        self.stop_button.on_click(guarded(lambda _: self.stop(), self._error))
        self.model.observe(lambda c: self._on_model(c["new"]), "value")
        self._on_model(self.model.value)
        self._subs.add(project.on("jobs", self._on_jobs))
        self._subs.add(project.on("runs", lambda **_: self._runs_throttle()))

        super().__init__(
            [
                W.HBox([self.epochs, self.model, self.device]),
                self.epochs_help,
                self.model_help,
                W.HBox([self.train_button, self.stop_button, self.resume_button, self.progress, self.eta]),
                self.status,
                self.figure,
                W.HTML("<b>Past runs</b>"),
                self.runs_table,
            ],
            **kwargs,
        )
        self.refresh_runs()
        trained = [j for j in project.jobs if j.kind == "train"]
        if trained:
            self.attach(trained[-1])
        else:
            self.show_stored_run()

    @property
    def state(self) -> str:
        """What the status line says: IDLE, QUEUED, TRAINING, STOPPING, STOPPED, FAILED or FINISHED."""
        job = self.job
        if job is None:
            if self.shown_run is None:
                return "IDLE"
            status = str(self.project.runs().set_index("id").loc[self.shown_run, "status"])
            return STATE_WORDS.get(status, (status, ""))[0].upper()
        return STATE_WORDS[job.status.value][0].upper()

    # -- actions -------------------------------------------------------------------
    def start(self, resume: bool = False) -> Any:
        """Start (or resume) training in the background with the chosen settings; returns the job."""
        job = self.project.train(
            epochs=int(self.epochs.value) or None,
            model=self.model.value,
            device=self.device.value,
            resume=resume,
        )
        self.attach(job)
        return job

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()
            self._throttle.flush()

    def attach(self, job: Any) -> None:
        """Follow a training job: its history, progress and status."""
        with self._attach_lock:
            if job is self.job:
                return
            self.job = job
            self.shown_run = None
        follow_job(job, self._job_subs, self._throttle, events=("history", "progress"))

    def show_stored_run(self, run_id: int | None = None) -> None:
        """Show a stored run's curves and status (default: the newest run); no job is followed."""
        runs = self.project.runs()
        if not len(runs):
            return
        run_id = int(runs["id"].max()) if run_id is None else int(run_id)
        row = runs.set_index("id").loc[run_id]
        curves = curves_from_history(stored_history(self.project, run_id))
        status = str(row["status"])
        word, color = STATE_WORDS.get(status, (status, "#555"))
        best = row.get("best_score")
        best_text = "" if best is None or pd.isna(best) else f", best score {float(best):.3f}"
        epochs = row.get("epochs_done")
        epochs_text = "" if epochs is None or pd.isna(epochs) else f": {int(epochs)} epochs"
        self.shown_run = run_id
        with self.hold_sync(), self.loss_line.hold_sync(), self.score_line.hold_sync():
            self.loss_line.x, self.loss_line.y = curves["loss"]
            self.score_line.x, self.score_line.y = curves["score"]
            self.progress.value = 1.0 if status == "finished" else 0.0
            self.progress.bar_style = _BAR_STYLES.get(status, "")
            self.status.value = (
                f"{state_html(word, color)} run {run_id} ({html.escape(str(row['model']))}){epochs_text}"
                f"{best_text}"
            )

    def _on_model(self, name: str) -> None:
        summary = self._summaries.get(name, "")
        self.model.tooltip = summary
        self.model_help.value = _small(f"model <b>{html.escape(name)}</b>: {html.escape(summary)}")

    def _on_jobs(self, topic: str, job: Any = None, **payload: Any) -> None:
        # any thread (a job's status change): note the job, attach it on the UI thread
        if job is not None and job.kind == "train" and job is not self.job and not job.status.done:
            self._announced = job
            self._jobs_throttle()

    def _follow_announced(self) -> None:
        job = self._announced
        if job is not None:
            self.attach(job)

    # -- display -------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Redraw the table of past runs from ``project.runs()``."""
        self.runs_table.value = runs_html(self.project.runs())

    def _refresh(self) -> None:
        job = self.job
        if job is None:
            return
        curves = curves_from_history(job.history)
        status = job.status
        done = status.done
        word, color = STATE_WORDS[status.value]
        text = f"{state_html(word, color)} {html.escape(str(job.message))}"
        if job.error is not None:
            text = f"{state_html(word, color)} " + error_html(job.error)
        progress = float(job.progress) if not math.isnan(job.progress) else 0.0
        if status.value == "running" and job.started is not None:
            eta = eta_text(progress, time.time() - job.started)
        elif status.value == "finished" and job.started is not None and job.ended is not None:
            eta = f"took {_duration(job.ended - job.started)}"
        else:
            eta = ""
        with self.hold_sync(), self.loss_line.hold_sync(), self.score_line.hold_sync():
            self.loss_line.x, self.loss_line.y = curves["loss"]
            self.score_line.x, self.score_line.y = curves["score"]
            self.progress.value = progress
            self.progress.bar_style = _BAR_STYLES.get(status.value, "")
            self.eta.value = f"<span style='white-space:nowrap'>{html.escape(eta)}</span>" if eta else ""
            self.status.value = text
            self.train_button.disabled = not done
            self.resume_button.disabled = not done
            self.stop_button.disabled = done or status.value == "stopping"


_BAR_STYLES = {"finished": "success", "failed": "danger", "stopped": "warning"}
