"""Annotations: the labelled boxes of each image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepblock_nb.core.detections import Detections
from deepblock_nb.store.database import Database

__all__ = ["Annotations", "ExportBoxes", "ImportedBox"]


@dataclass(frozen=True)
class ImportedBox:
    """One box read from an annotation file. ``src_w``/``src_h``: the width and height
    exactly as the file gave them (COCO xywh), so an export writes the same floats."""

    image_id: int
    category_id: int
    xyxy: tuple[float, float, float, float]
    src_w: float | None
    src_h: float | None
    source: str


@dataclass(frozen=True)
class ExportBoxes:
    """An image's boxes for an export: ``xyxy (N, 4)``, ``category_id (N,)``,
    ``src_wh (N, 2)`` with NaN where the box has no imported width/height, and each
    box's ``source``."""

    xyxy: np.ndarray
    category_id: np.ndarray
    src_wh: np.ndarray
    source: list[str]


class Annotations:
    """The ``annotations`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of_image(self, image_id: int) -> Detections:
        rows = self._db.query(
            "SELECT id, category_id, x1, y1, x2, y2 FROM annotations WHERE image_id = ? ORDER BY id",
            (int(image_id),),
        )
        if not rows:
            return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), None, np.zeros(0, np.int64))
        xyxy = np.array([(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows], np.float64)
        return Detections(
            xyxy,
            np.array([r["category_id"] for r in rows], np.int64),
            None,
            np.array([r["id"] for r in rows], np.int64),
        )

    def for_export(self, image_id: int) -> ExportBoxes:
        rows = self._db.query(
            "SELECT category_id, x1, y1, x2, y2, src_w, src_h, source FROM annotations "
            "WHERE image_id = ? ORDER BY id",
            (int(image_id),),
        )
        xyxy = np.array([(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows], np.float64).reshape(-1, 4)
        src = np.array(
            [(np.nan, np.nan) if r["src_w"] is None else (r["src_w"], r["src_h"]) for r in rows], np.float64
        ).reshape(-1, 2)
        cats = np.array([r["category_id"] for r in rows], np.int64)
        return ExportBoxes(xyxy, cats, src, [str(r["source"]) for r in rows])

    def sources(self, box_ids: Sequence[int] | np.ndarray) -> dict[int, str]:
        """``{box id: source}`` ("manual", "imported", ...) of the given boxes that exist."""
        ids = [int(i) for i in box_ids]
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit is far above 500
            chunk = ids[start : start + 500]
            rows = self._db.query(
                f"SELECT id, source FROM annotations WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            out.update({int(r["id"]): str(r["source"]) for r in rows})
        return out

    def image_of(self, box_id: int) -> int | None:
        """The id of the image a box belongs to (None: no such box)."""
        value = self._db.scalar("SELECT image_id FROM annotations WHERE id = ?", (int(box_id),))
        return None if value is None else int(value)

    def add(
        self,
        image_id: int,
        category_ids: Sequence[int] | np.ndarray,
        xyxy: np.ndarray,
        source: str = "manual",
    ) -> np.ndarray:
        """Insert boxes of one image (joins the caller's transaction); returns their ids ``(N,)``."""
        with self._db.write() as cx:
            first = int(cx.execute("SELECT coalesce(max(id), 0) + 1 FROM annotations").fetchone()[0])
            ids = np.arange(first, first + len(xyxy), dtype=np.int64)
            cx.executemany(
                "INSERT INTO annotations(id, image_id, category_id, x1, y1, x2, y2, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(i), int(image_id), int(c), *b, source)
                    for i, c, b in zip(ids, category_ids, np.asarray(xyxy, np.float64).tolist())
                ],
            )
        return ids

    def add_imported(self, boxes: Sequence[ImportedBox]) -> int:
        """Insert boxes read from a file (joins the caller's transaction); returns how many."""
        with self._db.write() as cx:
            cx.executemany(
                "INSERT INTO annotations(image_id, category_id, x1, y1, x2, y2, src_w, src_h, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(b.image_id, b.category_id, *b.xyxy, b.src_w, b.src_h, b.source) for b in boxes],
            )
        return len(boxes)

    def update(self, box_id: int, xyxy: np.ndarray | None = None, category_id: int | None = None) -> None:
        """Move/resize (forgets the imported width/height) and/or relabel one box; a box accepted
        from a proposal becomes "corrected" (and so does its proposal)."""
        with self._db.write() as cx:
            if xyxy is not None:
                cx.execute(
                    "UPDATE annotations SET x1=?, y1=?, x2=?, y2=?, src_w=NULL, src_h=NULL WHERE id=?",
                    (*np.asarray(xyxy, np.float64).reshape(4).tolist(), int(box_id)),
                )
            if category_id is not None:
                cx.execute(
                    "UPDATE annotations SET category_id = ? WHERE id = ?", (int(category_id), int(box_id))
                )
            if xyxy is not None or category_id is not None:  # a proposal taken as it was, then changed
                cx.execute(
                    "UPDATE annotations SET source = 'corrected' WHERE id = ? AND source = 'accepted'",
                    (int(box_id),),
                )
                cx.execute(
                    "UPDATE proposals SET state = 'corrected' WHERE annotation_id = ? AND state = 'accepted'",
                    (int(box_id),),
                )

    def delete(self, box_id: int) -> None:
        with self._db.write() as cx:
            cx.execute("DELETE FROM annotations WHERE id = ?", (int(box_id),))

    def counts_by_image(self) -> dict[int, int]:
        """Boxes per image id (images without boxes are absent)."""
        rows = self._db.query("SELECT image_id, count(*) AS n FROM annotations GROUP BY image_id")
        return {int(r["image_id"]): int(r["n"]) for r in rows}

    def counts_by_source(self, split: str | None = None) -> list[tuple[int, str, int]]:
        """``(category id, source, boxes)`` over the images of one split, or all."""
        where = "" if split is None else "WHERE i.split = ?"
        rows = self._db.query(
            "SELECT a.category_id AS c, a.source AS s, count(*) AS n FROM annotations a "
            f"JOIN images i ON i.id = a.image_id {where} GROUP BY a.category_id, a.source",
            () if split is None else (split,),
        )
        return [(int(r["c"]), str(r["s"]), int(r["n"])) for r in rows]

    def count(self) -> int:
        return int(self._db.scalar("SELECT count(*) FROM annotations"))
