"""App: the whole workbench in one widget, in the product's three stages.

TRAIN (Preprocess: categories, import, labelling; Divide; Train), EVALUATE and
PREDICT, under a header with the project's name and what it is processing.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from deepblock_nb.widgets._boxlist import centred_on
from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html, guarded, info_html
from deepblock_nb.widgets.labeler import Labeler
from deepblock_nb.widgets.predict import PredictPanel, unique_name
from deepblock_nb.widgets.scorecard import PREDICTED_STYLE, TRUTH_STYLE, EvaluatePanel
from deepblock_nb.widgets.statistics import Statistics
from deepblock_nb.widgets.tiling import TilingControls
from deepblock_nb.widgets.training import TrainingPanel

__all__ = ["App", "CategoryEditor", "ImportPanel", "ProcessingHeader"]

STAGES = ("TRAIN", "EVALUATE", "PREDICT")
TRAIN_STEPS = ("Preprocess", "Divide", "Train")
# what the header says a running job of each kind is doing
DOING = {"train": "training", "evaluate": "evaluating", "predict": "predicting"}


class CategoryEditor(W.VBox):
    """Add, rename, recolour and remove categories; shows boxes per category."""

    def __init__(self, project: Any, **kwargs: Any) -> None:
        self.project = project
        self.list = W.Select(rows=6, layout=W.Layout(width="260px"))
        self.name = W.Text(placeholder="category name", layout=W.Layout(width="180px"))
        self.color = W.ColorPicker(value="#e6194b", concise=True, layout=W.Layout(width="40px"))
        # "auto" width: the text decides (a fixed width truncated it to "Ren..." in a narrow column)
        self.add_button = W.Button(description="Add", layout=W.Layout(width="auto"))
        self.rename_button = W.Button(description="Rename", layout=W.Layout(width="auto"))
        self.recolor_button = W.Button(description="Colour", layout=W.Layout(width="auto"))
        self.remove_button = W.Button(description="Remove", layout=W.Layout(width="auto"))
        self.legend = W.HTML()
        self.status = W.HTML()
        self._subs = Subscriptions()
        # project events (any thread) only queue a refresh on the UI thread
        self._throttle = self._subs.own(Throttle(self.refresh, 0.2))
        for topic in ("categories", "annotations"):
            self._subs.add(project.on(topic, lambda **_: self._throttle()))
        err = self._error
        self.add_button.on_click(guarded(lambda _: self._add(), err))
        self.rename_button.on_click(guarded(lambda _: self._rename(), err))
        self.recolor_button.on_click(guarded(lambda _: self._recolor(), err))
        self.remove_button.on_click(guarded(lambda _: self._remove(), err))
        self.list.observe(lambda c: self._on_pick(c["new"]), "value")
        super().__init__(
            [
                W.HTML("<b>Categories</b>"),
                self.legend,
                self.list,
                W.HBox([self.name, self.color]),
                W.HBox(
                    [self.add_button, self.rename_button, self.recolor_button, self.remove_button],
                    layout=W.Layout(flex_flow="row wrap"),
                ),
                self.status,
            ],
            **kwargs,
        )
        self.refresh()

    def refresh(self) -> None:
        counts = self.project.box_counts()
        current = self.list.value
        cats = self.project.categories
        self.list.options = [(f"{c.name} ({counts.get(c.name, 0)} boxes)", c.id) for c in cats]
        self.legend.value = " ".join(
            f"<span style='white-space:nowrap;margin-right:10px'><span style='display:inline-block;"
            f"width:11px;height:11px;background:{c.color};margin-right:4px'></span>{html.escape(c.name)}</span>"
            for c in cats
        )
        ids = [v for _, v in self.list.options]
        self.list.value = current if current in ids else None

    def _selected(self) -> int | None:
        if self.list.value is None:
            self._error("select a category first")
        return self.list.value  # type: ignore[no-any-return]

    def _on_pick(self, cat_id: int | None) -> None:
        if cat_id is not None:
            cat = self.project.category(cat_id)
            self.name.value, self.color.value = cat.name, cat.color

    def _add(self) -> None:
        cat = self.project.add_category(self.name.value, color=self.color.value)
        self.status.value = info_html(f"added {cat.name}")

    def _rename(self) -> None:
        cat = self._selected()
        if cat is not None:
            self.project.rename_category(cat, self.name.value)

    def _recolor(self) -> None:
        cat = self._selected()
        if cat is not None:
            self.project.recolor_category(cat, self.color.value)

    def _remove(self) -> None:
        cat = self._selected()
        if cat is not None:
            self.project.remove_category(cat, force=False)

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)

    def close(self) -> None:
        self._subs.close()
        super().close()


class ImportPanel(W.VBox):
    """Upload images into a split; import annotation files (COCO, YOLO, VOC) from a path."""

    def __init__(self, project: Any, **kwargs: Any) -> None:
        self.project = project
        self.split = W.Dropdown(
            options=["train", "evaluate", "predict"],
            value="train",
            description="split",
            layout=W.Layout(width="180px"),
        )
        self.upload = W.FileUpload(accept="image/*", multiple=True, description="Images")
        self.path = W.Text(
            placeholder="annotations file or folder", description="path", layout=W.Layout(width="360px")
        )
        self.format = W.Dropdown(options=["coco", "yolo", "voc"], value="coco", layout=W.Layout(width="90px"))
        self.images_dir = W.Text(placeholder="images folder (optional)", layout=W.Layout(width="220px"))
        self.import_button = W.Button(description="Import", icon="upload")
        self.status = W.HTML()
        err = self._error
        self.upload.observe(guarded(self._on_upload, err), "value")
        self.import_button.on_click(guarded(lambda _: self._import(), err))
        super().__init__(
            [
                W.HTML("<b>Add images and annotations</b>"),
                W.HBox([self.upload, self.split]),
                W.HBox([self.path, self.format, self.images_dir, self.import_button]),
                self.status,
            ],
            **kwargs,
        )

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        taken = {r.name for r in self.project.images()}
        names = []
        for f in files:
            name = unique_name(str(f["name"]), taken)
            taken.add(name)
            names.append(name)
        records = self.project.add_images(
            [bytes(f["content"]) for f in files], split=self.split.value, names=names
        )
        self.upload.value = ()
        self.status.value = info_html(f"added {len(records)} images to {self.split.value}")

    def _import(self) -> None:
        report = self.project.import_annotations(
            self.path.value.strip(),
            format=self.format.value,
            images_dir=self.images_dir.value.strip() or None,
            split=self.split.value,
        )
        self.status.value = f"<pre>{html.escape(str(report))}</pre>"

    def _error(self, exc: BaseException | str) -> None:
        self.status.value = error_html(exc)


class ProcessingHeader(W.HBox):
    """The project's name and what it is processing: IDLE, or the running job's kind,
    progress and message (and how many jobs wait), following the project's "jobs"
    events and the running job's progress, throttled."""

    def __init__(self, project: Any, interval: float = 0.2, **kwargs: Any) -> None:
        self.project = project
        self.job: Any = None  # the job shown
        path = Path(project.path).resolve()
        self.title = W.HTML(
            f"<span style='white-space:nowrap' title='{html.escape(str(path))}'><b>deepblock</b> &nbsp; "
            f"project <b>{html.escape(path.name)}</b></span>",
            layout=W.Layout(flex="0 0 auto"),
        )
        self.status = W.HTML(_IDLE, layout=W.Layout(flex="1 1 auto"))
        self.progress = W.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=W.Layout(width="160px", visibility="hidden")
        )
        self._subs = Subscriptions()
        self._job_subs = Subscriptions()
        self._throttle = self._subs.own(Throttle(self.refresh, interval))
        self._subs.add(project.on("jobs", lambda **_: self._throttle()))
        super().__init__(
            [self.title, self.status, self.progress],
            layout=W.Layout(align_items="center", justify_content="flex-start", grid_gap="12px"),
            **kwargs,
        )
        self._throttle.flush()  # here and now, never at the same time as the UI thread's run

    def refresh(self) -> None:
        """Show the running (else first queued) job, or IDLE."""
        jobs = [j for j in self.project.jobs if not j.status.done]
        job = jobs[0] if jobs else None
        if job is not self.job:
            self._job_subs.close()
            self.job = job
            if job is not None:
                self._job_subs.add(job.on("progress", lambda _job: self._throttle()))
        if job is None:
            with self.hold_sync():
                self.status.value = _IDLE
                self.progress.layout.visibility = "hidden"
            return
        status = job.status.value
        word = DOING.get(job.kind, job.kind) if status == "running" else f"{job.kind} {status}"
        progress = 0.0 if math.isnan(job.progress) else float(job.progress)
        waiting = len(jobs) - 1
        more = f" &nbsp; <i>{waiting} more waiting</i>" if waiting else ""
        with self.hold_sync():
            self.progress.value = progress
            self.progress.layout.visibility = "visible"
            self.status.value = (
                f"<b style='text-transform:uppercase'>{html.escape(word)}</b> {100 * progress:.0f}% "
                f"{html.escape(str(job.message))}{more}"
            )

    def close(self) -> None:
        self._subs.close()
        self._job_subs.close()
        super().close()


