"""Request logging: a sampled copy of predict requests and responses, written to SQLite.

The AI Platform shape: a version's ``requestLoggingConfig`` (``samplingPercentage`` in
0..1, ``bigqueryTableName`` as ``project.dataset.table``) logs that fraction of predict
requests as rows ``(model, model_version, time, raw_data, raw_prediction, groundtruth)``.
Here the table lives in ``<state_dir>/request_logs.sqlite3`` and is named exactly like the
BigQuery table (a quoted SQLite identifier such as ``"proj.dataset.table"``).

Logging is off the request path: :meth:`RequestLogger.log` only samples and puts a tuple
on a bounded queue; one background thread writes rows in batches. When the queue is full
the row is counted in :attr:`RequestLogger.dropped` (exported by ``/metrics``), never
waited for, so logging can neither fail nor noticeably slow a prediction.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOG_FILE = "request_logs.sqlite3"
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+){0,2}$")
_STOP = object()

logger = logging.getLogger(__name__)


def validate_logging_config(config: Any) -> dict[str, Any]:
    """Check a ``requestLoggingConfig`` object; returns it normalized.

    :raises ValueError: naming the field that is wrong and what was expected.
    """
    if not isinstance(config, dict):
        raise ValueError(f"requestLoggingConfig must be an object, got {type(config).__name__}")
    unknown = sorted(set(config) - {"samplingPercentage", "bigqueryTableName"})
    if unknown:
        raise ValueError(f"requestLoggingConfig has unknown field(s): {', '.join(unknown)}")
    rate = config.get("samplingPercentage", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ValueError(
            f"requestLoggingConfig.samplingPercentage must be a number from 0 to 1, got {rate!r}"
        )
    table = config.get("bigqueryTableName")
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ValueError(
            "requestLoggingConfig.bigqueryTableName must look like 'project.dataset.table', "
            f"got {table!r}"
        )
    return {"samplingPercentage": float(rate), "bigqueryTableName": table}


def _rfc3339_now() -> str:
    return datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RequestLogger:
    """Samples predict requests into per-table SQLite logs through a background writer.

    :param state_dir: where ``request_logs.sqlite3`` lives.
    :param max_queue: rows waiting to be written before new ones are dropped (and counted).
    :param on_drop: called with the table name for each dropped row (metrics).
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        max_queue: int = 10_000,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(state_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped = 0
        self.written = 0
        self._on_drop = on_drop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._random = random.random
        self._thread: threading.Thread | None = None
        self._tables: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the writer thread (idempotent). Call after any fork."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="request-log-writer", daemon=True
                )
                self._thread.start()

    def log(
        self,
        config: dict[str, Any] | None,
        model: str,
        version: str,
        raw_data: bytes,
        raw_prediction: bytes,
    ) -> bool:
        """Maybe log one request (by the config's sampling rate); never blocks or raises.

        :return: whether the row was queued.
        """
        if not config:
            return False
        rate = config.get("samplingPercentage", 0.0)
        if rate <= 0.0 or (rate < 1.0 and self._random() >= rate):
            return False
        table = config["bigqueryTableName"]
        row = (table, model, version, _rfc3339_now(), raw_data, raw_prediction)
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(table)
            return False
        if self._thread is None:
            self.start()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written; returns False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        self._queue.put(_STOP)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    self._queue.task_done()
                    return
                rows = [first]
                while len(rows) < 500:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._write(conn, rows)
                        self._queue.task_done()
                        return
                    rows.append(item)
                self._write(conn, rows)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        try:
            by_table: dict[str, list[tuple[Any, ...]]] = {}
            for table, *values in rows:
                by_table.setdefault(table, []).append(tuple(values))
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
                    [(m, v, t, _text(d), _text(p)) for m, v, t, d, p in values],
                )
            conn.execute("COMMIT")
            self.written += len(rows)
        except sqlite3.Error:
            logger.exception("request logging: could not write %d row(s)", len(rows))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.dropped += len(rows)
        finally:
            for _ in rows:
                self._queue.task_done()


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")
