"""The shared backend: PostgreSQL through psycopg 3 (``--state-url postgresql://...``).

Several ``serve`` processes on several machines share one database:

- **Transactions**: every write transaction first takes one transaction-scoped advisory
  lock, so writers are serialised across processes exactly as SQLite's ``BEGIN
  IMMEDIATE`` serialises them: the etag and existence checks made inside a transaction
  hold until it commits.
- **Changes**: statement triggers on ``models`` and ``versions`` bump a revision counter
  (``state_revision``) and ``NOTIFY predictor_runtime_state`` in the writing transaction.
  Each process ``LISTEN``\\ s on a connection of its own (:meth:`PostgresStore.subscribe`)
  and re-syncs when told; :meth:`PostgresStore.changed_since` compares the counter, which
  is the polling fallback when a notification is lost (e.g. while reconnecting).
- **Request logs** go to tables of the same database (named like the BigQuery table),
  written with ``COPY`` by each process's log writer thread.

Connections are opened lazily again after a failure, so a database restart costs the
requests made while it is down (503), not the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from .base import Migration, SqlStore, StoreUnavailableError, Token, mask_url, scrub

logger = logging.getLogger("predictor_runtime.server")

CHANNEL = "predictor_runtime_state"
#: the advisory lock key that serialises state writers (any constant unique to us).
WRITE_LOCK = 0x5052_5354  # "PRST"
CONNECT_TIMEOUT = 10

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "models, versions and operations as API JSON; change counter and notifications",
        (
            "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, resource TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS versions (model TEXT NOT NULL, name TEXT NOT NULL, "
            "resource TEXT NOT NULL, PRIMARY KEY (model, name))",
            "CREATE TABLE IF NOT EXISTS operations (name TEXT PRIMARY KEY, "
            "create_time TEXT NOT NULL, resource TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS state_revision "
            "(id INTEGER PRIMARY KEY CHECK (id = 1), rev BIGINT NOT NULL)",
            "INSERT INTO state_revision (id, rev) VALUES (1, 0) ON CONFLICT DO NOTHING",
            "CREATE OR REPLACE FUNCTION predictor_runtime_state_changed() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE state_revision SET rev = rev + 1 WHERE id = 1; "
            f"PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$",
            "CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE ON models "
            "FOR EACH STATEMENT EXECUTE FUNCTION predictor_runtime_state_changed()",
            "CREATE TRIGGER versions_changed AFTER INSERT OR UPDATE OR DELETE ON versions "
            "FOR EACH STATEMENT EXECUTE FUNCTION predictor_runtime_state_changed()",
        ),
    ),
    Migration(
        2,
        "operations.pending_key: find unfinished operations of a version by index",
        (
            "ALTER TABLE operations ADD COLUMN pending_key TEXT",
            "UPDATE operations SET pending_key = (resource::jsonb ->> '_model') || '/' || "
            "coalesce(resource::jsonb ->> '_version', '') "
            "WHERE (resource::jsonb ->> 'done')::boolean IS NOT TRUE "
            "AND resource::jsonb ->> '_model' IS NOT NULL",
            "CREATE INDEX operations_pending ON operations (pending_key)",
        ),
    ),
    Migration(
        3,
        "tasks: the shared async task queue (predictor_runtime.tasks.pgstore)",
        (
            "CREATE TABLE tasks (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "model TEXT NOT NULL, status TEXT NOT NULL, body BYTEA NOT NULL, "
            "return_pickled BOOLEAN NOT NULL DEFAULT FALSE, base_url TEXT NOT NULL DEFAULT '', "
            "callback_url TEXT, callback_auth TEXT, created_at DOUBLE PRECISION NOT NULL, "
            "started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, owner TEXT, "
            "lease_until DOUBLE PRECISION, attempts INTEGER NOT NULL DEFAULT 0, result TEXT, "
            "result_blob BYTEA, traceback TEXT, status_code INTEGER, "
            "callback_status TEXT NOT NULL DEFAULT 'NONE', "
            "callback_attempts INTEGER NOT NULL DEFAULT 0, callback_error TEXT, "
            "callback_next_at DOUBLE PRECISION, callback_deadline DOUBLE PRECISION, "
            "callback_owner TEXT, callback_lease_until DOUBLE PRECISION)",
            "CREATE INDEX tasks_status_model_seq ON tasks (status, model, seq)",
            "CREATE INDEX tasks_lease ON tasks (lease_until) WHERE status = 'STARTED'",
            "CREATE INDEX tasks_callback ON tasks (callback_status, callback_next_at)",
            "CREATE INDEX tasks_finished ON tasks (finished_at)",
        ),
    ),
)


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url``.

    :raises StoreUnavailableError: one line naming the masked URL (never the password).
    """
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        return psycopg.connect(url, autocommit=True, **kwargs)
    except (psycopg.Error, ValueError) as exc:
        reason = " ".join(scrub(str(exc), url).split()) or type(exc).__name__
        raise StoreUnavailableError(
            f"cannot reach the state database {mask_url(url)}: {reason}"
        ) from None


