"""The Labeler's predictions layer: the shown image's stored predictions, read-only.

Drawn dashed above the labelled boxes, in the category's colour with the score,
at ``project.threshold``; never hit-tested, selected or edited (the boxes to edit
are the annotations). It follows "predictions" and "threshold" events, so a
prediction run or the threshold slider of the Predict panel shows here too.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np

from deepblock_nb.widgets._imageview import ImageView
from deepblock_nb.widgets._util import Subscriptions, Throttle, guarded

__all__ = ["PREDICTION_DASH", "PredictionLayer"]

#: dash pattern (canvas pixels) of predicted boxes, apart from the solid annotations
PREDICTION_DASH = (6.0, 4.0)


class PredictionLayer:
    """Predictions of the image a Labeler shows (``lab.image``, ``lab.view``, ``lab.project``).

    ``checkbox`` ("predictions") turns the layer on; :attr:`shown` counts the boxes
    the last draw found at the threshold.
    """

    def __init__(self, lab: Any, interval: float = 0.1) -> None:
        self._lab = lab
        self.shown = 0
        self._det: Any = None
        self._det_of: tuple[int, float] | None = None  # (image id, threshold) of _det
        self.checkbox = W.Checkbox(
            value=False,
            description="predictions",
            indent=False,
            tooltip="draw the stored predictions of this image, dashed, at the project's threshold",
            layout=W.Layout(width="100px"),
        )
        self._subs = Subscriptions()
        self._throttle = self._subs.own(Throttle(self._changed, interval))
        self.checkbox.observe(guarded(lambda _: self._changed(), lab._error), "value")
        for topic in ("predictions", "threshold"):
            self._subs.add(lab.project.on(topic, self._on_event))

    def _on_event(self, topic: str, **payload: Any) -> None:
        self._det_of = None  # read again at the next draw
        if self.checkbox.value:
            self._throttle()

    def _changed(self) -> None:
        self._det_of = None
        self._lab.view.redraw_overlay()

    def detections(self) -> Any:
        """The shown image's predictions at the threshold (cached until either changes), or None."""
        rec, project = self._lab.image, self._lab.project
        if rec is None:
            return None
        key = (int(rec.id), float(project.threshold))
        if self._det_of != key:
            self._det, self._det_of = project.predictions(rec.id), key
        return self._det

    def draw(self, view: ImageView) -> None:
        self.shown = 0
        if not self.checkbox.value:
            return
        det = self.detections()
        if det is None or not len(det.xyxy):
            return
        cats = {c.id: c for c in self._lab.project.categories}
        cls = [int(c) for c in det.class_id]
        colors = [cats[c].color if c in cats else "#ffffff" for c in cls]
        conf = det.confidence if det.confidence is not None else np.ones(len(cls))
        labels = [f"{cats[c].name if c in cats else c} {s:.2f}" for c, s in zip(cls, conf)]
        self.shown = view.stroke_boxes(
            det.xyxy, colors, labels=labels, dash=PREDICTION_DASH, label_min_height=24.0
        )

    def close(self) -> None:
        self._subs.close()
        self.checkbox.close()
