"""The durable task queue's storage: one table of tasks, behind :class:`TaskStore`.

This SQLite backend keeps ``<state_dir>/tasks.sqlite3`` (WAL; its own file, so task
traffic never contends with the models/versions store), or an in-memory database when the
server has no state directory. Every method is one transaction.

The interface (what another backend, e.g. PostgreSQL, implements with the same meaning):

======================================  ==================================================
``add(tasks, max_pending) -> [bool]``   insert new tasks in one transaction; PENDING ones
                                        only while fewer than ``max_pending`` are PENDING
                                        (False: refused, the caller answers 429). Records
                                        that arrive STARTED (claimed at once by the
                                        submitting process, with owner and lease) or
                                        finished (a sync task's pickled result) are
                                        always inserted.
``claim(models, owner, limit, lease)``  atomically move up to ``limit`` PENDING tasks of
                                        ``models`` to STARTED for ``owner``, oldest
                                        first; returns them. Two claimers never get the
                                        same task.
``renew(ids, owner, lease)``            extend the lease of tasks ``owner`` still runs.
``requeue_expired()``                   STARTED tasks (SENDING callbacks) whose lease
                                        expired go back to PENDING (run periodically).
``finish(outcomes, owner) -> [id]``     record SUCCESS/FAILURE of tasks ``owner`` holds
                                        (a task whose lease was lost and re-claimed by
                                        another is not touched); arms the callback.
``get(id) -> Task | None``              one task (without the pickled result).
``result_blob(id) -> bytes | None``     the pickled result of a ``return_pickled`` task.
``prune(before) -> int``                delete tasks finished before ``before`` whose
                                        callback is settled.
``pending_count(model=None) -> int``    PENDING tasks (all, or of one model).
``counts() -> {status: n}``             tasks per status (metrics).
``recover() -> int``                    at start, before any worker runs: STARTED tasks
                                        and SENDING callbacks of the previous run go back
                                        to PENDING. A shared backend (several machines)
                                        may make this a no-op and rely on leases.
``claim_callbacks(owner, limit, lease)`` atomically take PENDING callbacks that are due.
``set_callback(id, owner, status, ...)`` record one delivery attempt (PENDING = retry at
                                        ``next_at``; DELIVERED / FAILED are final and
                                        erase the stored credentials).
``close()``
======================================  ==================================================

The SQL is standard apart from the parameter style (``?``) and ``AUTOINCREMENT``:
``UPDATE ... WHERE id IN (SELECT ... ORDER BY seq LIMIT ?) RETURNING ...`` runs on
PostgreSQL as is, where the sub-select would add ``FOR UPDATE SKIP LOCKED``.

Times are POSIX seconds (``time.time()``); ``now`` parameters exist so tests can move
the clock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

TASKS_FILE = "tasks.sqlite3"

PENDING = "PENDING"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
FINISHED = (SUCCESS, FAILURE)

#: callback delivery states
CB_NONE = "NONE"
CB_PENDING = "PENDING"
CB_SENDING = "SENDING"
CB_DELIVERED = "DELIVERED"
CB_FAILED = "FAILED"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    body BLOB NOT NULL,
    return_pickled INTEGER NOT NULL DEFAULT 0,
    base_url TEXT NOT NULL DEFAULT '',
    callback_url TEXT,
    callback_auth TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    result_blob BLOB,
    traceback TEXT,
    status_code INTEGER,
    callback_status TEXT NOT NULL DEFAULT 'NONE',
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_error TEXT,
    callback_next_at REAL,
    callback_deadline REAL,
    callback_owner TEXT,
    callback_lease_until REAL
);
CREATE INDEX IF NOT EXISTS tasks_status_seq ON tasks (status, seq);
CREATE INDEX IF NOT EXISTS tasks_callback ON tasks (callback_status, callback_next_at);
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at);
"""

#: columns read into :class:`Task` (everything but the pickled result)
COLUMNS = (
    "seq, id, model, status, body, return_pickled, base_url, callback_url, callback_auth, "
    "created_at, started_at, finished_at, owner, lease_until, attempts, result, traceback, "
    "status_code, callback_status, callback_attempts, callback_error, callback_next_at, "
    "callback_deadline"
)


