"""Predictions: each image's stored boxes per run, and which run's are current.

An image's *current* predictions are those of the run recorded for it in
``current_predictions``, set in the same transaction that stores them. A
re-predict replaces that run's boxes of the image and makes that run current,
also when it found nothing; clearing removes the image's boxes and its record.
"""

from __future__ import annotations

import time

import numpy as np

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ArgumentError
from deepblock_nb.store.database import Database

__all__ = ["Predictions"]


def _empty() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))


class Predictions:
    """The ``predictions`` and ``current_predictions`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def replace(self, image_id: int, run_id: int | None, det: Detections) -> None:
        """Store an image's predictions by a run, replacing that run's earlier ones,
        and make them the image's current predictions."""
        if det.confidence is None:
            raise ArgumentError("predictions need confidence scores (Detections.confidence)")
        rows = [
            (int(image_id), run_id, int(c), *map(float, b), float(s))
            for b, c, s in zip(det.xyxy, det.class_id, det.confidence)
        ]
        with self._db.write() as cx:
            cx.execute("DELETE FROM predictions WHERE image_id = ? AND run_id IS ?", (int(image_id), run_id))
            cx.executemany(
                "INSERT INTO predictions(image_id, run_id, category_id, x1, y1, x2, y2, score) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            cx.execute(
                "INSERT OR REPLACE INTO current_predictions(image_id, run_id, updated) VALUES (?, ?, ?)",
                (int(image_id), run_id, time.time()),
            )

    def current_run(self, image_id: int) -> tuple[bool, int | None]:
        """``(has current predictions, their run id)`` of an image."""
        row = self._db.one("SELECT run_id FROM current_predictions WHERE image_id = ?", (int(image_id),))
        return (False, None) if row is None else (True, None if row["run_id"] is None else int(row["run_id"]))

    def of_image(self, image_id: int, run_id: int | None = None, min_score: float = 0.0) -> Detections:
        """An image's predictions scoring ``>= min_score``: of ``run_id``, or (None) its current ones."""
        if run_id is None:
            known, run_id = self.current_run(image_id)
            if not known:
                return _empty()
        rows = self._db.query(
            "SELECT id, category_id, x1, y1, x2, y2, score FROM predictions "
            "WHERE image_id = ? AND run_id IS ? AND score >= ? ORDER BY score DESC, id",
            (int(image_id), run_id, float(min_score)),
        )
        if not rows:
            return _empty()
        return Detections(
            np.array([(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows], np.float64),
            np.array([r["category_id"] for r in rows], np.int64),
            np.array([r["score"] for r in rows], np.float64),
            np.array([r["id"] for r in rows], np.int64),
        )

    def clear(self, image_id: int | None = None) -> None:
        """Delete the predictions (of every run) of one image, or of all images."""
        with self._db.write() as cx:
            if image_id is None:
                cx.execute("DELETE FROM predictions")
                cx.execute("DELETE FROM current_predictions")
            else:
                cx.execute("DELETE FROM predictions WHERE image_id = ?", (int(image_id),))
                cx.execute("DELETE FROM current_predictions WHERE image_id = ?", (int(image_id),))
