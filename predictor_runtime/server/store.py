"""SQLite persistence of models, versions and operations under the state directory.

One file, ``<state_dir>/state.sqlite3``, in WAL mode (or an in-memory database when no
state directory is given, for servers built in tests). Every write is one transaction, so a
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

    Never share one across ``fork()``: close it in the parent and open a new one in each
    child (SQLite connections must not cross a fork).

    :param state_dir: the server's state directory (created if missing); None for an
        in-memory database.
    """

    def __init__(self, state_dir: str | Path | None) -> None:
        self.path: Path | None = None
        target = ":memory:"
        if state_dir is not None:
            self.path = Path(state_dir) / STATE_FILE
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
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

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits.

        A cheap way (microseconds) for each worker to notice the others' writes.
        """
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

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

    def touch_versions(self, items: list[tuple[str, str, str]]) -> None:
        """Raise ``lastUseTime`` of ``(model, version, rfc3339)`` items, in one transaction.

        Only moves the time forward (another worker may have written a later one) and
        touches nothing else of the resource, so it cannot undo a concurrent patch.
        """
        if not items:
            return
        with self.transaction() as tx:
            tx.executemany(
                "UPDATE versions SET resource = json_set(resource, '$.lastUseTime', ?3) "
                "WHERE model = ?1 AND name = ?2 "
                "AND coalesce(json_extract(resource, '$.lastUseTime'), '') < ?3",
                items,
            )

    def _write(self, conn: sqlite3.Connection | None, sql: str, args: tuple[Any, ...]) -> None:
        if conn is not None:
            conn.execute(sql, args)
            return
        with self.transaction() as tx:
            tx.execute(sql, args)

    # -- reads ---------------------------------------------------------------------------

    def models(self, conn: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        """Every stored model resource, by name (pass ``conn`` inside a transaction)."""
        return self._read("SELECT resource FROM models ORDER BY name", (), conn)

    def get_model(self, name: str, conn: sqlite3.Connection | None = None) -> dict[str, Any] | None:
        """One model resource, or None (pass ``conn`` inside a transaction)."""
        found = self._read("SELECT resource FROM models WHERE name = ?", (name,), conn)
        return found[0] if found else None

    def get_version(
        self, model: str, name: str, conn: sqlite3.Connection | None = None
    ) -> dict[str, Any] | None:
        """One version resource, or None (pass ``conn`` inside a transaction)."""
        found = self._read(
            "SELECT resource FROM versions WHERE model = ? AND name = ?", (model, name), conn
        )
        return found[0] if found else None

    def pending_operations(
        self, model: str, version: str, conn: sqlite3.Connection | None = None
    ) -> list[dict[str, Any]]:
        """Operations not yet done whose internal ``_model``/``_version`` match."""
        return self._read(
            "SELECT resource FROM operations WHERE json_extract(resource, '$.done') = 0 "
            "AND json_extract(resource, '$._model') = ? "
            "AND json_extract(resource, '$._version') = ?",
            (model, version),
            conn,
        )

    def versions(
        self, model: str | None = None, conn: sqlite3.Connection | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(model, version resource)`` pairs, of one model or of all."""
        sql = "SELECT model, resource FROM versions"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE model = ?"
            args = (model,)
        if conn is not None:
            rows = conn.execute(sql + " ORDER BY model, name", args).fetchall()
        else:
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

    def _read(
        self, sql: str, args: tuple[Any, ...], conn: sqlite3.Connection | None = None
    ) -> list[dict[str, Any]]:
        if conn is not None:  # inside a transaction: the lock is already held
            rows = conn.execute(sql, args).fetchall()
        else:
            with self._lock:
                rows = self._conn.execute(sql, args).fetchall()
        return [orjson.loads(r[0]) for r in rows]
