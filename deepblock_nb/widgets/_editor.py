"""The Labeler's own edits: a Project box call, then the in-memory boxes follow it."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from deepblock_nb.core.detections import Detections
from deepblock_nb.widgets._boxindex import BoxIndex

__all__ = ["MANUAL_SOURCE", "Editor", "ShownIndex"]

MANUAL_SOURCE = "manual"  # the ``source`` the project gives a box added by hand


class ShownIndex:
    """A :class:`BoxIndex` over the shown boxes (a Detections) that follows edits.

    Index ids never move (a removed box leaves a dead id, an added one takes the
    next id) while shown rows shift, so ``row_to_id`` ``(R,)`` and ``id_to_row``
    ``(I,)`` (-1 for removed ids) map between them; ``class_id`` ``(I,)`` and
    ``index.coords`` ``(I, 4)`` are in id space, as ``ImageView.stroke_boxes(index=...)``
    wants them.
    """

    def __init__(self, det: Detections, extent_wh: tuple[float, float]) -> None:
        n = len(det.xyxy)
        self.index = BoxIndex(det.xyxy, extent_wh=extent_wh)
        self.row_to_id = np.arange(n, dtype=np.int64)
        self.id_to_row = np.arange(n, dtype=np.int64)
        self.class_id = det.class_id.copy()

    def add(self, box: npt.ArrayLike, class_id: int) -> None:
        """A box appended as the last shown row."""
        i = self.index.add(box)
        self.id_to_row = np.append(self.id_to_row, len(self.row_to_id))
        self.row_to_id = np.append(self.row_to_id, i)
        self.class_id = np.append(self.class_id, class_id)

    def update(self, row: int, box: npt.ArrayLike | None = None, class_id: int | None = None) -> None:
        """Shown row ``row`` moved to ``box`` and/or relabelled."""
        i = int(self.row_to_id[row])
        if box is not None:
            self.index.update(i, box)
        if class_id is not None:
            self.class_id[i] = class_id

    def remove(self, row: int) -> None:
        """Shown row ``row`` is gone; the later rows move up by one."""
        i = int(self.row_to_id[row])
        self.index.remove(i)
        self.id_to_row[i] = -1
        self.id_to_row[self.id_to_row > row] -= 1
        self.row_to_id = np.delete(self.row_to_id, row)

    def hit(self, point_xy: tuple[float, float]) -> int:
        """Shown row of the smallest shown box containing the point, or -1."""
        i = self.index.hit(point_xy)
        return -1 if i < 0 else int(self.id_to_row[i])


def _drop(det: Detections, row: int) -> Detections:
    return Detections(
        np.delete(det.xyxy, row, axis=0),
        np.delete(det.class_id, row),
        ids=None if det.ids is None else np.delete(det.ids, row),
    )


def _row(det: Detections, box_id: int) -> int:
    k = np.flatnonzero(det.ids == box_id)
    return int(k[0]) if len(k) else -1


class Editor:
    """The Project's box methods, run as a Labeler's own edits: the shown image's
    in-memory boxes (and the box list's sources) follow each change, and only the
    overlay and the box list are redrawn; the project's boxes are not re-read.

    The shown boxes and their spatial index follow each change in place (a few
    array operations) instead of being recomputed; ``redraw=False`` leaves the
    overlay redraw to the caller.
    """

    def __init__(self, lab: Any, redraw: bool = True) -> None:
        self._lab = lab
        self._redraw = redraw

    def _visible(self, class_id: int) -> bool:
        return len(self._lab.toggles.shown_rows(np.array([class_id]))) == 1

    def _synced(self, shown: Detections) -> ShownIndex | None:
        """The Labeler's index when it is in step with ``shown`` (else it is rebuilt when next needed)."""
        lab = self._lab
        return lab._index if lab._index is not None and lab._index_of is shown else None

    def _follow(self, boxes: Detections, shown: Detections | None) -> None:
        """Take the edited boxes and, when given, the shown ones kept in step with them
        (None: recompute the shown boxes and rebuild the index when next needed)."""
        lab = self._lab
        if shown is None:
            lab._shown_of = (None, None)
        else:
            if lab._index_of is lab._shown_det:
                lab._index_of = shown
            lab._shown_of, lab._shown_det = (boxes, lab.toggles.key()), shown
        lab._boxes = boxes
        lab._boxes_changed(redraw=self._redraw)

    def add_box(self, image: Any, category: Any, xyxy: Any, source: str = MANUAL_SOURCE) -> int:
        lab = self._lab
        with lab._own():
            box_id = lab.project.add_box(image, category, xyxy, source=source)
        self._added(image, category, xyxy, box_id, source)
        return box_id

    def accept_proposal(self, proposal: int, xyxy: Any, category: Any) -> int:
        """``project.accept_proposal`` of a proposal of the shown image, at ``xyxy`` as ``category``
        (its own, or corrected ones); the new box joins the in-memory boxes."""
        lab = self._lab
        with lab._own():
            box_id = lab.project.accept_proposal(proposal, xyxy=xyxy, category=category)
        if lab.image is not None:
            source = lab.project.annotation_sources([box_id]).get(box_id, "accepted")
            self._added(lab.image.id, category, xyxy, box_id, source)
        return box_id

    def reject_proposals(self, image: Any, ids: Any) -> None:
        self._lab.project.reject_proposals(image, ids)

    def reopen_proposals(self, ids: Any) -> None:
        self._lab.project.reopen_proposals(ids)

    def _added(self, image: Any, category: Any, xyxy: Any, box_id: int, source: str) -> None:
        lab = self._lab
        det = lab._boxes
        if det is not None and lab.image is not None and int(image) == lab.image.id:
            xy = lab._clip(np.asarray(xyxy, dtype=np.float64).reshape(1, 4))
            cid = lab.project.category(category).id
            shown = lab._shown()
            new = Detections(
                np.concatenate([det.xyxy, xy]), np.append(det.class_id, cid), ids=np.append(det.ids, box_id)
            )
            new_shown = shown
            if self._visible(cid):
                if shown is det:
                    new_shown = new
                else:
                    ids = np.append(shown.ids, box_id)
                    new_shown = Detections(
                        np.concatenate([shown.xyxy, xy]), np.append(shown.class_id, cid), ids=ids
                    )
                index = self._synced(shown)
                if index is not None:
                    index.add(xy[0], cid)
            lab.box_list.sources[int(box_id)] = source
            self._follow(new, new_shown)

    def update_box(self, box_id: int, xyxy: Any = None, category: Any = None) -> None:
        lab = self._lab
        with lab._own():
            lab.project.update_box(box_id, xyxy=xyxy, category=category)
        det = lab._boxes
        k = -1 if det is None else _row(det, box_id)
        if k < 0:
            return
        shown = lab._shown()
        xy = None if xyxy is None else lab._clip(xyxy)
        cid = None if category is None else lab.project.category(category).id
        new_xyxy, new_cls = det.xyxy.copy(), det.class_id.copy()
        if xy is not None:
            new_xyxy[k] = xy
        if cid is not None:
            new_cls[k] = cid
        new = Detections(new_xyxy, new_cls, ids=det.ids)
        row = k if shown is det else _row(shown, box_id)
        index = self._synced(shown)
        new_shown: Detections | None = shown
        if row >= 0 and self._visible(int(new_cls[k])):
            if shown is det:
                new_shown = new
            else:
                s_xyxy, s_cls = shown.xyxy.copy(), shown.class_id.copy()
                s_xyxy[row], s_cls[row] = new_xyxy[k], new_cls[k]
                new_shown = Detections(s_xyxy, s_cls, ids=shown.ids)
            if index is not None:
                index.update(row, xy, cid)
        elif row >= 0:  # relabelled into a hidden category
            new_shown = _drop(shown, row)
            if index is not None:
                index.remove(row)
        elif self._visible(int(new_cls[k])):  # out of a hidden category: its row is not at the end
            new_shown = None
        self._follow(new, new_shown)

    def delete_box(self, box_id: int) -> None:
        lab = self._lab
        with lab._own():
            lab.project.delete_box(box_id)
        det = lab._boxes
        k = -1 if det is None else _row(det, box_id)
        if k < 0:
            return
        shown = lab._shown()
        new = _drop(det, k)
        row = k if shown is det else _row(shown, box_id)
        new_shown = shown
        if row >= 0:
            new_shown = new if shown is det else _drop(shown, row)
            index = self._synced(shown)
            if index is not None:
                index.remove(row)
        lab.box_list.sources.pop(int(box_id), None)
        self._follow(new, new_shown)
