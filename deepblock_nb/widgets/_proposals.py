"""The Labeler's proposals layer: a model's boxes offered for labelling.

The shown image's open proposals (``project.proposals``) are drawn dotted in their
category's colour with a "?" and the score; the selected one in cyan. A click on a
proposal (in draw or select mode) selects it; then "Accept" (key a or Enter) makes
it a box as proposed, "Reject" (r, Delete) drops it, choosing a category accepts it
relabelled, and in select mode dragging it or one of its handles accepts it moved
or resized (those two are "corrected"). "Accept all" (Shift+A) accepts every
proposal in view. Each decision is one step of the Labeler's undo history.

"Propose" pre-labels the shown image, "Propose all" every unlabelled train and
evaluate image, with the newest finished run (while a training job runs, the last
one that finished); when a training run finishes, the shown image's proposals are
made again with it. "Order: worth labelling first" sorts the image list by
``project.suggest_next`` over the stored predictions.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as W
import numpy as np

from deepblock_nb.widgets._imageview import ImageView, Point
from deepblock_nb.widgets._util import Subscriptions, Throttle, error_html, guarded, info_html
from deepblock_nb.widgets._viewport import HANDLE_RADIUS, MIN_DRAG, convert, handle_at, hit_test, resize_box

__all__ = ["PROPOSAL_COLOR", "PROPOSAL_DASH", "ProposalLayer"]

PROPOSAL_DASH = (2.0, 3.0)  # canvas pixels: dotted, apart from dashed predictions and solid boxes
PROPOSAL_COLOR = "#00e5ff"  # the selected proposal
RERANK_S = 2.0  # at most one "worth labelling first" re-rank per this many seconds while boxes are drawn


class ProposalLayer:
    """Proposals of the image a Labeler shows; ``bar`` holds its controls."""

    def __init__(self, lab: Any, interval: float = 0.1) -> None:
        self._lab = lab
        self.selected: int | None = None  # a proposal id
        self.shown = 0
        self._det: Any = None
        self._det_of: int | None = None  # the image id _det belongs to
        self._gesture: str | None = None
        self._rank: dict[int, float] | None = None  # image id -> uncertainty, for the "next" order
        self.job: Any = None  # the last propose job
        self.model: Any = None  # the module of runs trained from a custom one (see Project.predict)
        self.checkbox = W.Checkbox(
            value=True, description="proposals", indent=False, layout=W.Layout(width="95px"),
            tooltip="draw the model's proposals for this image, dotted",
        )  # fmt: skip
        self.propose_button = W.Button(
            description="Propose", icon="magic", layout=W.Layout(width="95px"),
            tooltip="predict this image with the newest finished run; its boxes become proposals",
        )  # fmt: skip
        self.propose_all_button = W.Button(
            description="Propose all", layout=W.Layout(width="95px"),
            tooltip="propose boxes on every unlabelled train and evaluate image (in the background)",
        )  # fmt: skip
        self.accept_button = W.Button(
            description="Accept", icon="check", disabled=True, layout=W.Layout(width="85px"),
            tooltip="accept the selected proposal as a box (a, Enter)",
        )  # fmt: skip
        self.accept_all_button = W.Button(
            description="Accept all", layout=W.Layout(width="90px"),
            tooltip="accept every proposal in view (Shift+A)",
        )  # fmt: skip
        self.reject_button = W.Button(
            description="Reject", icon="times", disabled=True, layout=W.Layout(width="85px"),
            tooltip="reject the selected proposal: this run will not propose it again (r, Delete)",
        )  # fmt: skip
        self.order = W.Dropdown(
            options=[("as added", "added"), ("worth labelling first", "next")], value="added",
            description="Order", layout=W.Layout(width="230px"),
        )  # fmt: skip
        self.info = W.HTML()
        self.bar = W.HBox(
            [
                self.checkbox, self.propose_button, self.propose_all_button, self.accept_button,
                self.accept_all_button, self.reject_button, self.order, self.info,
            ],
            layout=W.Layout(flex_flow="row wrap"),
        )  # fmt: skip
        err = lab._error
        self.checkbox.observe(guarded(lambda _: self._changed(), err), "value")
        self.propose_button.on_click(guarded(lambda _: self.propose(), err))
        self.propose_all_button.on_click(guarded(lambda _: self.propose(every=True), err))
        self.accept_button.on_click(guarded(lambda _: self.accept_selected(), err))
        self.accept_all_button.on_click(guarded(lambda _: self.accept_all(), err))
        self.reject_button.on_click(guarded(lambda _: self.reject_selected(), err))
        self.order.observe(guarded(lambda _: self._reorder(), err), "value")
        self._subs = Subscriptions()
        own = self._subs.own
        self._redraw = own(Throttle(self._changed, interval))
        self._rerank = own(Throttle(self._reorder, interval))
        # boxes come fast while someone labels, and each re-rank reads the stored predictions of
        # every unlabelled image: annotation events re-rank at most every RERANK_S seconds
        self._rerank_labelled = own(Throttle(self._reorder, max(interval, RERANK_S)))
        self._after_training = own(Throttle(self._refresh_after_training, interval))
        self._job_done = own(Throttle(self._report_job, interval))
        project = lab.project
        for topic in ("proposals", "predictions", "annotations"):
            self._subs.add(project.on(topic, self._on_event))
        self._subs.add(project.on("jobs", self._on_job))

    # -- events (any thread) ----------------------------------------------------------
    def _on_event(self, topic: str, image: Any = None, **payload: Any) -> None:
        if topic == "proposals":
            self._det_of = None
            if self.checkbox.value:
                self._redraw()
        if self.order.value == "next":
            (self._rerank_labelled if topic == "annotations" else self._rerank)()

    def _on_job(self, topic: str, job: Any) -> None:
        if job.kind == "train" and getattr(job.status, "value", "") == "finished":
            self._after_training()

    def _refresh_after_training(self) -> None:
        rec = self._lab.image
        if rec is not None and self.checkbox.value and len(self.detections().xyxy):
            self.propose()

    # -- reading and drawing (UI thread) -----------------------------------------------
    def detections(self) -> Any:
        """The shown image's open proposals (cached until a "proposals" event)."""
        rec = self._lab.image
        if rec is None:
            return None
        if self._det_of != rec.id:
            self._det, self._det_of = self._lab.project.proposals(rec.id), rec.id
            if self.selected is not None and self.selected not in self._det.ids:
                self.selected = None
        return self._det

    def _changed(self) -> None:
        self._det_of = None
        self._lab.view.redraw_overlay()

    def reset(self) -> None:
        """Another image is shown: nothing selected, the proposals read again."""
        self.selected, self._gesture, self._det_of = None, None, None
        self._sync_buttons()

    def draw(self, view: ImageView) -> None:
        self.shown = 0
        det = self.detections() if self.checkbox.value else None
        n = 0 if det is None else len(det.xyxy)
        self.info.value = info_html(f"{n} proposals" if n else "")
        self.accept_all_button.disabled = not n  # nothing to accept
        if det is None or not n:
            return
        color_of, name_of = self._lab._color_map, self._lab._names  # the Labeler's, kept fresh by events
        cls = [int(c) for c in det.class_id]
        colors = [color_of.get(c, "#ffffff") for c in cls]
        labels = [f"{name_of.get(c, c)}? {s:.2f}" for c, s in zip(cls, det.confidence)]
        self.shown = view.stroke_boxes(
            det.xyxy, colors, labels=labels, dash=PROPOSAL_DASH, label_min_height=24.0
        )
        k = self._row(self.selected)
        if k >= 0:
            view.stroke_boxes(
                det.xyxy[k : k + 1], [PROPOSAL_COLOR], line_width=3, dash=(6.0, 3.0), labels=[labels[k]]
            )

    def _row(self, proposal: int | None) -> int:
        det = self.detections()
        if proposal is None or det is None:
            return -1
        k = np.flatnonzero(det.ids == proposal)
        return int(k[0]) if len(k) else -1

    # -- selection and gestures (canvas pixels) -------------------------------------------
    def select(self, proposal: int | None) -> None:
        """Select a proposal by id (None clears); the category list shows its category."""
        lab = self._lab
        if proposal is not None and lab.selected is not None:
            lab.select(None)
        self.selected = proposal
        k = self._row(proposal)
        if k >= 0:
            lab._selecting = True
            try:
                lab.category.value = int(self._det.class_id[k])
            finally:
                lab._selecting = False
        self._sync_buttons()
        lab.view.redraw_overlay()

    def _sync_buttons(self) -> None:
        self.accept_button.disabled = self.reject_button.disabled = self.selected is None

    def pick(self, p: Point) -> bool:
        """Select the proposal under a canvas point; whether there was one (then a drag moves it)."""
        det = self.detections() if self.checkbox.value else None
        if det is None or not len(det.xyxy) or self._lab.view.viewport is None:
            return False
        k = hit_test(det.xyxy, tuple(self._lab.view.to_image(p)))
        if k < 0:
            if self.selected is not None:
                self.select(None)
            return False
        self.select(int(det.ids[k]))
        self._gesture = "move"
        return True

    def press(self, p: Point) -> bool:
        """A select-mode press on the selected proposal (a handle: resize, inside: move)."""
        self._gesture = None
        k, vp = self._row(self.selected), self._lab.view.viewport
        if k < 0 or vp is None or not self.checkbox.value:
            return False
        box = self._det.xyxy[k]
        handle = handle_at(convert(vp, box, "view"), p, HANDLE_RADIUS)
        if handle is not None:
            self._gesture = f"resize:{handle}"
        elif hit_test(box.reshape(1, 4), tuple(self._lab.view.to_image(p))) == 0:
            self._gesture = "move"
        return self._gesture is not None

    def _dragged(self, p0: Point, p: Point) -> np.ndarray | None:
        k, vp = self._row(self.selected), self._lab.view.viewport
        if k < 0 or vp is None or self._gesture is None:
            return None
        box = self._det.xyxy[k]
        dx, dy = np.subtract(p, p0) / vp.scale
        if self._gesture == "move":
            return np.asarray(box + np.array([dx, dy, dx, dy]))
        return resize_box(box, self._gesture.split(":")[1], dx, dy, bounds_wh=vp.image_wh)

    def drag(self, p0: Point, p: Point) -> bool:
        box = self._dragged(p0, p)
        if box is None:
            return False
        self._lab.view.rubber_band(convert(self._lab.view.viewport, box, "view"), PROPOSAL_COLOR)
        return True

    def release(self, p0: Point, p: Point) -> bool:
        """End a drag of the selected proposal: accepted where it was left ("corrected")."""
        box = self._dragged(p0, p)
        self._gesture = None
        if box is None:
            return False
        self._lab.view.rubber_band(None, "")
        if np.hypot(*np.subtract(p, p0)) >= MIN_DRAG and self.selected is not None:
            self._accept(self.selected, xyxy=box)
        return True

    def cancel(self) -> None:
        self._gesture = None

    # -- decisions ---------------------------------------------------------------------------
    def relabel(self, category: int) -> bool:
        """A category chosen while a proposal is selected: accept it as that category."""
        k = self._row(self.selected)
        if k < 0 or self.selected is None:
            return False
        if int(self._det.class_id[k]) != int(category):
            self._accept(self.selected, category=int(category))
        return True

    def accept_selected(self) -> None:
        if self.selected is None:
            self._lab.status.value = info_html("select a proposal first (click its dotted box)")
            return
        self._accept(self.selected)

    def _accept(self, proposal: int, xyxy: Any = None, category: int | None = None) -> int | None:
        lab = self._lab
        k = self._row(proposal)
        if k < 0 or lab.image is None:
            return None
        box = self._det.xyxy[k] if xyxy is None else lab._clip(xyxy)
        cat = int(self._det.class_id[k]) if category is None else int(category)
        lab.toggles.show(cat)  # an accepted box is never drawn hidden
        self.selected = None
        self._sync_buttons()
        box_id = lab._editor.accept_proposal(proposal, box, cat)
        lab.history.accepted(lab.image.id, box_id, proposal, cat, box)
        lab._history_changed()
        lab.status.value = info_html(f"accepted proposal {proposal} as box {box_id}")
        return int(box_id)

    def accept_all(self) -> None:
        """Accept every proposal in view (of a category shown), as one undo step."""
        lab = self._lab
        det, vp = self.detections(), lab.view.viewport
        if det is None or vp is None or not self.checkbox.value:
            return
        x1, y1, x2, y2 = convert(vp, [0.0, 0.0, *lab.view.canvas_wh], "image")
        seen = (det.xyxy[:, 2] > x1) & (det.xyxy[:, 0] < x2) & (det.xyxy[:, 3] > y1) & (det.xyxy[:, 1] < y2)
        seen &= np.isin(np.arange(len(det.xyxy)), lab.toggles.shown_rows(det.class_id))
        chosen = [
            (int(i), b.copy(), int(c)) for i, b, c in zip(det.ids[seen], det.xyxy[seen], det.class_id[seen])
        ]
        done = 0
        for pid, box, cat in chosen:
            box_id = lab._editor.accept_proposal(pid, box, cat)
            lab.history.accepted(lab.image.id, box_id, pid, cat, box)
            done += 1
        if done:
            lab.history.group(done, "accept all")
        self.selected = None
        self._sync_buttons()
        lab._history_changed()
        lab.status.value = info_html(f"accepted {done} proposals" if done else "no proposals in view")

    def reject_selected(self) -> None:
        lab = self._lab
        if self.selected is None or lab.image is None:
            return
        pid, self.selected = self.selected, None
        self._sync_buttons()
        lab._editor.reject_proposals(lab.image.id, [pid])
        lab.history.rejected(lab.image.id, [pid])
        lab._history_changed()
        lab.status.value = info_html(f"rejected proposal {pid}")

    # -- proposing and ordering --------------------------------------------------------------
    def propose(self, every: bool = False) -> Any:
        """Pre-label the shown image (``every``: all unlabelled train and evaluate images) in the background."""
        lab = self._lab
        if not every and lab.image is None:
            return None
        project = lab.project
        images = None if every else [lab.image.id]
        self.job = project.prelabel(images, threshold=project.threshold, model=self.model)
        self.job.on("done", lambda job: self._job_done())
        self.info.value = info_html("proposing...")
        return self.job

    def _report_job(self) -> None:
        job = self.job
        if job is None:
            return
        if job.error is not None:
            self._lab.status.value = error_html(job.error)
        else:
            self._lab.status.value = info_html(
                f"proposed boxes on {len(job.result or [])} images ({job.message})"
            )
        self._changed()

    def rank(self, records: list[Any]) -> list[Any]:
        """``records`` in the chosen order: as given, or the most uncertain first."""
        if self.order.value != "next" or not records:
            return records
        if self._rank is None:
            split = self._lab.split.value
            try:
                frame = self._lab.project.suggest_next(
                    n=None, split=None if split == "all" else split, predict=False
                )
            except Exception as exc:  # no model yet, say: the list keeps its order
                self._rank = {}
                self._lab.status.value = error_html(exc)
                return records
            best: dict[int, float] = {}
            for image_id, u in zip(frame["image"], frame["uncertainty"]):
                value = -1.0 if u is None or math.isnan(u) else float(u)
                best[int(image_id)] = max(best.get(int(image_id), -2.0), value)
            self._rank = best
        rank = self._rank
        return sorted(records, key=lambda r: -rank.get(r.id, -3.0))  # stable: the others keep their order

    def _reorder(self) -> None:
        self._rank = None
        self._lab.refresh_images()

    def close(self) -> None:
        self._subs.close()
        self.bar.close()
