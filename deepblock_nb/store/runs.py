"""Training runs: their settings and status, per-step history, and evaluation reports."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.store.database import Database

__all__ = ["RUN_STATUSES", "Runs"]

#: a run's life: created/queued, running, then one of the last four
RUN_STATUSES = ("created", "queued", "running", "finished", "stopped", "failed")


def _run(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    return d


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")  # a programming error, not user input


class Runs:
    """The ``runs``, ``history`` and ``evaluations`` tables. A run is a dict with the
    columns ``id, model, config (dict), status, created, finished, best_score, epochs_done``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, model: str, config: dict[str, Any], status: str = "created") -> int:
        with self._db.write() as cx:
            cur = cx.execute(
                "INSERT INTO runs(model, config, status, created) VALUES (?, ?, ?, ?)",
                (model, json.dumps(config, default=str), status, time.time()),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def update(
        self,
        run_id: int,
        *,
        status: str | None = None,
        config: dict[str, Any] | None = None,
        best_score: float | None = None,
        epochs_done: int | None = None,
        finished: bool = False,
    ) -> None:
        values = {
            "status": status,
            "config": None if config is None else json.dumps(config, default=str),
            "best_score": best_score,
            "epochs_done": epochs_done,
            "finished": time.time() if finished else None,
        }
        sets = {k: v for k, v in values.items() if v is not None}
        if not sets:
            return
        with self._db.write() as cx:
            cx.execute(
                f"UPDATE runs SET {', '.join(f'{k} = :{k}' for k in sets)} WHERE id = :id",
                {**sets, "id": int(run_id)},
            )

    def get(self, run_id: int) -> dict[str, Any] | None:
        row = self._db.one("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        return None if row is None else _run(row)

    def all(self) -> list[dict[str, Any]]:
        return [_run(r) for r in self._db.query("SELECT * FROM runs ORDER BY id")]

    def last_id(self, status: str | None = "finished") -> int | None:
        """The newest run, optionally only among runs with this status."""
        if status is None:
            value = self._db.scalar("SELECT max(id) FROM runs")
        else:
            value = self._db.scalar("SELECT max(id) FROM runs WHERE status = ?", (status,))
        return None if value is None else int(value)

    # -- history ---------------------------------------------------------------
    def add_history(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._db.write() as cx:
            start = cx.execute(
                "SELECT coalesce(max(seq), -1) + 1 FROM history WHERE run_id = ?", (int(run_id),)
            ).fetchone()[0]
            cx.executemany(
                "INSERT INTO history(run_id, seq, row) VALUES (?, ?, ?)",
                [(int(run_id), start + i, json.dumps(r, default=_json_default)) for i, r in enumerate(rows)],
            )

    def history(self, run_id: int, since: int = 0) -> list[dict[str, Any]]:
        """The run's history rows in order, from the ``since``-th on (0: all of them)."""
        rows = self._db.query(
            "SELECT row FROM history WHERE run_id = ? AND seq >= ? ORDER BY seq", (int(run_id), int(since))
        )
        return [json.loads(r["row"]) for r in rows]

    # -- evaluations -------------------------------------------------------------
    def save_evaluation(self, run_id: int | None, report: dict[str, Any]) -> int:
        with self._db.write() as cx:
            cur = cx.execute(
                "INSERT INTO evaluations(run_id, created, report) VALUES (?, ?, ?)",
                (run_id, time.time(), json.dumps(report, default=_json_default)),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def evaluations(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Stored reports, oldest first: dicts ``id, run_id, created, report``."""
        sql = "SELECT id, run_id, created, report FROM evaluations"
        rows = (
            self._db.query(sql + " ORDER BY id")
            if run_id is None
            else self._db.query(sql + " WHERE run_id = ? ORDER BY id", (int(run_id),))
        )
        return [{**dict(r), "report": json.loads(r["report"])} for r in rows]