@dataclass
class Task:
    """One task as stored.

    ``body`` is the predict request body (JSON bytes); ``result`` the JSON text of the
    task's result object (``{"result": ...}`` or ``{"result_url": ...}``) once finished.
    """

    id: str
    model: str
    body: bytes
    status: str = PENDING
    return_pickled: bool = False
    base_url: str = ""
    callback_url: str | None = None
    callback_auth: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    result: str | None = None
    traceback: str | None = None
    status_code: int | None = None
    callback_status: str = CB_NONE
    callback_attempts: int = 0
    callback_error: str | None = None
    callback_next_at: float | None = None
    callback_deadline: float | None = None
    seq: int = 0
    #: pickled result to insert with a finished record (sync tasks); never read back here.
    result_blob: bytes | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Task:
        """A task from a row of :data:`COLUMNS`."""
        (seq, id_, model, status, body, pickled, base_url, cb_url, cb_auth, created, started,
         finished, owner, lease, attempts, result, tb, code, cb_status, cb_attempts, cb_error,
         cb_next, cb_deadline) = row  # fmt: skip
        return cls(
            id=id_,
            model=model,
            body=bytes(body),
            status=status,
            return_pickled=bool(pickled),
            base_url=base_url,
            callback_url=cb_url,
            callback_auth=orjson.loads(cb_auth) if cb_auth else None,
            created_at=created,
            started_at=started,
            finished_at=finished,
            owner=owner,
            lease_until=lease,
            attempts=attempts,
            result=result,
            traceback=tb,
            status_code=code,
            callback_status=cb_status,
            callback_attempts=cb_attempts,
            callback_error=cb_error,
            callback_next_at=cb_next,
            callback_deadline=cb_deadline,
            seq=seq,
        )


@dataclass
class Outcome:
    """How a claimed task ended."""

    id: str
    status: str  # SUCCESS | FAILURE
    result: str | None
    traceback: str | None
    status_code: int
    result_blob: bytes | None = None
    #: the task's model (for metrics)
    model: str = ""


