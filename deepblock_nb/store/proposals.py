"""Proposals: a run's predictions offered for labelling, and what became of each.

A proposal is *open* until the user decides: *accepted* (it became an annotation
as it was proposed), *corrected* (it became an annotation after a move, resize or
relabel) or *rejected*. Decided proposals are kept: the rejected ones so that the
same run does not propose them again, the others to say where an annotation came
from. An image's open proposals are those of the run that last proposed for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepblock_nb.core.detections import Detections
from deepblock_nb.store.database import Database

__all__ = ["PROPOSAL_STATES", "Proposals"]

PROPOSAL_STATES = ("open", "accepted", "corrected", "rejected")


def _detections(rows: Sequence[Any]) -> Detections:
    if not rows:
        return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    return Detections(
        np.array([(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows], np.float64),
        np.array([r["category_id"] for r in rows], np.int64),
        np.array([r["score"] for r in rows], np.float64),
        np.array([r["id"] for r in rows], np.int64),
    )


class Proposals:
    """The ``proposals`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def replace(self, image_id: int, run_id: int | None, det: Detections) -> np.ndarray:
        """Make ``det`` (with scores) the image's open proposals, by ``run_id``: its earlier open
        proposals (of any run) go, decided ones stay. Joins the caller's transaction; returns the ids."""
        scores = det.confidence if det.confidence is not None else np.ones(len(det.xyxy))
        now = time.time()
        with self._db.write() as cx:
            cx.execute("DELETE FROM proposals WHERE image_id = ? AND state = 'open'", (int(image_id),))
            first = int(cx.execute("SELECT coalesce(max(id), 0) + 1 FROM proposals").fetchone()[0])
            ids = np.arange(first, first + len(det.xyxy), dtype=np.int64)
            cx.executemany(
                "INSERT INTO proposals(id, image_id, run_id, category_id, x1, y1, x2, y2, score, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(i), int(image_id), run_id, int(c), *map(float, b), float(s), now)
                    for i, b, c, s in zip(ids, det.xyxy, det.class_id, scores)
                ],
            )
        return ids

    def of_image(
        self,
        image_id: int,
        states: Sequence[str] = ("open",),
        run_id: int | None = None,
        min_score: float = 0.0,
    ) -> Detections:
        """The image's proposals in ``states`` (of ``run_id`` only, when given), best score first."""
        where = f"image_id = ? AND state IN ({','.join('?' * len(states))}) AND score >= ?"
        params: list[Any] = [int(image_id), *states, float(min_score)]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(int(run_id))
        rows = self._db.query(
            f"SELECT id, category_id, x1, y1, x2, y2, score FROM proposals WHERE {where} ORDER BY score DESC, id",
            params,
        )
        return _detections(rows)

    def get(self, proposal_ids: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The records (as dicts) of the given proposals that exist, in the order given."""
        ids = [int(i) for i in proposal_ids]
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._db.query(
                f"SELECT * FROM proposals WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update({int(r["id"]): dict(r) for r in rows})
        return [found[i] for i in ids if i in found]

    def decide(self, proposal_id: int, state: str, annotation_id: int | None = None) -> None:
        """Record the user's decision on one proposal (joins the caller's transaction)."""
        with self._db.write() as cx:
            cx.execute(
                "UPDATE proposals SET state = ?, annotation_id = ?, decided = ? WHERE id = ?",
                (state, annotation_id, time.time(), int(proposal_id)),
            )

    def reopen(self, proposal_ids: Sequence[int] | np.ndarray) -> None:
        """Make decided proposals open again (an undo); joins the caller's transaction."""
        with self._db.write() as cx:
            cx.executemany(
                "UPDATE proposals SET state = 'open', annotation_id = NULL, decided = NULL WHERE id = ?",
                [(int(i),) for i in proposal_ids],
            )

    def rejected(self, image_id: int, run_id: int | None) -> Detections:
        """The proposals of ``run_id`` the user rejected on an image (not to propose again)."""
        rows = self._db.query(
            "SELECT id, category_id, x1, y1, x2, y2, score FROM proposals "
            "WHERE image_id = ? AND run_id IS ? AND state = 'rejected' ORDER BY id",
            (int(image_id), run_id),
        )
        return _detections(rows)

    def clear(self, image_id: int | None = None) -> None:
        """Delete the open proposals of one image, or of all images."""
        with self._db.write() as cx:
            if image_id is None:
                cx.execute("DELETE FROM proposals WHERE state = 'open'")
            else:
                cx.execute("DELETE FROM proposals WHERE image_id = ? AND state = 'open'", (int(image_id),))

    def counts(self) -> dict[str, int]:
        """Proposals per state, over the project."""
        rows = self._db.query("SELECT state, count(*) AS n FROM proposals GROUP BY state")
        return {s: 0 for s in PROPOSAL_STATES} | {str(r["state"]): int(r["n"]) for r in rows}