_IDLE = "<b style='text-transform:uppercase;color:#555'>idle</b>"


class App(W.VBox):
    """The whole workbench for one project: ``App(project)`` (also ``project.app()``).

    Three stages (``tabs``: TRAIN, EVALUATE, PREDICT; TRAIN holds ``train_steps``:
    Preprocess, Divide, Train) under a :class:`ProcessingHeader`. The parts share
    the project; every action is a Project method and every view follows the
    project's events, so cells and the App can be used together, and each part
    (``labeler``, ``tiling``, ``training``, ...) also works alone.
    In Evaluate, a click on an error shows its image in ``eval_labeler`` (the
    evaluate split), centred and zoomed on it, the true box solid and the
    predicted one dashed (:data:`~deepblock_nb.widgets.scorecard.TRUTH_STYLE`,
    ``PREDICTED_STYLE``) until another image is shown.
    """

    def __init__(self, project: Any, **kwargs: Any) -> None:
        self.project = project
        self.categories = CategoryEditor(project)
        self.importer = ImportPanel(project)
        self.labeler = Labeler(project)
        self.tiling = TilingControls(project)
        self.training = TrainingPanel(project)
        self.evaluation = EvaluatePanel(project)
        self.eval_labeler = Labeler(project, split="evaluate")
        self.error_marks: tuple[int, Any, Any] | None = None  # (image id, truth xyxy, predicted xyxy)
        self._labeler_overlay = self.eval_labeler.view.overlay
        self.eval_labeler.view.overlay = self._draw_with_marks
        self.eval_labeler.image_list.observe(lambda c: self._on_eval_image(c["new"]), "value")
        self.evaluation.on_error = self.show_error
        self.predict = PredictPanel(project)
        self.statistics = Statistics(project, panel=self.predict)  # "this image": the one Predict shows
        # wraps: in a narrow notebook the importer goes below the categories instead of
        # squeezing them (their list and colour picker were cut off)
        top = W.HBox(
            [self.categories, self.importer], layout=W.Layout(flex_flow="row wrap", grid_gap="8px 24px")
        )
        preprocess = W.VBox([top, self.labeler])
        self.train_steps = W.Tab(children=[preprocess, self.tiling, self.training])
        for i, title in enumerate(TRAIN_STEPS):
            self.train_steps.set_title(i, title)
        self.tabs = W.Tab(  # the three stages
            children=[
                self.train_steps,
                W.VBox([self.evaluation, self.eval_labeler]),
                W.VBox([self.predict, self.statistics]),
            ]
        )
        for i, title in enumerate(STAGES):
            self.tabs.set_title(i, title)
        self.header = ProcessingHeader(project)
        super().__init__([self.header, self.tabs], **kwargs)

    @property
    def stages(self) -> dict[str, W.Widget]:
        """The three stages by title: ``{"TRAIN": ..., "EVALUATE": ..., "PREDICT": ...}``."""
        return {self.tabs.get_title(i): child for i, child in enumerate(self.tabs.children)}

    def show_error(self, row: Any) -> None:
        """Show an error (a row of ``project.evaluation_errors()``) in the Evaluate labeler."""
        lab = self.eval_labeler
        lab.show(int(row["image"]))
        truth, predicted = row["truth_xyxy"], row["predicted_xyxy"]
        self.error_marks = (int(row["image"]), truth, predicted)
        boxes = np.array([b for b in (truth, predicted) if b is not None], np.float64).reshape(-1, 4)
        if lab.view.viewport is None or not len(boxes):
            return
        both = np.r_[boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)]  # the box around both
        lab.view.set_viewport(centred_on(lab.view.viewport, both))

    def _on_eval_image(self, image_id: Any) -> None:
        if self.error_marks is not None and image_id != self.error_marks[0]:
            self.error_marks = None

    def _draw_with_marks(self, view: Any) -> None:
        if self._labeler_overlay is not None:
            self._labeler_overlay(view)
        marks = self.error_marks
        if marks is None or view.image is None or view.image.id != marks[0]:
            return
        _, truth, predicted = marks
        if truth is not None:
            view.stroke_boxes([truth], [TRUTH_STYLE["color"]], line_width=TRUTH_STYLE["line_width"])
        if predicted is not None:
            layer = view.canvas[1]
            layer.set_line_dash(PREDICTED_STYLE["dash"])
            view.stroke_boxes(
                [predicted], [PREDICTED_STYLE["color"]], line_width=PREDICTED_STYLE["line_width"]
            )
            layer.set_line_dash([])

    def close(self) -> None:
        for part in (
            self.header,
            self.categories,
            self.labeler,
            self.eval_labeler,
            self.tiling,
            self.training,
            self.evaluation,
            self.predict,
            self.statistics,
            self.importer,
        ):
            part.close()
        super().close()
