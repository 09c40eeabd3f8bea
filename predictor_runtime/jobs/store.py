"""SQLite persistence of batch prediction jobs, and the lease that picks their runner.

One file of its own, ``<state_dir>/jobs.sqlite3`` (WAL; in memory without a state dir),
so the jobs store evolves apart from the models store. Jobs are stored as the ``Job``
JSON the API shows. The ``leases`` table holds one row, ``jobs``: the process holding it
(host, pid, expiry) is the only one that runs jobs, whatever the number of ``serve``
workers. A lease is taken over when it expires, or at once when its holder was on this
host and that process is gone (a restart after kill -9 does not wait for the expiry).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .spec import ACTIVE

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    project TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (project, id)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
);
"""
JOBS_FILE = "jobs.sqlite3"


class JobExistsError(Exception):
    """A job with this id already exists in the project."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    """Jobs and the runner lease; safe to share between threads (not across ``fork``).

    :param state_dir: the server's state directory; None for an in-memory database.
    """

    def __init__(self, state_dir: str | Path | None) -> None:
        target = ":memory:"
        if state_dir is not None:
            path = Path(state_dir) / JOBS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            target, check_same_thread=False, isolation_level=None, timeout=10
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- jobs -------------------------------------------------------------------------------

    def create(self, project: str, resource: dict[str, Any]) -> None:
        """Insert a new job; :class:`JobExistsError` if its id is taken in the project."""
        with self._tx() as tx:
            row = tx.execute(
                "SELECT 1 FROM jobs WHERE project = ? AND id = ?", (project, resource["jobId"])
            ).fetchone()
            if row is not None:
                raise JobExistsError(resource["jobId"])
            seq = tx.execute("SELECT coalesce(max(seq), 0) + 1 FROM jobs").fetchone()[0]
            tx.execute(
                "INSERT INTO jobs (project, id, seq, state, resource) VALUES (?, ?, ?, ?, ?)",
                (project, resource["jobId"], seq, resource["state"], orjson.dumps(resource)),
            )

    def get(self, project: str, job_id: str) -> dict[str, Any] | None:
        """One job, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT resource FROM jobs WHERE project = ? AND id = ?", (project, job_id)
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def list(self, project: str) -> list[dict[str, Any]]:
        """Every job of ``project``, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT resource FROM jobs WHERE project = ? ORDER BY seq DESC", (project,)
            ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def update(
        self, project: str, job_id: str, change: Callable[[dict[str, Any]], Any]
    ) -> dict[str, Any] | None:
        """Apply ``change(resource)`` (it edits in place) in one transaction; the new job.

        ``change`` may raise to abort the transaction; returns None for an unknown job.
        """
        with self._tx() as tx:
            row = tx.execute(
                "SELECT resource FROM jobs WHERE project = ? AND id = ?", (project, job_id)
            ).fetchone()
            if row is None:
                return None
            resource = orjson.loads(row[0])
            change(resource)
            tx.execute(
                "UPDATE jobs SET state = ?, resource = ? WHERE project = ? AND id = ?",
                (resource["state"], orjson.dumps(resource), project, job_id),
            )
            return resource  # type: ignore[no-any-return]

    def next_active(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest job not yet finished: ``(project, job)``, or None."""
        marks = ",".join("?" * len(ACTIVE))
        with self._lock:
            row = self._conn.execute(
                f"SELECT project, resource FROM jobs WHERE state IN ({marks}) ORDER BY seq LIMIT 1",
                tuple(ACTIVE),
            ).fetchone()
        return (row[0], orjson.loads(row[1])) if row else None

    # -- the runner lease ---------------------------------------------------------------------

    def lead(self, owner: str, ttl: float, name: str = "jobs") -> bool:
        """Take or renew the lease ``name`` for ``owner``; whether ``owner`` holds it now."""
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self._tx() as tx:
            row = tx.execute(
                "SELECT owner, host, pid, expires FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] != owner:
                held_by_live = row[3] > now and not (row[1] == host and not pid_alive(row[2]))
                if held_by_live:
                    return False
            tx.execute(
                "INSERT OR REPLACE INTO leases (name, owner, host, pid, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, owner, host, pid, now + ttl),
            )
            return True

    def release(self, owner: str, name: str = "jobs") -> None:
        """Give the lease up (if ``owner`` holds it)."""
        with self._tx() as tx:
            tx.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
