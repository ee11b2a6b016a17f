"""The Labeler's own edits: a Project box call, then the in-memory boxes follow it."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepblock_nb.core.detections import Detections

__all__ = ["MANUAL_SOURCE", "Editor"]

MANUAL_SOURCE = "manual"  # the ``source`` the project gives a box added by hand


class Editor:
    """The Project's box methods, run as a Labeler's own edits: the shown image's
    in-memory boxes (and the box list's sources) follow each change, and only the
    overlay and the box list are redrawn; the project's boxes are not re-read."""

    def __init__(self, lab: Any) -> None:
        self._lab = lab

    def add_box(self, image: Any, category: Any, xyxy: Any, source: str = MANUAL_SOURCE) -> int:
        lab = self._lab
        with lab._own():
            box_id = lab.project.add_box(image, category, xyxy, source=source)
        det = lab._boxes
        if det is not None and lab.image is not None and int(image) == lab.image.id:
            xy = lab._clip(np.asarray(xyxy, dtype=np.float64).reshape(1, 4))
            lab._boxes = Detections(
                np.concatenate([det.xyxy, xy]),
                np.append(det.class_id, lab.project.category(category).id),
                ids=np.append(det.ids, box_id),
            )
            lab.box_list.sources[int(box_id)] = source
            lab._boxes_changed()
        return box_id

    def update_box(self, box_id: int, xyxy: Any = None, category: Any = None) -> None:
        lab = self._lab
        with lab._own():
            lab.project.update_box(box_id, xyxy=xyxy, category=category)
        det = lab._boxes
        if det is not None and box_id in det.ids:
            k = det.ids == box_id  # [N]
            new_xyxy, new_cls = det.xyxy.copy(), det.class_id.copy()
            if xyxy is not None:
                new_xyxy[k] = lab._clip(xyxy)
            if category is not None:
                new_cls[k] = lab.project.category(category).id
            lab._boxes = Detections(new_xyxy, new_cls, ids=det.ids)
            lab._boxes_changed()

    def delete_box(self, box_id: int) -> None:
        lab = self._lab
        with lab._own():
            lab.project.delete_box(box_id)
        det = lab._boxes
        if det is not None and box_id in det.ids:
            keep = det.ids != box_id  # [N]
            lab._boxes = Detections(det.xyxy[keep], det.class_id[keep], ids=det.ids[keep])
            lab.box_list.sources.pop(int(box_id), None)
            lab._boxes_changed()
