"""Request logging: a sampled copy of predict requests and responses, written to SQLite.

The AI Platform shape: a version's ``requestLoggingConfig`` (``samplingPercentage`` in
0..1, ``bigqueryTableName`` as ``project.dataset.table``) logs that fraction of predict
requests as rows ``(model, model_version, time, raw_data, raw_prediction, groundtruth)``.
The table is named exactly like the BigQuery table (a quoted identifier such as
``"proj.dataset.table"``) and lives where the state does (a :class:`RequestLogSink` of the
store): ``<state_dir>/request_logs.sqlite3`` with SQLite, the state database with
PostgreSQL.

Logging is off the request path: :meth:`RequestLogger.log` only samples and appends a
tuple to a bounded deque (no lock, no thread wake-up: an append is atomic under the GIL);
one background thread wakes every ``flush_interval`` (50 ms), or sooner when the deque is
half full, and writes what accumulated in one transaction. Formatting (the RFC 3339 time,
bytes to text) happens in that thread too. When the deque is full the row is counted in
:attr:`RequestLogger.dropped` (exported by ``/metrics``), never waited for, so logging
can neither fail nor noticeably slow a prediction (``benchmarks/bench_request_log.py``).
"""

from __future__ import annotations

import collections
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .store.base import RequestLogSink
from .store.sqlite import LOG_FILE, SQLiteLogSink

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+){0,2}$")

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


class _TimeFormat:
    """RFC 3339 UTC with microseconds, formatting the date/time part once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, tz=timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
        return f"{self._prefix}.{int((ts - second) * 1e6):06d}Z"


class RequestLogger:
    """Samples predict requests into per-table logs through a background writer.

    Create it (or at least call :meth:`start`) in the process that logs: after a
    ``fork()``, each worker needs its own writer thread and connection (the thread opens
    the sink itself).

    :param state_dir: where ``request_logs.sqlite3`` lives (when no ``sink`` is given).
    :param sink: where rows go instead (the store's :meth:`request_log_sink`).
    :param max_queue: rows waiting to be written before new ones are dropped (and counted).
    :param on_drop: called with the table name for each dropped row (metrics).
    :param flush_interval: seconds the writer lets rows accumulate between transactions.
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        sink: RequestLogSink | None = None,
        max_queue: int = 10_000,
        on_drop: Callable[[str], None] | None = None,
        flush_interval: float = 0.05,
    ) -> None:
        if sink is None:
            if state_dir is None:
                raise ValueError("RequestLogger needs a state_dir or a sink")
            sink = SQLiteLogSink(Path(state_dir) / LOG_FILE)
        self.sink = sink
        #: the SQLite file of the logs (None with another sink).
        self.path: Path | None = getattr(sink, "path", None)
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self.written = 0
        self.flush_interval = flush_interval
        self._max = max_queue
        self._soon = max(1, max_queue // 2)
        self._on_drop = on_drop
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._busy = False
        self._stop = False
        self._random = random.random
        self._now = time.time
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Rows dropped so far (queue full, or a failed write); counted across threads."""
        return self._dropped

    def _count_dropped(self, tables: list[str]) -> None:
        # the event loop (queue full) and the writer thread (failed write) both count
        with self._dropped_lock:
            self._dropped += len(tables)
        if self._on_drop is not None:
            for table in tables:
                self._on_drop(table)

    def start(self) -> None:
        """Start the writer thread (idempotent). Call after any fork."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
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
        pending = self._pending
        size = len(pending)
        if size >= self._max:
            self._count_dropped([table])
            return False
        pending.append((table, model, version, self._now(), raw_data, raw_prediction))
        if self._thread is None:
            self.start()
        elif size == self._soon:
            self._wake.set()  # half full: do not wait for the interval
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written; returns False on timeout."""
        deadline = time.monotonic() + timeout
        while self._pending or self._busy:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        thread = self._thread
        if thread is None:
            return
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        sink = self.sink
        pending = self._pending
        try:
            sink.open()
        except Exception:
            logger.exception("request logging: cannot open the log store")
        try:
            while True:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                if pending:
                    self._busy = True
                    try:
                        rows = [pending.popleft() for _ in range(len(pending))]
                        self._write(rows)
                    finally:
                        self._busy = False
                elif self._stop:
                    return
        finally:
            sink.close()

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        fmt = _TimeFormat()
        try:
            by_table: dict[str, list[tuple[Any, ...]]] = {}
            for table, model, version, ts, data, pred in rows:
                by_table.setdefault(table, []).append(
                    (model, version, fmt(ts), _text(data), _text(pred))
                )
            self.sink.write(by_table)
            self.written += len(rows)
        except Exception:
            logger.exception("request logging: could not write %d row(s)", len(rows))
            self._count_dropped([row[0] for row in rows])


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")