class PostgresStore(SqlStore):
    """The state in a PostgreSQL database, shared by every process that points at it.

    :param url: a libpq connection URL (``postgresql://user:password@host:port/db``).
    :param migrate_upto: apply migrations only up to this version (tests of upgrades).
    :raises StoreUnavailableError: the database cannot be reached.
    """

    shared = True
    SQL = {
        "put_model": "INSERT INTO models (name, resource) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET resource = EXCLUDED.resource",
        "put_version": "INSERT INTO versions (model, name, resource) VALUES (?, ?, ?) "
        "ON CONFLICT (model, name) DO UPDATE SET resource = EXCLUDED.resource",
        "put_operation": "INSERT INTO operations (name, create_time, pending_key, resource) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET create_time = "
        "EXCLUDED.create_time, pending_key = EXCLUDED.pending_key, resource = EXCLUDED.resource",
        "touch": "UPDATE versions SET resource = "
        "jsonb_set(resource::jsonb, '{lastUseTime}', to_jsonb(?::text))::text "
        "WHERE model = ? AND name = ? AND coalesce(resource::jsonb ->> 'lastUseTime', '') < ?",
    }

    def __init__(self, url: str, *, migrate_upto: int | None = None) -> None:
        super().__init__()
        self.url = url
        self.label = mask_url(url)
        self._conn = connect(url)
        self._listener: _Listener | None = None
        self.migrate(MIGRATIONS, migrate_upto)

    def _q(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _executemany(self, conn: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._q(statement), rows)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            self._conn = connect(self.url)
        return self._conn  # type: ignore[no-any-return]

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """One atomic unit of writes, serialised with every other process's writers."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield conn

    def schema_version(self) -> int:
        """The newest applied migration (0 for a new database)."""
        with self._lock:
            row = self._connection().execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0) if row else 0

    def close(self) -> None:
        """Stop the listener and close the connection."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def changed_since(self, token: Token) -> tuple[bool, Token]:
        """Compare the revision counter the triggers bump (one indexed read)."""
        with self._lock:
            row = (
                self._connection().execute("SELECT rev FROM state_revision WHERE id = 1").fetchone()
            )
        rev = int(row[0]) if row else 0
        return rev != token, rev

    def subscribe(self, callback: Callable[[], None]) -> bool:
        """``LISTEN`` on a connection of its own; ``callback`` runs in its thread."""
        if self._listener is None:
            self._listener = _Listener(self.url, callback)
            self._listener.start()
        return True

    def transient(self, exc: BaseException) -> str | None:
        """Connection failures: the database is down or unreachable."""
        if isinstance(exc, StoreUnavailableError):
            return str(exc)
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            reason = " ".join(scrub(str(exc), self.url).split())
            return f"the state database {self.label} is unavailable ({reason})"
        return None

    def request_log_sink(self) -> PostgresLogSink:
        """Request logs in tables of this database."""
        return PostgresLogSink(self.url)


class _Listener:
    """A thread that ``LISTEN``\\ s for state changes and calls back on each; reconnects."""

    def __init__(self, url: str, callback: Callable[[], None]) -> None:
        self.url = url
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with connect(self.url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if failures:
                        self.callback()  # changes may have been missed while away
                    failures = 0
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.callback()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    logger.warning("state change listener: %s; polling until it reconnects", exc)
                self._stop.wait(min(5.0, 0.5 * failures))


class PostgresLogSink:
    """Request-log tables (named like the BigQuery table) in the state database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._tables: set[str] = set()

    def open(self) -> None:
        """Connect (in the writer thread)."""
        self._conn = connect(self.url)

    def write(self, by_table: dict[str, list[tuple[Any, ...]]]) -> None:
        """``COPY`` the rows of every table in one transaction."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._tables.clear()
            self.open()
        conn = self._conn
        assert conn is not None
        with conn.transaction():
            for table, values in by_table.items():
                name = sql.Identifier(table)
                if table not in self._tables:
                    # two processes creating the same table at once would collide
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} (model TEXT, model_version TEXT, "
                            "time TEXT, raw_data TEXT, raw_prediction TEXT, groundtruth TEXT)"
                        ).format(name)
                    )
                copy = sql.SQL(
                    "COPY {} (model, model_version, time, raw_data, raw_prediction) FROM STDIN"
                ).format(name)
                with conn.cursor() as cur, cur.copy(copy) as out:
                    for row in values:
                        out.write_row(row)
        self._tables.update(by_table)

    def close(self) -> None:
        """Disconnect."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
