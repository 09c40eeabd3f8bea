"""SQLite persistence of models, versions and operations under the state directory.

One file, ``<state_dir>/state.sqlite3``, in WAL mode. Every write is one transaction, so a
crash mid-write leaves the previous consistent state. Resources are stored as the JSON the
API shows (AI Platform's ``Model``, ``Version``, ``Operation`` field names) plus the few
columns needed to find them, so the schema does not chase every field.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    resource TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (model, name)
);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY,
    create_time TEXT NOT NULL,
    resource TEXT NOT NULL
);
"""

STATE_FILE = "state.sqlite3"


class Store:
    """Transactional storage of API resources; safe to share between threads.

    :param state_dir: the server's state directory (created if missing).
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

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

    # -- writes (each may also run inside a caller's transaction) ----------------------

    def put_model(self, resource: dict[str, Any], conn: sqlite3.Connection | None = None) -> None:
        """Insert or replace a model resource (keyed by its short ``name``)."""
        self._write(
            conn,
            "INSERT OR REPLACE INTO models (name, resource) VALUES (?, ?)",
            (resource["name"], orjson.dumps(resource).decode()),
        )

    def delete_model(self, name: str, conn: sqlite3.Connection | None = None) -> None:
        """Delete a model and any versions it still has."""
        self._write(conn, "DELETE FROM versions WHERE model = ?", (name,))
        self._write(conn, "DELETE FROM models WHERE name = ?", (name,))

    def put_version(
        self, model: str, resource: dict[str, Any], conn: sqlite3.Connection | None = None
    ) -> None:
        """Insert or replace a version resource of ``model`` (keyed by its short ``name``)."""
        self._write(
            conn,
            "INSERT OR REPLACE INTO versions (model, name, resource) VALUES (?, ?, ?)",
            (model, resource["name"], orjson.dumps(resource).decode()),
        )

    def delete_version(self, model: str, name: str, conn: sqlite3.Connection | None = None) -> None:
        """Delete one version."""
        self._write(conn, "DELETE FROM versions WHERE model = ? AND name = ?", (model, name))

    def put_operation(
        self, resource: dict[str, Any], conn: sqlite3.Connection | None = None
    ) -> None:
        """Insert or replace an operation (keyed by its short id in ``name``)."""
        create = resource.get("metadata", {}).get("createTime", "")
        self._write(
            conn,
            "INSERT OR REPLACE INTO operations (name, create_time, resource) VALUES (?, ?, ?)",
            (resource["name"], create, orjson.dumps(resource).decode()),
        )

    def _write(self, conn: sqlite3.Connection | None, sql: str, args: tuple[Any, ...]) -> None:
        if conn is not None:
            conn.execute(sql, args)
            return
        with self.transaction() as tx:
            tx.execute(sql, args)

    # -- reads ---------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every stored model resource, by name."""
        return self._read("SELECT resource FROM models ORDER BY name", ())

    def versions(self, model: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(model, version resource)`` pairs, of one model or of all."""
        sql = "SELECT model, resource FROM versions"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE model = ?"
            args = (model,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY model, name", args).fetchall()
        return [(m, orjson.loads(r)) for m, r in rows]

    def operation(self, name: str) -> dict[str, Any] | None:
        """One operation by its short id, or None."""
        found = self._read("SELECT resource FROM operations WHERE name = ?", (name,))
        return found[0] if found else None

    def operations(self) -> list[dict[str, Any]]:
        """Every operation, newest first."""
        return self._read("SELECT resource FROM operations ORDER BY create_time DESC, name", ())

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [orjson.loads(r[0]) for r in rows]
