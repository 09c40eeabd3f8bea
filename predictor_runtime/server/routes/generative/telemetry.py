"""Prometheus metrics of the generative routes (on the server's metrics registry).

- ``predictor_generative_requests_total{model,version,method,code}``: requests answered;
- ``predictor_generative_request_duration_seconds{model,version,method}``: until the
  response (for streams: until the last chunk was handed over);
- ``predictor_generative_input_tokens_total{model,version,method}`` and
  ``predictor_generative_output_tokens_total{model,version,method}``: prompt and
  candidate tokens from ``usageMetadata`` (known when the predictor counts tokens);
- ``predictor_generative_time_to_first_chunk_seconds{model,version}``: from the request
  to the first streamed chunk being ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...metrics import Metrics


class GenerativeMetrics:
    """The generative metric families, or nothing when the server has no metrics."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.enabled = metrics is not None
        if metrics is None:
            return
        from prometheus_client import Counter, Histogram

        from ...metrics import LATENCY_BUCKETS

        reg = None if metrics.multiprocess else metrics.registry
        labels = ("model", "version", "method")
        self.requests = Counter(
            "predictor_generative_requests",
            "Generative requests answered, by method and HTTP status code.",
            (*labels, "code"),
            registry=reg,
        )
        self.latency = Histogram(
            "predictor_generative_request_duration_seconds",
            "Time from a generative request to its (last) response byte being handed over.",
            labels,
            buckets=(*LATENCY_BUCKETS, 30.0, 60.0),
            registry=reg,
        )
        self.tokens_in = Counter(
            "predictor_generative_input_tokens",
            "Prompt tokens of generative requests (from the predictor's count_tokens).",
            labels,
            registry=reg,
        )
        self.tokens_out = Counter(
            "predictor_generative_output_tokens",
            "Generated (candidate) tokens (from the predictor's count_tokens).",
            labels,
            registry=reg,
        )
        self.first_chunk = Histogram(
            "predictor_generative_time_to_first_chunk_seconds",
            "Time from a streamGenerateContent request to its first chunk being ready.",
            ("model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    def request(self, model: str, version: str, method: str, code: int, seconds: float) -> None:
        """Count one answered request."""
        if self.enabled:
            self.requests.labels(model, version, method, str(code)).inc()
            self.latency.labels(model, version, method).observe(seconds)

    def tokens(self, model: str, version: str, method: str, usage: Any) -> None:
        """Add a response's ``usageMetadata`` token counts."""
        if self.enabled and isinstance(usage, dict):
            prompt = usage.get("promptTokenCount")
            out = usage.get("candidatesTokenCount")
            if isinstance(prompt, int):
                self.tokens_in.labels(model, version, method).inc(prompt)
            if isinstance(out, int):
                self.tokens_out.labels(model, version, method).inc(out)

    def first(self, model: str, version: str, seconds: float) -> None:
        """Record a stream's time to first chunk."""
        if self.enabled:
            self.first_chunk.labels(model, version).observe(seconds)
