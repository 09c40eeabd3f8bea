"""The storage interface of the shared state, and what both backends share.

A backend stores models, versions and operations as the JSON the API shows (AI
Platform's ``Model``, ``Version``, ``Operation`` field names) plus the few columns needed
to find them; :class:`SqlStore` implements every resource method once, over a DB-API
connection, with each backend giving its dialect (:attr:`SqlStore.SQL`), its
transactions and its change detection. :class:`StateStore` is the protocol the server
programs against.

Schema changes are numbered :class:`Migration` steps recorded in a ``schema_version``
table and applied at open, in one transaction each, so a newer server opens an older
state without losing anything (:meth:`SqlStore.migrate`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import orjson

from ...errors import PredictorRuntimeError

#: A change token: opaque, compared for equality only (see ``changed_since``).
Token = Any


class StoreUnavailableError(PredictorRuntimeError):
    """The state database cannot be reached or used (the message names the masked URL)."""

    status = 503


@dataclass(frozen=True)
class Migration:
    """One numbered schema step: SQL statements run in order inside one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the netloc and in the query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
    except ValueError:
        secrets = []
    secrets += re.findall(r"(?i)password=([^&\s]+)", url)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


@runtime_checkable
class StateStore(Protocol):
    """Transactional storage of models, versions and operations shared by the server.

    Every method that takes ``conn`` may run inside a caller's :meth:`transaction`
    (pass the object it yields); without it, a write is its own transaction.
    """

    #: True when several processes (machines) share this store (PostgreSQL).
    shared: bool
    #: what the store points at, for messages (a masked URL or a file path).
    label: str

    def transaction(self) -> AbstractContextManager[Any]:
        """One atomic unit of writes (all land or none), serialised with other writers."""

    def close(self) -> None:
        """Close the connections (and stop the change listener)."""

    def schema_version(self) -> int:
        """The schema version recorded in the database."""

    def changed_since(self, token: Token) -> tuple[bool, Token]:
        """Whether models or versions may have changed since ``token`` (None: yes).

        :return: ``(changed, new token)``; cheap enough to call on every request.
        """

    def subscribe(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from another thread) when another process changes models or
        versions; returns False when the backend cannot push (then poll)."""

    def transient(self, exc: BaseException) -> str | None:
        """A short reason when ``exc`` is the database being busy or unreachable."""

    def request_log_sink(self) -> Any:
        """A new :class:`RequestLogSink` writing request logs next to this state."""

    def put_model(self, resource: dict[str, Any], conn: Any = None) -> None: ...
    def delete_model(self, name: str, conn: Any = None) -> None: ...
    def put_version(self, model: str, resource: dict[str, Any], conn: Any = None) -> None: ...
    def delete_version(self, model: str, name: str, conn: Any = None) -> None: ...
    def put_operation(self, resource: dict[str, Any], conn: Any = None) -> None: ...
    def touch_versions(self, items: list[tuple[str, str, str]]) -> None: ...
    def models(self, conn: Any = None) -> list[dict[str, Any]]: ...
    def get_model(self, name: str, conn: Any = None) -> dict[str, Any] | None: ...
    def get_version(self, model: str, name: str, conn: Any = None) -> dict[str, Any] | None: ...
    def pending_operations(
        self, model: str, version: str, conn: Any = None
    ) -> list[dict[str, Any]]: ...
    def versions(
        self, model: str | None = None, conn: Any = None
    ) -> list[tuple[str, dict[str, Any]]]: ...
    def operation(self, name: str) -> dict[str, Any] | None: ...
    def operations(self) -> list[dict[str, Any]]: ...


class RequestLogSink(Protocol):
    """Where the request-log writer thread puts rows; opened and used in that thread."""

    def open(self) -> None:
        """Connect (called in the writer thread)."""

    def write(self, by_table: dict[str, list[tuple[Any, ...]]]) -> None:
        """Append ``(model, model_version, time, raw_data, raw_prediction)`` rows to each
        table (created if missing), in one transaction; raises on failure."""

    def close(self) -> None:
        """Disconnect."""


def pending_key(resource: dict[str, Any]) -> str | None:
    """``model/version`` for an operation not yet done (indexed column), else None."""
    if resource.get("done") or "_model" not in resource:
        return None
    return f"{resource['_model']}/{resource.get('_version') or ''}"


def _dumps(resource: dict[str, Any]) -> str:
    return orjson.dumps(resource).decode()


class SqlStore:
    """The resource methods of :class:`StateStore`, once for both backends.

    Subclasses set :attr:`SQL` (statements with ``?`` placeholders, converted by
    :meth:`_q`) and implement :meth:`transaction` and the change-detection methods. One
    connection per store, guarded by a lock: the server runs store work in one thread.
    """

    SQL: dict[str, str] = {}
    shared = False
    label = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._conn: Any = None

    # -- subclass hooks --------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql

    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(self._q(sql), rows)

    # -- migrations ------------------------------------------------------------------

    def migrate(self, migrations: tuple[Migration, ...], upto: int | None = None) -> int:
        """Apply the migrations newer than the recorded version (each in a transaction).

        :param upto: stop after this version (tests build older states with it).
        :return: the schema version afterwards.
        """
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        current = self.schema_version()
        for step in migrations:
            if step.version <= current or (upto is not None and step.version > upto):
                continue
            with self.transaction() as tx:
                row = tx.execute("SELECT max(version) FROM schema_version").fetchone()
                if (row[0] or 0) >= step.version:  # another process applied it meanwhile
                    continue
                for statement in step.statements:
                    tx.execute(statement)
                tx.execute(
                    self._q(
                        "INSERT INTO schema_version (version, description, applied_at) "
                        "VALUES (?, ?, ?)"
                    ),
                    (step.version, step.description, _now()),
                )
            current = step.version
        return self.schema_version()

    def schema_version(self) -> int:
        """The newest applied migration (0 for a new database)."""
        with self._lock:
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # -- writes ----------------------------------------------------------------------

    def put_model(self, resource: dict[str, Any], conn: Any = None) -> None:
        """Insert or replace a model resource (keyed by its short ``name``)."""
        self._write(conn, self.SQL["put_model"], (resource["name"], _dumps(resource)))

    def delete_model(self, name: str, conn: Any = None) -> None:
        """Delete a model and any versions it still has."""
        with self._maybe_tx(conn) as tx:
            tx.execute(self._q("DELETE FROM versions WHERE model = ?"), (name,))
            tx.execute(self._q("DELETE FROM models WHERE name = ?"), (name,))

    def put_version(self, model: str, resource: dict[str, Any], conn: Any = None) -> None:
        """Insert or replace a version resource of ``model`` (keyed by its short ``name``)."""
        self._write(conn, self.SQL["put_version"], (model, resource["name"], _dumps(resource)))

    def delete_version(self, model: str, name: str, conn: Any = None) -> None:
        """Delete one version."""
        self._write(conn, "DELETE FROM versions WHERE model = ? AND name = ?", (model, name))

    def put_operation(self, resource: dict[str, Any], conn: Any = None) -> None:
        """Insert or replace an operation (keyed by its short id in ``name``)."""
        create = resource.get("metadata", {}).get("createTime", "")
        args = (resource["name"], create, pending_key(resource), _dumps(resource))
        self._write(conn, self.SQL["put_operation"], args)

    def touch_versions(self, items: list[tuple[str, str, str]]) -> None:
        """Raise ``lastUseTime`` of ``(model, version, rfc3339)`` items, in one transaction.

        Only moves the time forward (another process may have written a later one) and
        touches nothing else of the resource, so it cannot undo a concurrent patch.
        """
        if not items:
            return
        with self.transaction() as tx:
            self._executemany(tx, self.SQL["touch"], [(t, m, v, t) for m, v, t in items])

    def _write(self, conn: Any, sql: str, args: tuple[Any, ...]) -> None:
        with self._maybe_tx(conn) as tx:
            tx.execute(self._q(sql), args)

    def _maybe_tx(self, conn: Any) -> AbstractContextManager[Any]:
        if conn is not None:
            return _Given(conn)
        return self.transaction()

    # -- reads -----------------------------------------------------------------------

    def models(self, conn: Any = None) -> list[dict[str, Any]]:
        """Every stored model resource, by name (pass ``conn`` inside a transaction)."""
        return self._read("SELECT resource FROM models ORDER BY name", (), conn)

    def get_model(self, name: str, conn: Any = None) -> dict[str, Any] | None:
        """One model resource, or None (pass ``conn`` inside a transaction)."""
        found = self._read("SELECT resource FROM models WHERE name = ?", (name,), conn)
        return found[0] if found else None

    def get_version(self, model: str, name: str, conn: Any = None) -> dict[str, Any] | None:
        """One version resource, or None (pass ``conn`` inside a transaction)."""
        found = self._read(
            "SELECT resource FROM versions WHERE model = ? AND name = ?", (model, name), conn
        )
        return found[0] if found else None

    def pending_operations(
        self, model: str, version: str, conn: Any = None
    ) -> list[dict[str, Any]]:
        """Operations not yet done on ``model``/``version`` (their ``_model``/``_version``)."""
        return self._read(
            "SELECT resource FROM operations WHERE pending_key = ? ORDER BY name",
            (f"{model}/{version}",),
            conn,
        )

    def versions(
        self, model: str | None = None, conn: Any = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """``(model, version resource)`` pairs, of one model or of all."""
        sql = "SELECT model, resource FROM versions"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE model = ?"
            args = (model,)
        rows = self._rows(sql + " ORDER BY model, name", args, conn)
        return [(m, orjson.loads(r)) for m, r in rows]

    def operation(self, name: str) -> dict[str, Any] | None:
        """One operation by its short id, or None."""
        found = self._read("SELECT resource FROM operations WHERE name = ?", (name,))
        return found[0] if found else None

    def operations(self) -> list[dict[str, Any]]:
        """Every operation, newest first."""
        return self._read("SELECT resource FROM operations ORDER BY create_time DESC, name", ())

    def _read(self, sql: str, args: tuple[Any, ...], conn: Any = None) -> list[dict[str, Any]]:
        return [orjson.loads(r[0]) for r in self._rows(sql, args, conn)]

    def _rows(self, sql: str, args: tuple[Any, ...], conn: Any = None) -> list[Any]:
        if conn is not None:  # inside a transaction: the lock is already held
            return list(conn.execute(self._q(sql), args).fetchall())
        with self._lock:
            return list(self._connection().execute(self._q(sql), args).fetchall())

    def _connection(self) -> Any:
        return self._conn


class _Given(AbstractContextManager[Any]):
    """A caller's transaction connection, used as is."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
