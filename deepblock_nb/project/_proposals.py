"""Model-assisted labelling: a run's predictions offered as proposals to accept,
correct or reject; pre-labelling; and the images (or tiles) worth labelling next.

A proposal is never an annotation: Evaluate, training and the annotation exports
see only the boxes a user accepted, whose ``source`` then says so ("accepted" as
proposed, "corrected" after a change). A proposal the user rejected is kept, and
the same run does not propose it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.boxes import box_iou
from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ArgumentError, RecordNotFoundError
from deepblock_nb.project._checks import box_array, check_split, check_threshold, clip_checked
from deepblock_nb.store import ImageRecord
from deepblock_nb.store.reviews import centres_inside

if TYPE_CHECKING:
    import pandas as pd

    from deepblock_nb.jobs import Job
    from deepblock_nb.project._prediction import Prediction
    from deepblock_nb.store import Category, Store

__all__ = ["ACCEPTED", "CORRECTED", "DUPLICATE_IOU", "PROPOSAL_THRESHOLD", "ModelAssisted", "uncertainty"]

ACCEPTED, CORRECTED = "accepted", "corrected"  # an annotation's source after a proposal
MANUAL = "manual"
PROPOSAL_THRESHOLD = 0.5
#: a prediction at least this close (IoU, same category) to a box of the image, or to a
#: proposal of the same run the user rejected there, is not proposed
DUPLICATE_IOU = 0.5


def uncertainty(scores: npt.ArrayLike, threshold: float) -> np.ndarray:
    """``(N,)`` how undecided the model is about each box: 1 at the threshold, falling
    (squared) to 0 at 0 and 1. ``margin = |score - threshold| / min(threshold, 1 - threshold)``
    and ``(1 - min(margin, 1))**2``, so the long tail of low scores counts next to nothing."""
    s = np.asarray(scores, np.float64).reshape(-1)
    margin = np.abs(s - threshold) / max(min(threshold, 1.0 - threshold), 1e-6)
    return np.asarray((1.0 - np.minimum(margin, 1.0)) ** 2, np.float64)


def _same(a: Detections, b: Detections, iou: float) -> np.ndarray:
    """``(len(a),)`` whether each box of ``a`` has a box of ``b`` of its category at IoU >= ``iou``."""
    if not len(a.xyxy) or not len(b.xyxy):
        return np.zeros(len(a.xyxy), bool)
    close = (box_iou(a.xyxy, b.xyxy) >= iou) & (a.class_id[:, None] == b.class_id[None, :])
    return np.asarray(close.any(axis=1), bool)


class ModelAssisted:
    """The Project's model-assisted labelling (a mixin of :class:`~deepblock_nb.Project`)."""

    if TYPE_CHECKING:  # what it uses of the Project
        _store: Store
        _prediction: Prediction
        threshold: float

        def _emit(self, topic: str, **payload: Any) -> None: ...
        def image(self, image: Any) -> ImageRecord: ...
        def images(self, split: str | None = None) -> list[ImageRecord]: ...
        @property
        def categories(self) -> list[Category]: ...
        def category(self, category: Any) -> Category: ...
        def annotations(self, image: Any) -> Detections: ...
        def image_box_counts(self) -> dict[int, int]: ...
        def add_box(
            self, image: Any, category: Any, xyxy: npt.ArrayLike, *, source: str = "manual"
        ) -> int: ...
        def predict(
            self,
            images: Any = None,
            accurate: bool = False,
            run: int | None = None,
            *,
            device: str = "auto",
            model: Any = None,
        ) -> Job: ...

    # -- pre-labelling ---------------------------------------------------------------
    def prelabel(
        self,
        images: Iterable[Any] | Any | None = None,
        run: int | None = None,
        threshold: float = PROPOSAL_THRESHOLD,
        *,
        accurate: bool = False,
        batch_size: int | None = None,
        device: str = "auto",
        model: Any = None,
    ) -> Job:
        """Predict images in the background and store the boxes scoring ``>= threshold`` as proposals.

        ``images`` None: the train and evaluate images without boxes and not marked done. ``run`` None: the
        newest finished run (while a training job runs, the last one that finished). Each image's open
        proposals are replaced by this run's; predictions close to one of the image's boxes (same category,
        IoU >= :data:`DUPLICATE_IOU`), to a proposal of the same run rejected there, or centred in a tile
        marked done are left out. The predictions themselves are also stored as the image's current ones
        (:meth:`suggest_next` reads them). Annotations are never changed. ``job.result``: the image ids.
        Other arguments as for :meth:`predict`.

        Raises:
            ModelError: no trained model (or ``run`` has no checkpoint).
            ArgumentError: nothing to pre-label, or a threshold outside [0, 1].
        """
        t = check_threshold(threshold)
        if images is None:
            records = [r for split in ("train", "evaluate") for r in self._unlabelled(split)]
            if not records:
                raise ArgumentError(
                    "no unlabelled train or evaluate images to pre-label (each has boxes or is marked done); "
                    "pass images=... to pre-label labelled ones"
                )
            images = records

        def keep(rec: ImageRecord, run_id: int, det: Detections) -> None:
            with self._store.write():  # the predictions and the proposals made from them, together
                self._prediction.store_predictions(rec, run_id, det)
                scores = np.ones(len(det.xyxy)) if det.confidence is None else det.confidence
                self._store_proposals(rec, run_id, det[scores >= t])

        return self._prediction.predict(
            images, accurate, run, batch_size, device, model, kind="prelabel", store=keep
        )

    def _store_proposals(self, rec: ImageRecord, run_id: int | None, det: Detections) -> np.ndarray:
        drop = _same(det, self.annotations(rec), DUPLICATE_IOU)
        drop |= _same(det, self._store.proposals.rejected(rec.id, run_id), DUPLICATE_IOU)
        done = self._store.reviews.of_image(rec.id)
        if len(done):
            drop |= centres_inside(det.xyxy, done)
        ids = self._store.proposals.replace(rec.id, run_id, det[~drop])
        self._emit("proposals", action="stored", image=rec, ids=ids)
        return ids

    def proposals(
        self, image: Any, threshold: float | None = None, state: str | Sequence[str] = "open"
    ) -> Detections:
        """The image's proposals (``ids``: proposal ids, ``confidence``: scores), best first.

        ``state``: "open" (default: those still to decide), "accepted", "corrected", "rejected", or several.
        ``threshold``: only those scoring at least this much.
        """
        from deepblock_nb.store import PROPOSAL_STATES

        states = (state,) if isinstance(state, str) else tuple(state)
        bad = [s for s in states if s not in PROPOSAL_STATES]
        if bad or not states:
            raise ArgumentError(
                f"a proposal state is one of {', '.join(PROPOSAL_STATES)}, not {bad or states!r}"
            )
        t = 0.0 if threshold is None else check_threshold(threshold)
        return self._store.proposals.of_image(self.image(image).id, states, min_score=t)

    # -- deciding --------------------------------------------------------------------------
    def accept_proposals(
        self,
        image: Any,
        ids: Sequence[int] | npt.ArrayLike | None = None,
        threshold: float | None = None,
    ) -> np.ndarray:
        """Accept open proposals of an image as they are: each becomes an annotation with source
        "accepted". ``ids`` None: all its open proposals (scoring ``>= threshold`` when given). One
        transaction; returns the new box ids ``(N,)`` in the order of the proposals."""
        rec = self.image(image)
        if ids is None:
            chosen = _ids(self.proposals(rec, threshold))
        else:
            chosen = [int(i) for i in np.asarray(ids, np.int64).reshape(-1)]
        rows = self._open_proposals(chosen, rec)
        with self._store.write():
            boxes = [self._decide(row, rec, None, None) for row in rows]
        return np.asarray(boxes, np.int64)

    def accept_proposal(self, proposal: int, xyxy: npt.ArrayLike | None = None, category: Any = None) -> int:
        """Accept one open proposal, maybe moved/resized (``xyxy``) or relabelled (``category``): its box
        gets source "corrected" when either differs from the proposal, else "accepted". Returns the box id."""
        (row,) = self._open_proposals([int(proposal)], None)
        rec = self.image(int(row["image_id"]))
        with self._store.write():
            return self._decide(row, rec, xyxy, category)

    def reject_proposals(self, image: Any, ids: Sequence[int] | npt.ArrayLike | None = None) -> None:
        """Reject open proposals of an image (``ids`` None: all of them); the same run will not propose
        them again (see :meth:`prelabel`)."""
        rec = self.image(image)
        chosen = (
            _ids(self.proposals(rec))
            if ids is None
            else [int(i) for i in np.asarray(ids, np.int64).reshape(-1)]
        )
        rows = self._open_proposals(chosen, rec)
        with self._store.write():
            for row in rows:
                self._store.proposals.decide(int(row["id"]), "rejected")
            self._emit(
                "proposals", action="rejected", image=rec, ids=np.array([r["id"] for r in rows], np.int64)
            )

    def reopen_proposals(self, ids: Sequence[int] | npt.ArrayLike) -> None:
        """Make decided proposals open again (what an undo of accept or reject does). The boxes they
        became are not deleted here: delete those first (:meth:`delete_box`)."""
        chosen = [int(i) for i in np.asarray(ids, np.int64).reshape(-1)]
        rows = self._store.proposals.get(chosen)
        if len(rows) != len(set(chosen)):
            missing = sorted(set(chosen) - {int(r["id"]) for r in rows})
            raise RecordNotFoundError(f"no proposal {missing[0]} in this project")
        with self._store.write():
            self._store.proposals.reopen(chosen)
            for image_id in sorted({int(r["image_id"]) for r in rows}):
                mine = np.array([r["id"] for r in rows if int(r["image_id"]) == image_id], np.int64)
                self._emit("proposals", action="reopened", image=self.image(image_id), ids=mine)

    def clear_proposals(self, image: Any = None) -> None:
        """Delete the open proposals of one image, or of every image (decided ones are kept)."""
        rec = None if image is None else self.image(image)
        self._store.proposals.clear(None if rec is None else rec.id)
        self._emit("proposals", action="cleared", image=rec, ids=None)

    def _open_proposals(self, ids: list[int], rec: ImageRecord | None) -> list[dict[str, Any]]:
        rows = self._store.proposals.get(ids)
        found = {int(r["id"]) for r in rows}
        for i in ids:
            if i not in found:
                raise RecordNotFoundError(f"no proposal {i} in this project")
        for row in rows:
            if rec is not None and int(row["image_id"]) != rec.id:
                raise ArgumentError(f"proposal {row['id']} is not one of image {rec.name!r}'s")
            if row["state"] != "open":
                raise ArgumentError(f"proposal {row['id']} was already {row['state']}")
        return rows

    def _decide(self, row: dict[str, Any], rec: ImageRecord, xyxy: Any, category: Any) -> int:
        """The box a proposal becomes (joins the caller's transaction)."""
        proposed = np.array([row["x1"], row["y1"], row["x2"], row["y2"]], np.float64)
        cat = int(row["category_id"]) if category is None else self.category(category).id
        box = proposed
        if xyxy is not None:
            box = clip_checked(box_array(xyxy, "box").reshape(1, 4), rec.image_wh, f"image {rec.name!r}")[0][
                0
            ]
        changed = cat != int(row["category_id"]) or not np.allclose(box, proposed, atol=1e-6)
        source = CORRECTED if changed else ACCEPTED
        box_id = int(self.add_box(rec, cat, box, source=source))
        self._store.proposals.decide(int(row["id"]), source, box_id)
        self._emit("proposals", action=source, image=rec, ids=np.array([int(row["id"])], np.int64))
        return box_id

    def annotation_statistics(self, split: str | None = None) -> pd.DataFrame:
        """Boxes per category (rows, with a ``total`` row) and source (columns: "manual", "imported",
        "accepted" and "corrected" from proposals, any other, and ``total``), over one split or all."""
        import pandas as pd

        cats = self.categories
        found = self._store.annotations.counts_by_source(None if split is None else check_split(split))
        sources = list(
            dict.fromkeys([MANUAL, "imported", ACCEPTED, CORRECTED, *sorted({s for _, s, _ in found})])
        )
        frame = pd.DataFrame(0, index=pd.Index([c.name for c in cats], name="category"), columns=sources)
        names = {c.id: c.name for c in cats}
        for cat, source, n in found:
            frame.loc[names[cat], source] = n
        frame["total"] = frame.sum(axis=1)
        frame.loc["total"] = frame.sum(axis=0)
        return frame

    # -- what to label next --------------------------------------------------------------
    def _unlabelled(self, split: str | None) -> list[ImageRecord]:
        counts = self.image_box_counts()
        return [r for r in self.images(split) if not counts.get(r.id) and not r.reviewed]

    def suggest_next(
        self,
        n: int | None = 10,
        split: str | None = "train",
        run: int | None = None,
        predict: bool = True,
        *,
        device: str = "auto",
        model: Any = None,
    ) -> pd.DataFrame:
        """The unlabelled images, and tiles of divided images, worth labelling next: most uncertain first.

        A candidate is an image of ``split`` (None: train and evaluate) without boxes and not marked done,
        or, for an image divided into a grid, each tile not marked done without a box centred in it. Its
        ``uncertainty`` sums :func:`uncertainty` over the model's predictions centred in it, at
        ``project.threshold``: large where many boxes score near the threshold (the model is undecided),
        small where it is sure either way. Ties go to fewer confident boxes. The predictions are the
        image's current ones when they come from the run (``run`` None: the newest finished run);
        ``predict=True`` first predicts the others (a job, waited for), ``predict=False`` lists them last
        with ``uncertainty`` NaN (``device``, ``model``: as for :meth:`predict`). Columns: ``image`` (id), ``name``, ``split``, ``tile`` (x, y, w, h, or
        None for a whole image), ``uncertainty``, ``uncertain_boxes`` (near the threshold),
        ``confident_boxes`` (at or above it, not near), ``boxes`` (at or above it). ``n`` None: every row.
        """
        import pandas as pd

        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ArgumentError(f"n is a whole number of at least 1 (or None), got {n!r}")
        splits = ["train", "evaluate"] if split is None else [check_split(split)]
        counts = self.image_box_counts()
        records = [
            r
            for s in splits
            for r in self.images(s)
            if not r.reviewed and (r.grid is not None or not counts.get(r.id))
        ]
        run_id = self._prediction._checkpoint(run)[0] if records else None
        missing = {r.id for r in records if self._store.predictions.current_run(r.id) != (True, run_id)}
        if predict and missing:
            todo = [r for r in records if r.id in missing]
            self.predict(todo, run=run_id, device=device, model=model).wait(raise_on_error=True)
            missing = set()
        t = float(self.threshold)
        rows = []
        for rec in records:
            det = None if rec.id in missing else self._store.predictions.of_image(rec.id, run_id)
            windows: list[Any] = [None]
            if rec.grid is not None:
                boxes = self.annotations(rec).xyxy
                done = self._store.reviews.of_image(rec.id)
                windows = [
                    w
                    for w in rec.windows()
                    if not centres_inside(boxes, [w]).any() and not (len(done) and _covered(w, done))
                ]
            for w in windows:
                rows.append(_row(rec, w, det, t))
        frame = pd.DataFrame(
            rows,
            columns=[
                "image", "name", "split", "tile", "uncertainty", "uncertain_boxes", "confident_boxes", "boxes"
            ],
        )  # fmt: skip
        frame = frame.sort_values(
            ["uncertainty", "confident_boxes"], ascending=[False, True], na_position="last", kind="stable"
        ).reset_index(drop=True)
        return frame if n is None else frame.head(int(n))


def _ids(det: Detections) -> list[int]:
    return [] if det.ids is None else [int(i) for i in det.ids]


def _covered(window: Any, done: np.ndarray) -> bool:
    """Whether a tile window ``(x, y, w, h)`` is one of the reviewed windows ``done`` (its centre in one)."""
    x, y, w, h = (float(v) for v in window)
    return bool(centres_inside(np.array([[x, y, x + w, y + h]]), done)[0])


def _row(rec: ImageRecord, window: Any, det: Detections | None, t: float) -> tuple[Any, ...]:
    tile = None if window is None else tuple(int(v) for v in window)
    if det is None:
        return (rec.id, rec.name, rec.split, tile, np.nan, 0, 0, 0)
    if window is not None:
        det = det[centres_inside(det.xyxy, [window])]
    s = np.zeros(0) if det.confidence is None else det.confidence
    u = uncertainty(s, t)
    near = u >= 0.25  # margin below one half
    above = s >= t
    return (
        rec.id,
        rec.name,
        rec.split,
        tile,
        float(u.sum()),
        int(near.sum()),
        int((above & ~near).sum()),
        int(above.sum()),
    )
