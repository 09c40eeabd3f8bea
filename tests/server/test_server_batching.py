"""Adaptive batching through the real server: rows, ownership, kwargs, per-request errors."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import orjson
import pytest

from predictor_runtime.batching import Batcher, _Item, kwargs_key
from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.loader import LoadedModel

URL = "/v1/models/echo:predict"


async def _post_all(base: str, bodies: list[dict], limit: int = 200) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post(URL, json=b) for b in bodies))


def test_200_concurrent_requests_each_get_their_own_rows(live_factory):
    srv = live_factory(max_batch_size=16)
    rng = random.Random(7)
    bodies = []
    for i in range(200):
        n = rng.randint(1, 4)
        bodies.append({"instances": [f"r{i}-{j}" for j in range(n)]})
    responses = asyncio.run(_post_all(srv.url, bodies))
    for body, r in zip(bodies, responses, strict=True):
        assert r.status_code == 200, r.text
        assert [p["id"] for p in r.json()["predictions"]] == body["instances"]
    calls = srv.predictor().calls
    assert sum(len(rows) for rows, _ in calls) == sum(len(b["instances"]) for b in bodies)
    assert max(len(rows) for rows, _ in calls) <= 16
    merged = [req for _, req in srv.batches if req > 1]
    assert merged, f"no call merged more than one request: {srv.batches}"
    assert all(rows <= 16 for rows, _ in srv.batches)


def test_different_kwargs_are_never_merged(live_factory):
    srv = live_factory(max_batch_size=64)
    bodies = []
    for i in range(120):
        tag = "abc"[i % 3]
        body: dict = {"instances": [f"{tag}-{i}"]}
        if tag != "c":
            body["tag"] = tag
        bodies.append(body)
    responses = asyncio.run(_post_all(srv.url, bodies))
    for body, r in zip(bodies, responses, strict=True):
        assert r.status_code == 200
        (pred,) = r.json()["predictions"]
        assert pred["id"] == body["instances"][0]
        assert pred["kw"] == {k: v for k, v in body.items() if k != "instances"}
    for rows, kwargs in srv.predictor().calls:
        tags = {row.split("-")[0] for row in rows}
        assert tags == {kwargs.get("tag", "c")}
    assert any(req > 1 for _, req in srv.batches)


@pytest.mark.parametrize(
    ("poison", "expected"),
    [
        (["ok-1", "bad", "ok-2"], "Invalid inputs: instance 1: this row is bad"),
        (["boom"], "Prediction failed: ValueError: boom"),
    ],
)
def test_one_bad_request_fails_alone(live_factory, poison, expected):
    srv = live_factory(max_batch_size=64)
    bodies = [{"instances": [f"g{i}-a", f"g{i}-b"]} for i in range(60)]
    bodies.insert(30, {"instances": poison})
    responses = asyncio.run(_post_all(srv.url, bodies))
    for body, r in zip(bodies, responses, strict=True):
        if body["instances"] is poison:
            assert r.status_code == 400
            assert r.json() == {"error": expected}
        else:
            assert r.status_code == 200, r.text
            assert [p["id"] for p in r.json()["predictions"]] == body["instances"]


def test_big_request_goes_alone_and_is_micro_batched(live_factory):
    srv = live_factory(max_batch_size=8)
    bodies = [{"instances": [f"big-{j}" for j in range(20)]}] + [
        {"instances": [f"s{i}"]} for i in range(20)
    ]
    responses = asyncio.run(_post_all(srv.url, bodies))
    for body, r in zip(bodies, responses, strict=True):
        assert [p["id"] for p in r.json()["predictions"]] == body["instances"]
    assert max(len(rows) for rows, _ in srv.predictor().calls) <= 8


def test_batching_false_is_never_merged(live_factory):
    srv = live_factory(max_batch_size=64, batching=False)
    bodies = [{"instances": [f"n{i}"]} for i in range(40)]
    responses = asyncio.run(_post_all(srv.url, bodies))
    assert all(r.status_code == 200 for r in responses)
    assert all(len(rows) == 1 for rows, _ in srv.predictor().calls)


def test_max_batch_delay_waits_for_more_rows(live_factory):
    srv = live_factory(max_batch_size=64, max_batch_delay_ms=50)
    bodies = [{"instances": [f"d{i}"]} for i in range(30)]
    responses = asyncio.run(_post_all(srv.url, bodies))
    assert all(r.status_code == 200 for r in responses)
    assert max(req for _, req in srv.batches) >= 10


class _Numbers:
    """Returns a numpy array (sliced per request by the batcher)."""

    def predict(self, instances, **kwargs):
        import numpy as np

        return np.asarray(instances, dtype=float).sum(axis=1)


def test_batcher_unit_numpy_output_and_cancellation():
    dispatcher = Dispatcher(LoadedModel.wrap(_Numbers(), "custom", "."), max_batch_size=4)
    seen: list[tuple[int, int]] = []
    batcher = Batcher(dispatcher, on_batch=lambda rows, reqs, secs: seen.append((rows, reqs)))

    async def main() -> list:
        cancelled = asyncio.ensure_future(batcher.predict([[9, 9]]))
        tasks = [asyncio.ensure_future(batcher.predict([[i, 1]])) for i in range(6)]
        cancelled.cancel()
        out = await asyncio.gather(*tasks)
        await batcher.aclose()
        return out

    out = asyncio.run(main())
    assert [list(o) for o in out] == [[i + 1.0] for i in range(6)]
    assert all(rows <= 4 for rows, _ in seen)
    assert sum(rows for rows, _ in seen) == 6  # the cancelled request never ran


def test_kwargs_key_is_canonical():
    assert kwargs_key({}) == b""
    assert kwargs_key({"a": 1, "b": [1, 2]}) == kwargs_key({"b": [1, 2], "a": 1})
    assert kwargs_key({"a": 1}) != kwargs_key({"a": 2})


def test_adaptive_wait_only_when_the_next_rows_could_join():
    dispatcher = Dispatcher(LoadedModel.wrap(_Numbers(), "custom", "."), max_batch_size=1024)
    batcher = Batcher(dispatcher)

    async def main() -> list[float]:
        waits = [batcher.adaptive_wait()]  # nothing measured yet
        # a batch of sixteen one-row requests: small callers are expected back
        await asyncio.gather(*(batcher.predict([[i, 1]]) for i in range(16)))
        loop = asyncio.get_running_loop()
        batcher._queue.append(_Item([[0, 0]], {}, b"", loop.create_future(), None, 0.0))
        batcher._queued_rows = 1
        waits.append(batcher.adaptive_wait())
        batcher._queue.clear()
        batcher._queued_rows = 0
        # one sequential client: its next request is all the last batch had
        await batcher.predict([[1, 1]])
        batcher._queue.append(_Item([[0, 0]], {}, b"", loop.create_future(), None, 0.0))
        batcher._queued_rows = 1
        waits.append(batcher.adaptive_wait())
        batcher._queue.clear()
        batcher._queued_rows = 0
        # 1,000-row requests: a second one can never join the first (1,024-row cap)
        big = [[1, 1]] * 1000
        await asyncio.gather(batcher.predict(big), batcher.predict(big))
        batcher._queue.append(_Item(big, {}, b"", loop.create_future(), None, 0.0))
        batcher._queued_rows = 1000
        waits.append(batcher.adaptive_wait())
        batcher._queue.clear()
        await batcher.aclose()
        return waits

    before, small, lone, large = asyncio.run(main())
    assert before == 0.0 and small > 0.0 and lone == 0.0 and large == 0.0


def test_large_requests_still_arriving_are_waited_for(live_factory):
    """Four large requests whose headers arrived before any body are merged into one call.

    The batcher learns of a request when its handler starts (before the body is read), so
    an idle model waits for the bodies still on their way instead of running the first
    request alone: merging of large concurrent requests does not depend on timing.
    """
    import socket

    from echo_predictor import EchoPredictor

    srv = live_factory(max_batch_size=4096, predictor=EchoPredictor(delay=0.05))
    rows = 200
    httpx.post(f"{srv.url}/v1/models/echo:predict", json={"instances": list(range(rows))})
    srv.batches.clear()
    port = int(srv.url.rsplit(":", 1)[1])
    bodies = [orjson.dumps({"instances": [f"r{i}-{j}" for j in range(rows)]}) for i in range(4)]
    socks = []
    for body in bodies:  # every request announced (headers sent), no body complete yet
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        socks.append(s)
    batcher = srv.app.registry.version("echo").batcher
    wait_for(lambda: batcher._arriving == 4)
    socks[0].sendall(bodies[0][10:])  # the first request is queued while 3 still arrive
    wait_for(lambda: batcher._arriving == 3)
    for s, body in zip(socks[1:], bodies[1:], strict=True):
        s.sendall(body[10:])
    answers = []
    for s in socks:
        s.settimeout(10)
        data = b""
        while b'"predictions"' not in data or not data.rstrip().endswith(b"]}"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        answers.append(orjson.loads(data.split(b"\r\n\r\n", 1)[1]))
        s.close()
    for i, out in enumerate(answers):
        assert [p["id"] for p in out["predictions"]] == [f"r{i}-{j}" for j in range(rows)]
    assert srv.batches == [(4 * rows, 4)]


def wait_for(condition, timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)
