"""Prometheus metrics of tasks, callbacks and streams (on the server's metric registry).

- ``predictor_tasks_total{model,status}``: tasks accepted (``PENDING``) and finished
  (``SUCCESS`` / ``FAILURE``) by this server;
- ``predictor_tasks{status}``: tasks in the queue per status (sampled every few seconds);
- ``predictor_task_queue_depth``: PENDING tasks (the same sample);
- ``predictor_task_callbacks_total{outcome}``: callback attempts (``delivered``, ``retry``,
  ``failed`` = given up);
- ``predictor_stream_duration_seconds{model,version}``: time from request to the end of a
  streamed response; ``predictor_stream_first_event_seconds{model,version}``: to its first
  event.

In multiprocess mode (``--workers N``) the gauges keep the most recent sample of any
worker (they all read the same queue).
"""

from __future__ import annotations

from typing import Any, Literal

from ..server.metrics import LATENCY_BUCKETS

STREAM_BUCKETS = (*LATENCY_BUCKETS, 30.0, 60.0, 300.0)


class TaskMetrics:
    """The metric families; ``None``-safe helpers so a server without metrics works."""

    def __init__(self, metrics: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        reg = None if metrics.multiprocess else metrics.registry
        # every worker reads the same queue: keep the latest sample of any of them
        mode: Literal["mostrecent", "all"] = "mostrecent" if metrics.multiprocess else "all"
        self.tasks = Counter(
            "predictor_tasks",
            "Tasks accepted (PENDING) and finished (SUCCESS, FAILURE).",
            ("model", "status"),
            registry=reg,
        )
        self.by_status = Gauge(
            "predictor_tasks_queued",
            "Tasks in the durable queue, per status (sampled).",
            ("status",),
            registry=reg,
            multiprocess_mode=mode,
        )
        self.depth = Gauge(
            "predictor_task_queue_depth",
            "PENDING tasks in the durable queue (sampled).",
            registry=reg,
            multiprocess_mode=mode,
        )
        self.callbacks = Counter(
            "predictor_task_callbacks",
            "Callback delivery attempts by outcome (delivered, retry, failed = given up).",
            ("outcome",),
            registry=reg,
        )
        self.stream_seconds = Histogram(
            "predictor_stream_duration_seconds",
            "Time from a streaming request to the end of its stream.",
            ("model", "version"),
            buckets=STREAM_BUCKETS,
            registry=reg,
        )
        self.first_event = Histogram(
            "predictor_stream_first_event_seconds",
            "Time from a streaming request to its first event.",
            ("model", "version"),
            buckets=STREAM_BUCKETS,
            registry=reg,
        )

    def sample(self, counts: dict[str, int]) -> None:
        """Record a sample of the queue (tasks per status)."""
        for status in ("PENDING", "STARTED", "SUCCESS", "FAILURE"):
            self.by_status.labels(status).set(counts.get(status, 0))
        self.depth.set(counts.get("PENDING", 0))
