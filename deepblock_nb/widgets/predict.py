"""PredictPanel: add images (upload, webcam), predict, filter by threshold, export."""

from __future__ import annotations

import html
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from deepblock_nb.errors import DeepBlockError
from deepblock_nb.widgets._imageview import ImageView
from deepblock_nb.widgets._util import (
    JobPanel,
    Subscriptions,
    Throttle,
    error_html,
    follow_job,
    guarded,
    info_html,
)
from deepblock_nb.widgets.download import DownloadButton
from deepblock_nb.widgets.webcam import Webcam

__all__ = ["PredictPanel", "to_percent", "unique_name"]

#: where uploads are written before they are added (under the project folder)
UPLOAD_STAGING = Path("cache") / "uploads"
#: file suffix and MIME type of each download's format (COCO JSON otherwise)
EXPORT_SUFFIX = {"csv": ".csv", "geojson": ".geojson"}
EXPORT_MIME = {"csv": "text/csv", "geojson": "application/geo+json"}


def to_percent(threshold: float) -> float:
    """A threshold 0..1 as the slider's percent 0..100 (rounded off float noise: 0.23 -> 23.0)."""
    return round(float(threshold) * 100.0, 6)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``, ... if it is taken."""
    if name not in taken:
        return name
    p = Path(name)
    k = 2
    while f"{p.stem}-{k}{p.suffix}" in taken:
        k += 1
    return f"{p.stem}-{k}{p.suffix}"


class PredictPanel(JobPanel):
    """Predict on the project's "predict" images and browse the results.

    Images come from a file upload (several at once) or a webcam capture
    (``split="predict"``); "Remove image" removes the shown one. "Predict" runs
    ``project.predict`` in the background (this image or all); the threshold slider
    (percent, 0..100) sets ``project.threshold`` (0..1) and redraws from the stored
    predictions without running the model again; "Download JSON" / "Download CSV" /
    "Download GeoJSON" write the predictions at the threshold and save them in the
    browser, one click each (GeoJSON in longitude/latitude for GeoTIFFs, else in
    pixels). Project and job events (from any thread) are shown on the UI thread, at
    most once per ``interval`` seconds.
    """

    def __init__(
        self, project: Any, width: int = 800, height: int = 520, interval: float = 0.1, **kwargs: Any
    ) -> None:
        self.project = project
        self.job: Any = None
        self._list_lock = threading.RLock()
        self.view = ImageView(project, width, height)
        self.view.mode = "pan"
        self.view.overlay = self._draw_predictions
        self.shown = 0  # boxes drawn at the current threshold
        self._syncing_to: float | None = None  # the project's value the slider is being set to
        self._announced_threshold: float | None = None  # the latest "threshold" event's value
        self._subs = Subscriptions()
        self._job_subs = Subscriptions()
        self._throttle = Throttle(self._refresh_job, interval)
        own = self._subs.own
        self._images_throttle = own(Throttle(self.refresh_images, interval))
        self._overlay_throttle = own(Throttle(self._redraw, interval))
        self._threshold_throttle = own(Throttle(self._follow_threshold, interval))

        self.image_list = W.Dropdown(description="Image", layout=W.Layout(width="400px"))
        self.upload = W.FileUpload(accept="image/*", multiple=True, description="Upload")
        self.webcam = Webcam()
        self.scope = W.ToggleButtons(
            options=["this image", "all images"], value="this image", style={"button_width": "90px"}
        )
        self.accurate = W.Checkbox(
            value=False, description="More accurate", indent=False, layout=W.Layout(width="130px")
        )
        self.predict_button = W.Button(description="Predict", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.clear_button = W.Button(
            description="Clear boxes", icon="eraser", tooltip="delete the stored predictions of this image"
        )
        self.remove_button = W.Button(
            description="Remove image", icon="trash", tooltip="remove the shown image from the predict split"
        )
        # percent in the page; project.threshold (0..1) stays the one value that counts
        self.threshold = W.FloatSlider(
            value=to_percent(project.threshold),
            min=0.0,
            max=100.0,
            step=1.0,
            description="threshold %",
            continuous_update=True,
            readout_format=".0f",
            layout=W.Layout(width="380px"),
        )
        # one click each: the file is made in the kernel and saved by the browser
        self.download_json = DownloadButton(lambda: self._export_bytes("coco"), "Download JSON")
        self.download_csv = DownloadButton(lambda: self._export_bytes("csv"), "Download CSV")
        self.download_geojson = DownloadButton(lambda: self._export_bytes("geojson"), "Download GeoJSON")
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="300px"))
        self.status = W.HTML()
        self.info = W.HTML()

        err = self._error
        self.image_list.observe(guarded(lambda c: self._show(c["new"]), err), "value")
        self.upload.observe(guarded(self._on_upload, err), "value")
        self.webcam.on_frame(guarded(self.add_frame, err))
        self.predict_button.on_click(guarded(lambda _: self.start(), err))
        self.stop_button.on_click(guarded(lambda _: self.job and self.job.stop(), err))
        self.clear_button.on_click(guarded(lambda _: self.clear(), err))
        self.remove_button.on_click(guarded(lambda _: self.remove(), err))
        self.threshold.observe(guarded(self._on_slider, err), "value")
        for topic, handler in (
            ("images", self._on_images),
            ("predictions", self._on_predictions),
            ("threshold", self._on_threshold),
            ("categories", self._on_predictions),
        ):
            self._subs.add(project.on(topic, handler))

        zoom_in = W.Button(icon="search-plus", layout=W.Layout(width="40px"))
        zoom_out = W.Button(icon="search-minus", layout=W.Layout(width="40px"))
        fit_button = W.Button(description="fit", layout=W.Layout(width="50px"))
        zoom_in.on_click(lambda _: self.view.zoom(1.5))
        zoom_out.on_click(lambda _: self.view.zoom(1 / 1.5))
        fit_button.on_click(lambda _: self.view.fit_view())
        super().__init__(
            [
                W.HBox([self.upload, self.webcam]),
                W.HBox([self.image_list, zoom_out, zoom_in, fit_button, self.remove_button]),
                W.HBox([self.scope, self.accurate, self.predict_button, self.stop_button, self.clear_button]),
                W.HBox([self.progress, self.status]),
                W.HBox([self.threshold, self.download_json, self.download_csv, self.download_geojson]),
                self.view.canvas,
                self.info,
            ],
            **kwargs,
        )
        self.refresh_images()

    # -- images ------------------------------------------------------------------------
    @property
    def image(self) -> Any:
        return self.view.image

    def refresh_images(self, select: int | None = None) -> None:
        """Reload the image list, showing ``select`` (else keeping the shown image)."""
        with self._list_lock:  # the UI thread's refresh and a capture or upload take turns
            self._refresh_images(select)

    def _refresh_images(self, select: int | None) -> None:
        records = self.project.images("predict")
        current = select if select is not None else self.image_list.value
        self.image_list.options = [(f"{r.name} ({r.width} x {r.height})", r.id) for r in records]
        ids = [r.id for r in records]
        if current in ids:
            self.image_list.value = current
        else:
            self.image_list.value = ids[0] if ids else None
            if not ids:
                self._show(None)

    def _show(self, image_id: int | None) -> None:
        self.view.show(image_id)
        self._update_info()

    def add_image(self, data: bytes, name: str) -> Any:
        """Add image bytes to the predict split under a free name and show it."""
        taken = {r.name for r in self.project.images()}
        rec = self.project.add_image(bytes(data), split="predict", name=unique_name(name, taken))
        self.refresh_images(select=rec.id)
        self.status.value = info_html(f"added {rec.name} ({rec.width} x {rec.height})")
        return rec

    def add_frame(self, png: bytes) -> Any:
        return self.add_image(png, f"webcam-{time.strftime('%Y%m%d-%H%M%S')}.png")

    def add_files(self, files: list[tuple[str, Path]]) -> list[Any]:
        """Add image files (``(name, path)``) to the predict split one by one, under free names.

        A bad file does not stop the others: each gets one error line naming it in
        ``status``. Returns the records added.
        """
        added: list[Any] = []
        lines: list[str] = []
        taken = {r.name for r in self.project.images()}
        for name, path in files:
            try:
                rec = self.project.add_image(path, split="predict", name=unique_name(name, taken))
            except DeepBlockError as exc:
                detail = str(exc).replace(f"{path}: ", "").replace(str(path), name)
                lines.append(error_html(f"{name}: {detail}"))
                continue
            taken.add(rec.name)
            added.append(rec)
        if added:
            self.refresh_images(select=added[-1].id)
            names = ", ".join(f"{r.name} ({r.width} x {r.height})" for r in added)
            lines.insert(0, info_html(f"added {names}"))
        self.status.value = "<br>".join(lines)
        return added

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        # each upload goes to a file at once and the widget lets go of the bytes; the
        # project then reads headers from the files and copies them under images/
        folder = Path(self.project.path) / UPLOAD_STAGING / str(time.time_ns())
        staged: list[tuple[str, Path]] = []
        try:
            for k, f in enumerate(files):
                name = str(f.get("name") or f"upload-{k}")
                base = Path(name).name
                path = folder / str(k) / (base if base not in ("", ".", "..") else f"upload-{k}")
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("wb") as fh:
                    fh.write(f["content"])  # a memoryview: written without a copy
                staged.append((name, path))
            self.upload.value = ()  # the widget no longer holds the files' bytes
            self.add_files(staged)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- predicting ---------------------------------------------------------------------
    def start(self) -> Any:
        images = None
        if self.scope.value == "this image":
            if self.image is None:
                self._error("no image to predict on: upload one, or choose 'all images'")
                return None
            images = [self.image.id]
        job = self.project.predict(images=images, accurate=bool(self.accurate.value))
        self.job = job
        follow_job(job, self._job_subs, self._throttle)
        return job

    def _refresh_job(self) -> None:
        job = self.job
        if job is None:
            return
        done = job.status.done
        with self.progress.hold_sync():
            self.progress.value = float(job.progress)
            self.progress.bar_style = {"finished": "success", "failed": "danger"}.get(job.status.value, "")
        self.predict_button.disabled = not done
        self.stop_button.disabled = done
        if job.error is not None:
            self.status.value = error_html(job.error)
        else:
            self.status.value = f"<b>{job.status.value}</b> {html.escape(str(job.message))}"
        if done:
            self.view.redraw_overlay()
            self._update_info()

    def clear(self) -> None:
        if self.image is not None:
            self.project.clear_predictions(self.image.id)

    def remove(self) -> None:
        """Remove the shown image (with its predictions) from the project; the next one is shown."""
        rec = self.image
        if rec is None:
            self._error("no image to remove")
            return
        self.project.remove_image(rec.id)
        self.refresh_images()
        self.status.value = info_html(f"removed {rec.name}")

    # -- threshold and drawing ----------------------------------------------------------
    def _on_slider(self, change: dict[str, Any]) -> None:
        percent = float(change["new"])
        new = percent / 100.0
        syncing = self._syncing_to is not None and abs(percent - self._syncing_to) <= 1e-6
        if not syncing and abs(float(self.project.threshold) - new) > 1e-9:
            # only a person's move sets the project's threshold (it then stops
            # following the evaluations); emits "threshold", which redraws
            self.project.threshold = new
        else:
            self.view.redraw_overlay()
            self._update_info()

    # project events (any thread): note the payload, queue the update on the UI thread
    def _on_threshold(self, topic: str, value: float | None = None, **payload: Any) -> None:
        self._announced_threshold = value  # coalesced: the latest value wins
        self._threshold_throttle()

    def _on_predictions(self, topic: str, image: Any = None, **payload: Any) -> None:
        shown = self.image
        if shown is None:
            return
        if image is None or getattr(image, "id", image) == shown.id:
            self._overlay_throttle()

    def _on_images(self, topic: str, **payload: Any) -> None:
        self._images_throttle()

    def _follow_threshold(self) -> None:
        value = self._announced_threshold
        percent = None if value is None else to_percent(value)
        if percent is not None and abs(self.threshold.value - percent) > 1e-6:
            self._syncing_to = percent  # following the project is not the user's choice
            try:
                self.threshold.value = percent  # -> _on_slider -> redraw
            finally:
                self._syncing_to = None
            return
        self._redraw()

    def _redraw(self) -> None:
        self.view.redraw_overlay()
        self._update_info()

    def predictions(self) -> Any:
        """The shown image's stored predictions at ``project.threshold`` (Detections), or None."""
        if self.image is None:
            return None
        return self.project.predictions(self.image.id)

    def _draw_predictions(self, view: ImageView) -> None:
        det = self.predictions()
        self.shown = 0 if det is None else len(det.xyxy)
        if not self.shown:
            return
        cats = {c.id: c for c in self.project.categories}
        colors = [cats[int(c)].color if int(c) in cats else "#ffffff" for c in det.class_id]
        conf = det.confidence if det.confidence is not None else np.ones(len(det.xyxy))
        labels = [f"{cats[int(c)].name if int(c) in cats else c} {s:.2f}" for c, s in zip(det.class_id, conf)]
        view.stroke_boxes(det.xyxy, colors, labels=labels)

    def _update_info(self) -> None:
        rec = self.image
        if rec is None:
            self.info.value = info_html("no image in the predict split: upload one or capture a webcam frame")
            return
        self.info.value = (
            f"<b>{html.escape(rec.name)}</b> {rec.width} x {rec.height} px: "
            f"{self.shown} boxes at threshold {to_percent(self.project.threshold):g} %"
        )

    # -- export ----------------------------------------------------------------------------
    def export(self, path: str | Path | None = None, format: str = "coco") -> Path:
        """Write the predictions at the current threshold: COCO JSON (default
        ``<project>/exports/predictions.json``, with its reference file beside it),
        ``format="csv"`` (``predictions.csv``) or ``format="geojson"``
        (``predictions.geojson``)."""
        suffix = EXPORT_SUFFIX.get(format, ".json")
        default = Path(self.project.path) / "exports" / f"predictions{suffix}"
        path = Path(path) if path is not None else default
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(self.project.export_predictions(path, format=format))

    def _export_bytes(self, format: str) -> tuple[str, bytes, str]:
        path = self.export(format=format)
        return path.name, path.read_bytes(), EXPORT_MIME.get(format, "application/json")

    def close(self) -> None:
        super().close()  # cancels the throttles first: nothing draws on a closed view
        self.view.close()
        self.webcam.close()
        self.download_json.close()
        self.download_csv.close()
        self.download_geojson.close()