class TaskStore:
    """The SQLite task store (see the module docstring for the interface).

    Safe to share between threads of one process; never across ``fork()`` (open one per
    process).

    :param state_dir: the server's state directory; None for an in-memory database.
    :param callback_seconds: how long after a task finishes its callback may be retried.
    """

    def __init__(self, state_dir: str | Path | None, *, callback_seconds: float = 300.0) -> None:
        self.path: Path | None = None
        target = ":memory:"
        if state_dir is not None:
            self.path = Path(state_dir) / TASKS_FILE
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the file holds callback credentials: only the server's user may read it
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            target = str(self.path)
        self.callback_seconds = callback_seconds
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            target, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process (kill -9); only a
        # power loss may drop the last commits.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.executescript(SCHEMA)
        #: a second connection for point reads (WAL: readers never wait for the writer),
        #: so ``get`` is cheap enough to run on the event loop; None in memory.
        self._reader: sqlite3.Connection | None = None
        self._rlock = threading.Lock()
        if self.path is not None:
            self._reader = sqlite3.connect(
                target, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._reader.execute("PRAGMA query_only=1")

    @property
    def fast_reads(self) -> bool:
        """Whether :meth:`get` uses its own reader connection (never waits for writes)."""
        return self._reader is not None

    def _tx(self, *, read: bool = False) -> _Tx:
        return _Tx(self._lock, self._conn, read)

    # -- tasks --------------------------------------------------------------------------

    def add(self, tasks: Sequence[Task], *, max_pending: int) -> list[bool]:
        """Insert ``tasks``; PENDING ones only while fewer than ``max_pending`` are PENDING."""
        accepted: list[bool] = []
        with self._tx() as c:
            pending = c.execute("SELECT COUNT(*) FROM tasks WHERE status = ?", (PENDING,))
            room = max_pending - pending.fetchone()[0]
            for t in tasks:
                if t.status == PENDING:
                    if room <= 0:
                        accepted.append(False)
                        continue
                    room -= 1
                c.execute(
                    "INSERT INTO tasks (id, model, status, body, return_pickled, base_url, "
                    "callback_url, callback_auth, created_at, finished_at, result, result_blob, "
                    "traceback, status_code, owner, lease_until, started_at, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        t.id,
                        t.model,
                        t.status,
                        t.body,
                        int(t.return_pickled),
                        t.base_url,
                        t.callback_url,
                        orjson.dumps(t.callback_auth).decode() if t.callback_auth else None,
                        t.created_at,
                        t.finished_at,
                        t.result,
                        t.result_blob,
                        t.traceback,
                        t.status_code,
                        t.owner,
                        t.lease_until,
                        t.started_at,
                        t.attempts,
                    ),
                )
                accepted.append(True)
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
        marks = ", ".join("?" for _ in models)
        sql = (
            "UPDATE tasks SET status = ?, owner = ?, lease_until = ?, started_at = ?, "
            "attempts = attempts + 1 WHERE id IN (SELECT id FROM tasks WHERE status = ? "
            f"AND model IN ({marks}) ORDER BY seq LIMIT ?) RETURNING {COLUMNS}"
        )
        args = (STARTED, owner, now + lease, now, PENDING, *models, limit)
        with self._tx(read=True) as c:  # the idle poll: no write lock when nothing waits
            probe = f"SELECT 1 FROM tasks WHERE status = ? AND model IN ({marks}) LIMIT 1"
            if c.execute(probe, (PENDING, *models)).fetchone() is None:
                return []
        with self._tx() as c:
            rows = c.execute(sql, args).fetchall()
        return sorted((Task.from_row(r) for r in rows), key=lambda t: t.seq)

    def renew(self, ids: Sequence[str], owner: str, lease: float) -> None:
        """Extend the lease of the tasks ``owner`` still runs."""
        until = time.time() + lease
        with self._tx() as c:
            for chunk in _chunks(ids):
                marks = ", ".join("?" for _ in chunk)
                c.execute(
                    f"UPDATE tasks SET lease_until = ? WHERE owner = ? AND status = ? "
                    f"AND id IN ({marks})",
                    (until, owner, STARTED, *chunk),
                )

    def finish(
        self, outcomes: Sequence[Outcome], owner: str, *, now: float | None = None
    ) -> list[str]:
        """Record how tasks held by ``owner`` ended; returns the ids recorded."""
        now = time.time() if now is None else now
        done: list[str] = []
        with self._tx() as c:
            for o in outcomes:
                cur = c.execute(
                    "UPDATE tasks SET status = ?, result = ?, result_blob = ?, traceback = ?, "
                    "status_code = ?, finished_at = ?, lease_until = NULL, "
                    "callback_status = CASE WHEN callback_url IS NULL THEN ? ELSE ? END, "
                    "callback_next_at = ?, callback_deadline = ? "
                    "WHERE id = ? AND status = ? AND owner = ?",
                    (
                        o.status,
                        o.result,
                        o.result_blob,
                        o.traceback,
                        o.status_code,
                        now,
                        CB_NONE,
                        CB_PENDING,
                        now,
                        now + self.callback_seconds,
                        o.id,
                        STARTED,
                        owner,
                    ),
                )
                if cur.rowcount:
                    done.append(o.id)
        return done

    def get(self, task_id: str) -> Task | None:
        """One task, or None."""
        sql = f"SELECT {COLUMNS} FROM tasks WHERE id = ?"
        if self._reader is not None:
            with self._rlock:
                row = self._reader.execute(sql, (task_id,)).fetchone()
        else:
            with self._tx(read=True) as c:
                row = c.execute(sql, (task_id,)).fetchone()
        return Task.from_row(row) if row else None

    def result_blob(self, task_id: str) -> bytes | None:
        """The pickled result of a finished ``return_pickled`` task, or None."""
        with self._tx(read=True) as c:
            row = c.execute("SELECT result_blob FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def prune(self, before: float) -> int:
        """Delete tasks finished before ``before`` whose callback is settled."""
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? "
                "AND callback_status NOT IN (?, ?)",
                (before, CB_PENDING, CB_SENDING),
            )
            return cur.rowcount

    def pending_count(self, model: str | None = None) -> int:
        """PENDING tasks (of ``model``, or all)."""
        with self._tx(read=True) as c:
            if model is None:
                row = c.execute("SELECT COUNT(*) FROM tasks WHERE status = ?", (PENDING,))
            else:
                row = c.execute(
                    "SELECT COUNT(*) FROM tasks WHERE status = ? AND model = ?", (PENDING, model)
                )
            return int(row.fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Tasks per status."""
        with self._tx(read=True) as c:
            rows = c.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
        return {status: int(n) for status, n in rows}

    def recover(self) -> int:
        """Hand the previous run's STARTED tasks and SENDING callbacks back to the queue."""
        with self._tx() as c:
            n = c.execute(
                "UPDATE tasks SET status = ?, owner = NULL, lease_until = NULL WHERE status = ?",
                (PENDING, STARTED),
            ).rowcount
            c.execute(
                "UPDATE tasks SET callback_status = ?, callback_owner = NULL "
                "WHERE callback_status = ?",
                (CB_PENDING, CB_SENDING),
            )
        return n

    def requeue_expired(self, *, now: float | None = None) -> int:
        """Tasks and callbacks whose lease expired (their process died) go back to PENDING."""
        now = time.time() if now is None else now
        with self._tx() as c:
            n = c.execute(
                "UPDATE tasks SET status = ?, owner = NULL, lease_until = NULL "
                "WHERE status = ? AND lease_until < ?",
                (PENDING, STARTED, now),
            ).rowcount
            c.execute(
                "UPDATE tasks SET callback_status = ?, callback_owner = NULL "
                "WHERE callback_status = ? AND callback_lease_until < ?",
                (CB_PENDING, CB_SENDING, now),
            )
        return n

    # -- callbacks ----------------------------------------------------------------------

    def claim_callbacks(
        self, owner: str, limit: int, lease: float, *, now: float | None = None
    ) -> list[Task]:
        """Take up to ``limit`` callbacks that are due."""
        now = time.time() if now is None else now
        sql = (
            "UPDATE tasks SET callback_status = ?, callback_owner = ?, callback_lease_until = ? "
            "WHERE id IN (SELECT id FROM tasks WHERE callback_status = ? AND "
            f"callback_next_at <= ? ORDER BY callback_next_at LIMIT ?) RETURNING {COLUMNS}"
        )
        args = (CB_SENDING, owner, now + lease, CB_PENDING, now, limit)
        with self._tx(read=True) as c:  # the idle poll: no write lock when nothing is due
            probe = (
                "SELECT 1 FROM tasks WHERE callback_status = ? AND callback_next_at <= ? LIMIT 1"
            )
            if c.execute(probe, (CB_PENDING, now)).fetchone() is None:
                return []
        with self._tx() as c:
            rows = c.execute(sql, args).fetchall()
        return [Task.from_row(r) for r in rows]

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
        final = status in (CB_DELIVERED, CB_FAILED)
        with self._tx() as c:
            c.execute(
                "UPDATE tasks SET callback_status = ?, callback_attempts = ?, callback_error = ?, "
                "callback_next_at = ?, callback_owner = NULL, callback_lease_until = NULL, "
                "callback_auth = CASE WHEN ? THEN NULL ELSE callback_auth END "
                "WHERE id = ? AND callback_owner = ?",
                (status, attempts, error, next_at, int(final), task_id, owner),
            )

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            self._conn.close()
        if self._reader is not None:
            with self._rlock:
                self._reader.close()


class _Tx:
    """``with store._tx() as cursor``: one transaction under the connection lock."""

    __slots__ = ("_conn", "_lock", "_read")

    def __init__(self, lock: threading.Lock, conn: sqlite3.Connection, read: bool = False) -> None:
        self._lock = lock
        self._conn = conn
        self._read = read

    def __enter__(self) -> sqlite3.Cursor:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN" if self._read else "BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn.cursor()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self._conn.execute("ROLLBACK" if kind is not None else "COMMIT")
        finally:
            self._lock.release()


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


__all__ = [
    "FAILURE",
    "FINISHED",
    "PENDING",
    "STARTED",
    "SUCCESS",
    "Outcome",
    "Task",
    "TaskStore",
]
