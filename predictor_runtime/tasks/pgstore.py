"""The task store on PostgreSQL: one queue shared by every ``serve`` process of a state URL.

The same interface and meaning as :class:`~.store.TaskStore` (see :mod:`.store`), on the
``tasks`` table the state database's migrations create
(:mod:`predictor_runtime.server.store.postgres`, version 3). What differs:

- **claims** lock the rows they take with ``FOR UPDATE SKIP LOCKED``: concurrent claimers
  (other processes, other machines) skip each other's rows instead of waiting, and no
  task is handed to two of them;
- **leases** are the only recovery: :meth:`PostgresTaskStore.recover` is a no-op (other
  processes are running their tasks), and :meth:`~PostgresTaskStore.requeue_expired`,
  run by every process, hands back the tasks of a process that died once their lease
  (``--task-lease``, renewed while a task runs) has expired;
- ``finish`` only records tasks still STARTED *and* held by the caller, so a task is never
  recorded (nor run again) after it finished;
- ``add`` takes a transaction-scoped advisory lock, so ``--max-pending-tasks`` holds across
  processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg

from ..server.store.postgres import PostgresStore, connect
from .store import CB_NONE, CB_PENDING, CB_SENDING, COLUMNS, PENDING, STARTED, Outcome, Task

#: advisory lock key serialising ``add`` (the pending-count check) across processes.
ADD_LOCK = 0x5052_544B  # "PRTK"


class PostgresTaskStore:
    """Tasks in the state database at ``url`` (migrated on open if needed).

    Safe to share between threads of one process; never across ``fork()``.

    :param url: the ``--state-url``.
    :param callback_seconds: how long after a task finishes its callback may be retried.
    """

    #: reads go through the connection lock (a round trip): run them off the event loop.
    fast_reads = False
    path = None

    def __init__(self, url: str, *, callback_seconds: float = 300.0) -> None:
        PostgresStore(url).close()  # applies the migrations (idempotent, one round trip)
        self.url = url
        self.callback_seconds = callback_seconds
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = connect(url)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.url)
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    # -- tasks --------------------------------------------------------------------------

    def add(self, tasks: Sequence[Task], *, max_pending: int) -> list[bool]:
        """Insert ``tasks``; PENDING ones only while fewer than ``max_pending`` are PENDING.

        A task may arrive already STARTED (claimed by the submitting process, with its
        ``owner`` and lease) or finished (a sync task's pickled result).
        """
        accepted: list[bool] = []
        rows: list[tuple[Any, ...]] = []
        with self._tx() as c:
            if any(t.status == PENDING for t in tasks):
                c.execute("SELECT pg_advisory_xact_lock(%s)", (ADD_LOCK,))
                c.execute("SELECT count(*) FROM tasks WHERE status = %s", (PENDING,))
                room = max_pending - c.fetchone()[0]  # type: ignore[index]
            else:
                room = 0
            for t in tasks:
                if t.status == PENDING:
                    if room <= 0:
                        accepted.append(False)
                        continue
                    room -= 1
                rows.append(
                    (
                        t.id, t.model, t.status, t.body, bool(t.return_pickled), t.base_url,
                        t.callback_url,
                        orjson.dumps(t.callback_auth).decode() if t.callback_auth else None,
                        t.created_at, t.finished_at, t.result, t.result_blob, t.traceback,
                        t.status_code, t.owner, t.lease_until, t.started_at, t.attempts,
                    )
                )  # fmt: skip
                accepted.append(True)
            if rows:
                c.executemany(
                    "INSERT INTO tasks (id, model, status, body, return_pickled, base_url, "
                    "callback_url, callback_auth, created_at, finished_at, result, result_blob, "
                    "traceback, status_code, owner, lease_until, started_at, attempts) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        return accepted

    def claim(
        self,
        models: Sequence[str],
        owner: str,
        limit: int,
        lease: float,
        *,
        now: float | None = None,
    ) -> list[Task]:
        """Move up to ``limit`` PENDING tasks of ``models`` to STARTED for ``owner``."""
        if not models or limit <= 0:
            return []
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET status = %s, owner = %s, lease_until = %s, started_at = %s, "
                "attempts = attempts + 1 WHERE seq IN (SELECT seq FROM tasks WHERE status = %s "
                "AND model = ANY(%s) ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"RETURNING {COLUMNS}",
                (STARTED, owner, now + lease, now, PENDING, list(models), limit),
            )
            rows = c.fetchall()
        return sorted((_task(r) for r in rows), key=lambda t: t.seq)

    def renew(self, ids: Sequence[str], owner: str, lease: float) -> None:
        """Extend the lease of the tasks ``owner`` still runs."""
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET lease_until = %s WHERE owner = %s AND status = %s "
                "AND id = ANY(%s)",
                (time.time() + lease, owner, STARTED, list(ids)),
            )

    def finish(
        self, outcomes: Sequence[Outcome], owner: str, *, now: float | None = None
    ) -> list[str]:
        """Record how tasks held by ``owner`` ended (one statement); returns the ids recorded."""
        if not outcomes:
            return []
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                "UPDATE tasks t SET status = o.status, result = o.result, "
                "result_blob = o.blob, traceback = o.traceback, status_code = o.code, "
                "finished_at = %s, lease_until = NULL, "
                "callback_status = CASE WHEN t.callback_url IS NULL THEN %s ELSE %s END, "
                "callback_next_at = %s, callback_deadline = %s "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[], "
                "%s::int[]) AS o(id, status, result, blob, traceback, code) "
                "WHERE t.id = o.id AND t.status = %s AND t.owner = %s RETURNING t.id",
                (
                    now, CB_NONE, CB_PENDING, now, now + self.callback_seconds,
                    [o.id for o in outcomes], [o.status for o in outcomes],
                    [o.result for o in outcomes], [o.result_blob for o in outcomes],
                    [o.traceback for o in outcomes], [o.status_code for o in outcomes],
                    STARTED, owner,
                ),
            )  # fmt: skip
            recorded = {row[0] for row in c.fetchall()}
        return [o.id for o in outcomes if o.id in recorded]

    def get(self, task_id: str) -> Task | None:
        """One task, or None."""
        row = self._one(f"SELECT {COLUMNS} FROM tasks WHERE id = %s", (task_id,))
        return _task(row) if row else None

    def result_blob(self, task_id: str) -> bytes | None:
        """The pickled result of a finished ``return_pickled`` task, or None."""
        row = self._one("SELECT result_blob FROM tasks WHERE id = %s", (task_id,))
        return bytes(row[0]) if row and row[0] is not None else None

    def prune(self, before: float) -> int:
        """Delete tasks finished before ``before`` whose callback is settled."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < %s "
                "AND callback_status NOT IN (%s, %s)",
                (before, CB_PENDING, CB_SENDING),
            )
            return c.rowcount

    def pending_count(self, model: str | None = None) -> int:
        """PENDING tasks (of ``model``, or all)."""
        if model is None:
            row = self._one("SELECT count(*) FROM tasks WHERE status = %s", (PENDING,))
        else:
            row = self._one(
                "SELECT count(*) FROM tasks WHERE status = %s AND model = %s", (PENDING, model)
            )
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Tasks per status."""
        with self._tx() as c:
            c.execute("SELECT status, count(*) FROM tasks GROUP BY status")
            return {status: int(n) for status, n in c.fetchall()}

    def recover(self) -> int:
        """Nothing: other processes may be running the STARTED tasks; leases recover."""
        return 0

    def requeue_expired(self, *, now: float | None = None) -> int:
        """Tasks and callbacks whose lease expired (their process died) go back to PENDING."""
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET status = %s, owner = NULL, lease_until = NULL "
                "WHERE status = %s AND lease_until < %s",
                (PENDING, STARTED, now),
            )
            n = c.rowcount
            c.execute(
                "UPDATE tasks SET callback_status = %s, callback_owner = NULL "
                "WHERE callback_status = %s AND callback_lease_until < %s",
                (CB_PENDING, CB_SENDING, now),
            )
        return n

    # -- callbacks ----------------------------------------------------------------------

    def claim_callbacks(
        self, owner: str, limit: int, lease: float, *, now: float | None = None
    ) -> list[Task]:
        """Take up to ``limit`` PENDING callbacks that are due."""
        now = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET callback_status = %s, callback_owner = %s, "
                "callback_lease_until = %s WHERE seq IN (SELECT seq FROM tasks WHERE "
                "callback_status = %s AND callback_next_at <= %s ORDER BY callback_next_at "
                f"LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}",
                (CB_SENDING, owner, now + lease, CB_PENDING, now, limit),
            )
            return [_task(r) for r in c.fetchall()]

    def set_callback(
        self,
        task_id: str,
        owner: str,
        status: str,
        *,
        attempts: int,
        error: str | None,
        next_at: float | None = None,
    ) -> None:
        """Record a delivery attempt; DELIVERED and FAILED also erase the credentials."""
        final = status in ("DELIVERED", "FAILED")
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET callback_status = %s, callback_attempts = %s, "
                "callback_error = %s, callback_next_at = %s, callback_owner = NULL, "
                "callback_lease_until = NULL, "
                "callback_auth = CASE WHEN %s THEN NULL ELSE callback_auth END "
                "WHERE id = %s AND callback_owner = %s",
                (status, attempts, error, next_at, final, task_id, owner),
            )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._connection().execute(sql, args).fetchone()


def _task(row: Sequence[Any]) -> Task:
    return Task.from_row(row)
