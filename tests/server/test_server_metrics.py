"""``GET /metrics``: every documented family, and values that add up to what was served."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import predictor_runtime.server.metrics as metrics_module

URL = "/v1/models/echo:predict"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample (name, sorted labels) -> value of one scrape."""
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_documented_family_is_exported(live: Any) -> None:
    r = httpx.get(live.url + "/metrics")
    families = {f.name for f in text_string_to_metric_families(r.text)}
    documented = [
        line.split("``")[1].split("{")[0]
        for line in (metrics_module.__doc__ or "").splitlines()
        if line.startswith("- ``predictor_")
    ]
    assert len(documented) == 7
    for name in documented:
        assert name.removesuffix("_total") in families, name


def test_merged_batches_add_up(live_factory: Any) -> None:
    """Concurrent requests merged by the batcher: the histograms count rows, requests and
    model calls exactly as the batcher reported them."""
    from echo_predictor import EchoPredictor

    srv = live_factory(predictor=EchoPredictor(delay=0.05), max_batch_size=64)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post(URL, json={"instances": [i, i]}) for i in range(12))
            )

    assert all(r.status_code == 200 for r in asyncio.run(burst()))
    samples = scrape(srv.url)
    labels = {"model": "echo", "version": "v1"}
    calls = len(srv.batches)
    assert calls < 12  # some requests were merged while a model call ran
    assert value(samples, "predictor_batch_size_rows_sum", **labels) == 24
    assert value(samples, "predictor_batch_size_rows_count", **labels) == calls
    assert value(samples, "predictor_batch_requests_sum", **labels) == 12
    assert value(samples, "predictor_batch_requests_count", **labels) == calls
    assert value(samples, "predictor_model_call_duration_seconds_count", **labels) == calls
    assert value(samples, "predictor_model_call_duration_seconds_sum", **labels) >= 0.05 * calls
    assert value(samples, "predictor_requests_total", code="200", **labels) == 12
    assert value(samples, "predictor_request_duration_seconds_count", **labels) == 12
    # bucket counts are cumulative and end at the total
    buckets = sorted(
        (float(dict(lbl)["le"]), v)
        for (name, lbl), v in samples.items()
        if name == "predictor_batch_requests_bucket"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == calls


def test_request_counts_added_up_between_scrapes_are_exact() -> None:
    """Requests added up between scrapes expose exactly what one ``observe`` each would."""
    metrics = metrics_module.Metrics()
    seconds = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 4.0, 11.0, 0.001]
    for i, s in enumerate(seconds):
        metrics.observe_request("m", "v1", 200 if i % 3 else 400, s)
        if i == 4:
            metrics.render()  # a scrape in the middle: nothing counted twice or lost
    ours = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics.render()[1].decode())
        for s in f.samples
    }
    for bound in [*metrics_module.LATENCY_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else str(bound)
        got = value(
            ours, "predictor_request_duration_seconds_bucket", le=le, model="m", version="v1"
        )
        assert got == sum(1 for s in seconds if s <= bound), le
    total = value(ours, "predictor_request_duration_seconds_sum", model="m", version="v1")
    assert abs(total - sum(seconds)) < 1e-9
    assert value(ours, "predictor_requests_total", model="m", version="v1", code="200") == 6
    assert value(ours, "predictor_requests_total", model="m", version="v1", code="400") == 3
    assert value(ours, "predictor_request_errors_total", model="m", version="v1", code="400") == 3
