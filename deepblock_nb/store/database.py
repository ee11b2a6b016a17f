"""Thread-safe access to the project's SQLite file.

SQLite in WAL mode: readers never block the writer. Each thread gets its own
connection; writes are serialised by one lock per database (and, across processes,
by ``BEGIN IMMEDIATE`` with a long busy timeout), so concurrent writers never see
"database is locked". Every change is one transaction (``with db.write() as cx``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepblock_nb.core.detections import Detections
from deepblock_nb.errors import ProjectError
from deepblock_nb.store.schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_KEY

__all__ = ["Database"]

BUSY_TIMEOUT_MS = 60_000


class Database:
    """The project database. Safe to share between threads."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        if not create and not self.path.is_file():
            raise ProjectError(f"{self.path}: no project database here")
        try:
            self._migrate(create)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ProjectError(
                f"{self.path}: not a readable deepblock_nb database ({exc}). "
                "Restore it from a backup, or create a new project."
            ) from exc

    # -- connections and transactions ---------------------------------------
    def _connect(self) -> sqlite3.Connection:
        cx = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        cx.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cx.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a killed process loses nothing committed; only a power
        # cut may lose the last transactions, never consistency.
        cx.execute("PRAGMA synchronous = NORMAL")
        cx.execute("PRAGMA foreign_keys = ON")
        return cx

    @property
    def cx(self) -> sqlite3.Connection:
        """This thread's connection."""
        if self._closed:
            raise ProjectError(f"{self.path}: the project is closed")
        cx = getattr(self._local, "cx", None)
        if cx is None:
            cx = self._connect()
            self._local.cx = cx
            with self._write_lock:
                self._all.append((threading.current_thread(), cx))
        return cx

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (on any exception)."""
        with self._write_lock:
            cx = self.cx
            if cx.in_transaction:  # nested: join the outer transaction
                yield cx
                return
            cx.execute("BEGIN IMMEDIATE")
            try:
                yield cx
            except BaseException:
                cx.execute("ROLLBACK")
                raise
            cx.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        cur = self.cx.execute(sql, params)
        cur.row_factory = sqlite3.Row  # type: ignore[assignment]
        return cur.fetchall()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.cx.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the connections of this thread and of ended threads; refuse further use.

        A connection another live thread may be using right now is not closed under
        it (that could crash the interpreter): it is released when its thread ends.
        """
        self._closed = True
        with self._write_lock:
            me = threading.current_thread()
            for thread, cx in self._all:
                if thread is me or not thread.is_alive():
                    with contextlib.suppress(Exception):
                        cx.close()
            self._all.clear()

    def _migrate(self, create: bool) -> None:
        with self.write() as cx:
            has_meta = cx.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if not has_meta:
                if not create:
                    raise ProjectError(f"{self.path}: the file is an SQLite database but not a project")
                version = 0
            else:
                version = int(self.scalar("SELECT value FROM meta WHERE key=?", (SCHEMA_VERSION_KEY,)) or 0)
            if version > SCHEMA_VERSION:
                raise ProjectError(
                    f"{self.path}: written by a newer deepblock_nb (schema {version}, this version "
                    f"reads up to {SCHEMA_VERSION}); upgrade deepblock_nb to open it"
                )
            for sql in MIGRATIONS[version:]:
                for statement in _statements(sql):
                    cx.execute(statement)
            if version < SCHEMA_VERSION:
                cx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    (SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)),
                )

    @property
    def schema_version(self) -> int:
        return int(self.scalar("SELECT value FROM meta WHERE key=?", (SCHEMA_VERSION_KEY,)))

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        value = self.scalar("SELECT value FROM meta WHERE key=?", (key,))
        return default if value is None else json.loads(value)

    def set_meta(self, key: str, value: Any) -> None:
        with self.write() as cx:
            cx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- runs and history -----------------------------------------------------
    def create_run(self, model: str, config: dict[str, Any]) -> int:
        with self.write() as cx:
            cur = cx.execute(
                "INSERT INTO runs(model, config, status, created) VALUES (?, ?, 'created', ?)",
                (model, json.dumps(config, default=str), time.time()),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def update_run(
        self,
        run_id: int,
        *,
        status: str | None = None,
        config: dict[str, Any] | None = None,
        best_score: float | None = None,
        epochs_done: int | None = None,
        finished: bool = False,
    ) -> None:
        sets: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", status),
            ("config", None if config is None else json.dumps(config, default=str)),
            ("best_score", best_score),
            ("epochs_done", epochs_done),
            ("finished", time.time() if finished else None),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if not sets:
            return
        with self.write() as cx:
            cx.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run_dict(rows[0]) if rows else None

    def runs(self) -> list[dict[str, Any]]:
        return [_run_dict(r) for r in self.query("SELECT * FROM runs ORDER BY id")]

    def last_run_id(self, status: str | None = "finished") -> int | None:
        """The newest run, optionally only among runs with this status."""
        if status is None:
            return self.scalar("SELECT max(id) FROM runs")
        return self.scalar("SELECT max(id) FROM runs WHERE status = ?", (status,))

    def add_history(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.write() as cx:
            start = cx.execute(
                "SELECT coalesce(max(seq), -1) + 1 FROM history WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            cx.executemany(
                "INSERT INTO history(run_id, seq, row) VALUES (?, ?, ?)",
                [(run_id, start + i, json.dumps(r, default=_json_default)) for i, r in enumerate(rows)],
            )

    def history(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.cx.execute("SELECT row FROM history WHERE run_id = ? ORDER BY seq", (run_id,))
        return [json.loads(r[0]) for r in rows]

    # -- predictions ----------------------------------------------------------
    def replace_predictions(self, image_id: int, run_id: int | None, det: Detections) -> None:
        """Store an image's predictions for a run, replacing earlier ones of that run."""
        if det.confidence is None:
            raise ValueError("predictions need confidence scores")
        rows = [
            (image_id, run_id, int(c), *map(float, b), float(s))
            for b, c, s in zip(det.xyxy, det.class_id, det.confidence)
        ]
        with self.write() as cx:
            cx.execute("DELETE FROM predictions WHERE image_id = ? AND run_id IS ?", (image_id, run_id))
            cx.executemany(
                "INSERT INTO predictions(image_id, run_id, category_id, x1, y1, x2, y2, score) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def predictions(self, image_id: int, run_id: int | None = None, min_score: float = 0.0) -> Detections:
        """An image's stored predictions with ``score >= min_score``.

        ``run_id`` None means the newest run that has predictions for this image.
        """
        if run_id is None:
            run_id = self.scalar(
                "SELECT run_id FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image_id,)
            )
        rows = self.cx.execute(
            "SELECT id, category_id, x1, y1, x2, y2, score FROM predictions "
            "WHERE image_id = ? AND run_id IS ? AND score >= ? ORDER BY score DESC, id",
            (image_id, run_id, float(min_score)),
        ).fetchall()
        if not rows:
            return Detections(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
        a = np.asarray(rows, dtype=np.float64)
        return Detections(a[:, 2:6], a[:, 1].astype(np.int64), a[:, 6], a[:, 0].astype(np.int64))

    def prediction_run(self, image_id: int) -> int | None:
        return self.scalar(
            "SELECT run_id FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image_id,)
        )

    def delete_predictions(self, image_id: int | None = None) -> None:
        with self.write() as cx:
            if image_id is None:
                cx.execute("DELETE FROM predictions")
            else:
                cx.execute("DELETE FROM predictions WHERE image_id = ?", (image_id,))

    # -- evaluations ----------------------------------------------------------
    def save_evaluation(self, run_id: int | None, report: dict[str, Any]) -> int:
        with self.write() as cx:
            cur = cx.execute(
                "INSERT INTO evaluations(run_id, created, report) VALUES (?, ?, ?)",
                (run_id, time.time(), json.dumps(report, default=_json_default)),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def evaluations(self, run_id: int | None = None) -> list[dict[str, Any]]:
        if run_id is None:
            rows = self.cx.execute("SELECT id, run_id, created, report FROM evaluations ORDER BY id")
        else:
            rows = self.cx.execute(
                "SELECT id, run_id, created, report FROM evaluations WHERE run_id = ? ORDER BY id",
                (run_id,),
            )
        return [{"id": i, "run_id": r, "created": c, "report": json.loads(rep)} for i, r, c, rep in rows]


def _statements(sql: str) -> list[str]:
    parts: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
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
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
