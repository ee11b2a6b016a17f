"""TrainingPanel: start, stop and resume training; live loss and score curves."""

from __future__ import annotations

import html
import math
import threading
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import pandas as pd

from deepblock_nb.widgets._util import JobPanel, Subscriptions, Throttle, error_html, follow_job, guarded

__all__ = ["MODEL_PRESETS", "TrainingPanel", "curves_from_history"]

# The names ``project.train(model=...)`` accepts (see ml/models.py); "auto" picks
# the small preset on a CPU.
MODEL_PRESETS = (
    "auto",
    "small",
    "ssdlite",
    "fcos_mobilenet_v2",
    "fcos_mobilenet_v3",
    "fasterrcnn_mobilenet_v3",
    "fasterrcnn_resnet50_v2",
    "retinanet_resnet50_v2",
    "fcos_resnet50",
)
DEVICES = ("auto", "cpu", "cuda", "mps")


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


class TrainingPanel(JobPanel):
    """Epochs, model preset, Train / Stop / Resume, progress, live curves, status.

    Follows the project's latest training job, also one started from a cell.
    Curves update from the job's "history" events at most ``1 / interval`` times a
    second (``hold_sync`` batches each update).
    """

    def __init__(self, project: Any, interval: float = 0.1, **kwargs: Any) -> None:
        self.project = project
        self.job: Any = None
        self._job_subs = Subscriptions()
        self._subs = Subscriptions()
        self._throttle = Throttle(self._refresh, interval)
        self._announced: Any = None  # the latest training job a "jobs" event reported
        self._attach_lock = threading.Lock()  # start() (main thread) and the UI thread both attach
        self._jobs_throttle = self._subs.own(Throttle(self._follow_announced, interval))

        # 0: the trainer decides (ends once the held-out score stops rising)
        self.epochs = W.BoundedIntText(
            value=0,
            min=0,
            max=10_000,
            description="epochs (0 = auto)",
            tooltip="0 = automatic: trains until the held-out score stops rising",
            style={"description_width": "initial"},
            layout=W.Layout(width="200px"),
        )
        self.model = W.Dropdown(
            options=list(MODEL_PRESETS), value="auto", description="model", layout=W.Layout(width="280px")
        )
        self.device = W.Dropdown(
            options=list(DEVICES), value="auto", description="device", layout=W.Layout(width="180px")
        )
        self.train_button = W.Button(description="Train", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.resume_button = W.Button(
            description="Resume", icon="forward", tooltip="continue the last run from its checkpoint"
        )
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="420px"))
        self.status = W.HTML("no training yet")

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
                bq.Axis(scale=y_loss, label="loss", side="left", orientation="vertical"),
                bq.Axis(scale=y_score, label="score", side="right", orientation="vertical"),
            ],
            title="Training",
            legend_location="top-right",
            layout=W.Layout(width="720px", height="340px"),
            fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 60},
        )

        self.train_button.on_click(guarded(lambda _: self.start(resume=False), self._error))
        self.resume_button.on_click(guarded(lambda _: self.start(resume=True), self._error))
        self.stop_button.on_click(guarded(lambda _: self.stop(), self._error))
        self._subs.add(project.on("jobs", self._on_jobs))

        super().__init__(
            [
                W.HBox([self.epochs, self.model, self.device]),
                W.HBox([self.train_button, self.stop_button, self.resume_button, self.progress]),
                self.status,
                self.figure,
            ],
            **kwargs,
        )
        running = [j for j in project.jobs if j.kind == "train"]
        if running:
            self.attach(running[-1])

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
        follow_job(job, self._job_subs, self._throttle, events=("history", "progress"))

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
    def _refresh(self) -> None:
        job = self.job
        if job is None:
            return
        curves = curves_from_history(job.history)
        status = job.status
        done = status.done
        message = html.escape(str(job.message))
        text = f"<b>{status.value}</b> {message}"
        if job.error is not None:
            text = f"<b>{status.value}</b> " + error_html(job.error)
        with self.hold_sync(), self.loss_line.hold_sync(), self.score_line.hold_sync():
            self.loss_line.x, self.loss_line.y = curves["loss"]
            self.score_line.x, self.score_line.y = curves["score"]
            self.progress.value = float(job.progress) if not math.isnan(job.progress) else 0.0
            self.progress.bar_style = {"finished": "success", "failed": "danger", "stopped": "warning"}.get(
                status.value, ""
            )
            self.status.value = text
            self.train_button.disabled = not done
            self.resume_button.disabled = not done
            self.stop_button.disabled = done or status.value == "stopping"
