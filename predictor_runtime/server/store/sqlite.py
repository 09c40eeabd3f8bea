"""The embedded backend: SQLite under the state directory.

One file, ``<state_dir>/state.sqlite3``, in WAL mode (or an in-memory database when no
state directory is given, for servers built in tests). Every write is one ``BEGIN
IMMEDIATE`` transaction, so writers of every worker process are serialised and a crash
mid-write leaves the previous consistent state. Other processes' commits are noticed
through ``PRAGMA data_version`` (microseconds, no I/O). Request logs go to a second file,
``<state_dir>/request_logs.sqlite3``, so their writes never wait on state writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .base import Migration, SqlStore, Token

STATE_FILE = "state.sqlite3"
LOG_FILE = "request_logs.sqlite3"

MIGRATIONS: tuple[Migration, ...] = (
    # IF NOT EXISTS: adopts a state written before schema versions were recorded.
    Migration(
        1,
        "models, versions and operations as API JSON",
        (
            "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, resource TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS versions (model TEXT NOT NULL, name TEXT NOT NULL, "
            "resource TEXT NOT NULL, PRIMARY KEY (model, name))",
            "CREATE TABLE IF NOT EXISTS operations (name TEXT PRIMARY KEY, "
            "create_time TEXT NOT NULL, resource TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "operations.pending_key: find unfinished operations of a version by index",
        (
            "ALTER TABLE operations ADD COLUMN pending_key TEXT",
            "UPDATE operations SET pending_key = json_extract(resource, '$._model') || '/' || "
            "coalesce(json_extract(resource, '$._version'), '') "
            "WHERE json_extract(resource, '$.done') = 0 "
            "AND json_extract(resource, '$._model') IS NOT NULL",
            "CREATE INDEX operations_pending ON operations (pending_key)",
        ),
    ),
)


class SQLiteStore(SqlStore):
    """The state in ``<state_dir>/state.sqlite3``; safe to share between threads.

    Never share one across ``fork()``: close it in the parent and open a new one in each
    child (SQLite connections must not cross a fork).

    :param state_dir: the server's state directory (created if missing); None for an
        in-memory database.
    :param migrate_upto: apply migrations only up to this version (tests of upgrades).
    """

    SQL = {
        "put_model": "INSERT OR REPLACE INTO models (name, resource) VALUES (?, ?)",
        "put_version": "INSERT OR REPLACE INTO versions (model, name, resource) VALUES (?, ?, ?)",
        "put_operation": "INSERT OR REPLACE INTO operations "
        "(name, create_time, pending_key, resource) VALUES (?, ?, ?, ?)",
        "touch": "UPDATE versions SET resource = json_set(resource, '$.lastUseTime', ?) "
        "WHERE model = ? AND name = ? "
        "AND coalesce(json_extract(resource, '$.lastUseTime'), '') < ?",
    }

    def __init__(self, state_dir: str | Path | None, *, migrate_upto: int | None = None) -> None:
        super().__init__()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.path: Path | None = None
        target = ":memory:"
        if self.state_dir is not None:
            self.path = self.state_dir / STATE_FILE
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path)
        self.label = str(self.path or ":memory:")
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self.migrate(MIGRATIONS, migrate_upto)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of writes: all of them land, or none."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed_since(self, token: Token) -> tuple[bool, Token]:
        """Another connection committed since ``token`` (own commits are not counted)."""
        dv = self.data_version()
        return dv != token, dv

    def subscribe(self, callback: Callable[[], None]) -> bool:
        """SQLite cannot push changes: the server polls :meth:`changed_since`."""
        return False

    def transient(self, exc: BaseException) -> str | None:
        """The database stayed locked by another process."""
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            return f"the state database is busy ({exc})"
        return None

    def request_log_sink(self) -> SQLiteLogSink:
        """Request logs in ``<state_dir>/request_logs.sqlite3``."""
        if self.state_dir is None:
            raise ValueError("an in-memory state has no request logs")
        return SQLiteLogSink(self.state_dir / LOG_FILE)


class SQLiteLogSink:
    """Request-log tables (named like the BigQuery table) in their own SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._tables: set[str] = set()

    def open(self) -> None:
        """Connect (in the writer thread)."""
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")

    def write(self, by_table: dict[str, list[tuple[Any, ...]]]) -> None:
        """Append the rows of every table in one transaction."""
        conn = self._conn
        assert conn is not None, "open() first"
        try:
            conn.execute("BEGIN")
            for table, values in by_table.items():
                quoted = '"' + table.replace('"', '""') + '"'
                if table not in self._tables:
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {quoted} (model TEXT, model_version TEXT, "
                        "time TEXT, raw_data TEXT, raw_prediction TEXT, groundtruth TEXT)"
                    )
                    self._tables.add(table)
                conn.executemany(
                    f"INSERT INTO {quoted} (model, model_version, time, raw_data, "
                    "raw_prediction) VALUES (?, ?, ?, ?, ?)",
                    values,
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Disconnect."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
