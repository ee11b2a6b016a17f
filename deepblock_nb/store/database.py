"""Thread-safe access to the project's SQLite file.

SQLite in WAL mode: readers never block the writer. Each thread gets its own
connection; writes are serialised by one lock per database (and, across processes,
by ``BEGIN IMMEDIATE`` with a long busy timeout), so concurrent writers never see
"database is locked". Every change is one transaction (``with db.write() as cx``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deepblock_nb.errors import ProjectError
from deepblock_nb.store.schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_KEY

__all__ = ["Database"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 60_000


class _Connection:
    """One thread's connection; closed when the thread's local storage is dropped."""

    def __init__(self, cx: sqlite3.Connection, forget: Callable[[int], None]) -> None:
        self.cx = cx
        self._forget = forget

    def __del__(self) -> None:
        self._forget(id(self))
        with contextlib.suppress(Exception):
            self.cx.close()


class Database:
    """The project database. Safe to share between threads.

    Each thread gets its own connection, closed when that thread ends (or by
    :meth:`close`). Rows come back as :class:`sqlite3.Row`: columns by name.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._open: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._open_lock = threading.RLock()  # reentrant: a connection's __del__ may run inside
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

    # -- connections ----------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        cx = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        cx.row_factory = sqlite3.Row
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
        holder: _Connection | None = getattr(self._local, "holder", None)
        if holder is None:
            self._close_ended()
            holder = _Connection(self._connect(), self._forget)
            self._local.holder = holder  # dropped, and the connection closed, when the thread ends
            with self._open_lock:
                self._open[id(holder)] = (threading.current_thread(), holder.cx)
        return holder.cx

    def _forget(self, key: int) -> None:
        with self._open_lock:
            self._open.pop(key, None)

    def _close_ended(self) -> None:
        """Close the connections of threads that have ended (their thread-local was not collected yet)."""
        with self._open_lock:
            ended = [k for k, (thread, _) in self._open.items() if not thread.is_alive()]
            gone = [self._open.pop(k)[1] for k in ended]
        for cx in gone:
            with contextlib.suppress(Exception):
                cx.close()

    @property
    def open_connections(self) -> int:
        """How many connections are open now (one per live thread that used the database)."""
        self._close_ended()
        with self._open_lock:
            return len(self._open)

    # -- transactions ----------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (on any exception).

        A ``write()`` inside another on the same thread joins the outer one. Work
        handed to :meth:`after_commit` meanwhile runs once the outermost commits,
        and is dropped if it rolls back.
        """
        with self._write_lock:
            cx = self.cx
            if cx.in_transaction:  # nested: join the outer transaction
                yield cx
                return
            cx.execute("BEGIN IMMEDIATE")
            self._local.pending = []
            try:
                yield cx
            except BaseException:
                self._local.pending = None
                cx.execute("ROLLBACK")
                raise
            try:
                cx.execute("COMMIT")
            finally:
                pending, self._local.pending = self._local.pending, None
        for fn in pending:  # outside the write lock: listeners may read or write again
            try:
                fn()
            except Exception:
                log.exception("after-commit callback %r raised", fn)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` once this thread's transaction commits; at once outside of one."""
        pending = getattr(self._local, "pending", None)
        if pending is None:
            fn()
        else:
            pending.append(fn)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.cx.execute(sql, params).fetchall()

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.cx.execute(sql, params).fetchone()  # type: ignore[no-any-return]

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.cx.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the connections of this thread and of ended threads; refuse further use.

        A connection another live thread may be using right now is not closed under
        it (that could crash the interpreter): it is closed when its thread ends.
        """
        self._closed = True
        me = threading.current_thread()
        with self._write_lock, self._open_lock:
            mine = [k for k, (t, _) in self._open.items() if t is me or not t.is_alive()]
            gone = [self._open.pop(k)[1] for k in mine]
        for cx in gone:
            with contextlib.suppress(Exception):
                cx.close()

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
