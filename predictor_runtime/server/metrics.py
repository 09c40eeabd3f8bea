"""Prometheus metrics for ``GET /metrics`` (prometheus_client).

Metrics (labels ``model``, ``version``; ``code`` is the HTTP status):

- ``predictor_requests_total{model,version,code}``: predict requests answered;
- ``predictor_request_errors_total{model,version,code}``: those answered with a status >= 400;
- ``predictor_request_duration_seconds{model,version}``: time from request to response;
- ``predictor_batch_size_rows{model,version}``: rows per model call (adaptive batching);
- ``predictor_batch_requests{model,version}``: requests merged into one model call;
- ``predictor_model_call_duration_seconds{model,version}``: time inside the model call;
- ``predictor_request_log_dropped_total{table}``: request-log rows that could not be
  written (queue full or SQLite error), per log table.

Requests for unknown models are counted with empty ``model``/``version`` labels so that
random names cannot blow up the label set.

With ``--workers N > 1`` the runner sets ``PROMETHEUS_MULTIPROC_DIR`` to a temporary
directory before prometheus_client is imported, so every worker writes its samples there
and ``/metrics`` (answered by any one worker) aggregates all of them.

The two per-request metrics (count and latency) are first added up in plain Python
(:meth:`Metrics.observe_request`: a dict look-up, three additions, one C ``bisect``) and
handed to prometheus_client in bulk by :meth:`Metrics.flush`: before every scrape, every
half second from the state sync loop and at shutdown. With several workers (a scrape
reads every worker's files) each request is handed over at once. prometheus_client's own
``inc``/``observe`` take a lock and walk the buckets in Python: about 3% of a one-row
request's cost, measured with ``benchmarks/protocol_ab.py``.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The server's metric families on a private registry, with cached label children."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        # Multiprocess mode: samples live in files; each scrape reads them through a
        # MultiProcessCollector, so the metric objects need not be registered anywhere.
        reg = None if self.multiprocess else self.registry
        self.requests = Counter(
            "predictor_requests",
            "Predict requests answered, by HTTP status code.",
            ("model", "version", "code"),
            registry=reg,
        )
        self.errors = Counter(
            "predictor_request_errors",
            "Predict requests answered with an error status (>= 400).",
            ("model", "version", "code"),
            registry=reg,
        )
        self.latency = Histogram(
            "predictor_request_duration_seconds",
            "Time from receiving a predict request to sending its response.",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "predictor_batch_size_rows",
            "Rows (instances) per model call after adaptive batching.",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.batch_requests = Histogram(
            "predictor_batch_requests",
            "Requests merged into one model call.",
            ("model", "version"),
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.model_seconds = Histogram(
            "predictor_model_call_duration_seconds",
            "Time spent inside one model call (predict of a batch).",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.request_log_dropped = Counter(
            "predictor_request_log_dropped",
            "Request-log rows dropped because the writer queue was full or a write failed.",
            ("table",),
            registry=reg,
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        #: per (model, version, code): [requests, seconds, latency bucket counts]
        self._pending: dict[tuple[str, str, int], list[Any]] = {}
        # several workers: a scrape reads every worker's files, so no worker may hold
        # counts back (each request goes to prometheus_client at once, as before)
        self._bulk = False
        if not self.multiprocess:
            probe = self.latency.labels("", "")
            self._bulk = hasattr(probe, "_sum") and len(getattr(probe, "_buckets", ())) == (
                len(LATENCY_BUCKETS) + 1
            )
            self.latency.remove("", "")

    def log_dropped(self, table: str) -> None:
        """Count one request-log row that was not written (``RequestLogger(on_drop=...)``)."""
        self.request_log_dropped.labels(table).inc()

    def observe_request(self, model: str, version: str, code: int, seconds: float) -> None:
        """Count one answered predict request and its latency (event loop thread only)."""
        key = (model, version, code)
        if not self._bulk:  # several workers, or an unknown prometheus_client layout
            req, err, lat = self._children_of(key)
            req.inc()
            if err is not None:
                err.inc()
            lat.observe(seconds)
            return
        p = self._pending.get(key)
        if p is None:
            p = self._pending[key] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        p[0] += 1
        p[1] += seconds
        p[2][bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def _children_of(self, key: tuple[str, str, int]) -> tuple[Any, Any, Any]:
        """The labelled request counter, error counter (None below 400) and latency
        histogram of ``(model, version, code)``, made once."""
        children = self._children.get(key)
        if children is None:
            model, version, code = key
            children = self._children[key] = (
                self.requests.labels(model, version, str(code)),
                self.errors.labels(model, version, str(code)) if code >= 400 else None,
                self.latency.labels(model, version),
            )
        return children

    def flush(self) -> None:
        """Hand the requests counted since the last flush to prometheus_client."""
        pending, self._pending = self._pending, {}
        for key, (n, seconds, buckets) in pending.items():
            req, err, lat = self._children_of(key)
            req.inc(n)
            if err is not None:
                err.inc(n)
            lat._sum.inc(seconds)  # prometheus_client: one non-cumulative count per bucket
            for i, count in enumerate(buckets):
                if count:
                    lat._buckets[i].inc(count)

    def batch_hook(self, model: str, version: str) -> Any:
        """``on_batch`` hook for the batcher of ``model``/``version``."""
        rows_h = self.batch_rows.labels(model, version)
        reqs_h = self.batch_requests.labels(model, version)
        secs_h = self.model_seconds.labels(model, version)

        def on_batch(rows: int, requests: int, seconds: float) -> None:
            rows_h.observe(rows)
            reqs_h.observe(requests)
            secs_h.observe(seconds)

        return on_batch

    def render(self) -> tuple[bytes, bytes]:
        """``(content type, body)`` of the Prometheus text exposition."""
        self.flush()
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.multiprocess:
            from prometheus_client import CollectorRegistry, multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return CONTENT_TYPE_LATEST.encode(), generate_latest(registry)
        return CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry)
