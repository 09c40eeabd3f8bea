"""What the hardening costs on the predict hot path (pytest-benchmark).

- ``parse``: :func:`predictor_runtime.codecs.parse_json` (nesting-depth check, then orjson)
  against ``orjson.loads`` alone (the baseline), for bodies of 1, 100 and 1,000 rows of
  30 floats.
- ``guard``: the security guard's check of one request (by default: Host and Origin; with
  an Origin header; with an api key) against one one-row predict request through the
  ASGI app in process without the guard (the baseline; the predictor returns its input,
  so the runtime's own path is all that is measured).

Run: ``python -m pytest benchmarks/bench_hardening.py --benchmark-only
--benchmark-json=/tmp/h.json && python benchmarks/ratios.py /tmp/h.json --baseline
'^test_raw'``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from predictor_runtime import codecs
from predictor_runtime.loader import LoadedModel
from predictor_runtime.server.app import App
from predictor_runtime.server.context import ServerOptionsView
from predictor_runtime.server.registry import Registry

ROW = [0.5] * 30


def body_of(rows: int) -> bytes:
    return orjson.dumps({"instances": [ROW] * rows})


@pytest.mark.parametrize("rows", [1, 100, 1000])
def test_raw(benchmark: Any, rows: int) -> None:
    benchmark.group = f"parse {rows} rows"
    body = body_of(rows)
    benchmark(orjson.loads, body)


@pytest.mark.parametrize("rows", [1, 100, 1000])
def test_parse_json_with_depth_check(benchmark: Any, rows: int) -> None:
    benchmark.group = f"parse {rows} rows"
    body = body_of(rows)
    benchmark(codecs.parse_json, body)


@pytest.mark.parametrize("rows", [1, 100, 1000])
def test_depth_check_alone(benchmark: Any, rows: int) -> None:
    benchmark.group = f"parse {rows} rows"
    body = body_of(rows)
    benchmark(codecs.exceeds_depth, body)


class Identity:
    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        return list(instances)


class NoGuard:
    def check(self, scope: Any, public: bool) -> tuple[None, tuple[()]]:
        return None, ()


def make_runner(
    options: ServerOptionsView, guard: bool, headers: list[Any], per_run: int = 100
) -> Any:
    registry = Registry()
    version = registry.add_version("m", "v1", deployment_uri="/nonexistent")
    registry.attach(version, LoadedModel.wrap(Identity(), "custom", "/nonexistent"))
    app = App(registry, metrics=None, options=options)
    if not guard:
        app.guard = NoGuard()  # type: ignore[assignment]
    body = body_of(1)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/m:predict",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), *headers],
        "server": ("127.0.0.1", 8080),
        "query_string": b"",
    }
    loop = asyncio.new_event_loop()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def many(n: int) -> None:
        for _ in range(n):
            await app(scope, receive, send)

    def run() -> None:
        loop.run_until_complete(many(per_run))

    run()
    assert statuses and set(statuses) == {200}, statuses[:3]
    return run, loop


GUARDS = [
    ("default", ServerOptionsView(), []),
    ("same_origin", ServerOptionsView(), [(b"origin", b"http://127.0.0.1:8080")]),
    ("api_key", ServerOptionsView(api_key="k" * 32), [(b"authorization", b"Bearer " + b"k" * 32)]),
]


def test_raw_request(benchmark: Any) -> None:
    """Baseline: one one-row predict request through the app, without the guard."""
    benchmark.group = "guard vs one predict request"
    run, loop = make_runner(ServerOptionsView(), False, [], per_run=1)
    try:
        benchmark(run)
    finally:
        loop.close()


@pytest.mark.parametrize(("name", "options", "headers"), GUARDS, ids=[g[0] for g in GUARDS])
def test_guard_check(benchmark: Any, name: str, options: Any, headers: list[Any]) -> None:
    """The guard's work for one request (what it adds to the baseline)."""
    benchmark.group = "guard vs one predict request"
    from predictor_runtime.server.security import Guard

    guard = Guard(api_key=options.api_key, cors_origins=options.cors_origins)
    scope = {
        "method": "POST",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), *headers],
        "server": ("127.0.0.1", 8080),
    }
    assert guard.check(scope, False)[0] is None
    benchmark(guard.check, scope, False)
