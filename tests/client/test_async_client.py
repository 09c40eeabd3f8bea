"""``predictor_runtime.client.AsyncClient`` against a real ``serve`` subprocess."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from client_helpers import requests_counted, version_body

from predictor_runtime.client import (
    AsyncClient,
    BadRequestError,
    NotFoundError,
    ServiceUnavailableError,
    VersionFailedError,
)

pytestmark = pytest.mark.slow  # a serve subprocess per module


def test_gather_of_200_predictions_each_gets_its_own(server):
    async def main() -> list[list[Any]]:
        async with AsyncClient(server.url) as client:
            return await asyncio.gather(
                *(client.predict("echo", [i, f"row-{i}"], n=i) for i in range(200))
            )

    results = asyncio.run(main())
    assert len(results) == 200
    for i, out in enumerate(results):
        assert out == [{"x": i, "kw": {"n": i}}, {"x": f"row-{i}", "kw": {"n": i}}]


def test_async_errors_and_no_retry_on_400(server):
    async def main() -> None:
        async with AsyncClient(server.url, retries=4, backoff=0.01) as client:
            sent: list[str] = []

            async def hook(request: Any) -> None:
                sent.append(request.url.path)

            client._http.event_hooks["request"].append(hook)
            with pytest.raises(BadRequestError, match="the predictor exploded"):
                await client.predict("echo", ["boom"])
            assert sent == ["/v1/models/echo:predict"]
            with pytest.raises(NotFoundError) as exc:
                await client.get_model("missing-model")
            assert exc.value.reason == "NOT_FOUND" and "missing-model" in exc.value.message

    before = requests_counted("echo", "v1", 400, server.url)
    asyncio.run(main())
    assert requests_counted("echo", "v1", 400, server.url) == before + 1


def test_async_management_and_retry_while_loading(server, model_factory):
    slow_dir, pkg = model_factory("async_slow", load_seconds=1.0)
    broken_dir, _ = model_factory("async_broken", fail="no weights here (async test)")

    async def main() -> None:
        async with AsyncClient(server.url, retries=0) as client:
            await client.create_model("amodel", labels={"k": "v"})
            assert "amodel" in [m["name"].rsplit("/", 1)[1] for m in await client.list_models()]
            op = await client.create_version(
                "amodel", version_body("v1", slow_dir, pkg), wait=False
            )
            with pytest.raises(ServiceUnavailableError):
                await client.predict("amodel", ["x"])
        async with AsyncClient(server.url, retries=10, backoff=0.1, max_backoff=0.5) as client:
            started = time.monotonic()
            assert await client.predict("amodel", ["x"]) == [{"x": "x", "kw": {}}]
            assert time.monotonic() - started < 15
            done = await client.wait_operation(op)
            assert done["done"] is True and "error" not in done
            with pytest.raises(VersionFailedError, match="no weights here"):
                await client.create_version("amodel", version_body("v2", broken_dir, pkg))
            versions = {
                v["name"].rsplit("/", 1)[1]: v["state"]
                for v in await client.list_versions("amodel")
            }
            assert versions == {"v1": "READY", "v2": "FAILED"}
            await client.delete_version("amodel", "v2")
            assert len(await client.list_versions("amodel")) == 1

    asyncio.run(main())


def test_async_context_manager_closes_the_pool(server):
    async def main() -> AsyncClient:
        async with AsyncClient(server.url) as client:
            await client.predict("echo", [1])
        return client

    assert asyncio.run(main())._http.is_closed


def test_async_predict_async_future(server):
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            future = await client.predict_async("echo", ["slow"])
            with pytest.raises(TimeoutError, match=future.task_id):
                await future.result(timeout=0.2)
            assert not future.done()
            seen: list[Any] = []
            future.add_done_callback(seen.append)
            assert await future == [{"x": "slow", "kw": {}}]
            await asyncio.sleep(0)  # callbacks run on the next loop turn
            assert future.done() and seen == [future]
            many = await asyncio.gather(*(client.predict_async("echo", [i]) for i in range(50)))
            results = await asyncio.gather(*many)
            assert [r[0]["x"] for r in results] == list(range(50))
            failed = await client.predict_async("echo", ["boom"])
            with pytest.raises(BadRequestError, match="the predictor exploded"):
                await failed

    asyncio.run(main())


def test_async_stream_stops_early(server):
    log = server.root / "echo_v1" / "streams.log"

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            async with client.stream("echo", ["a"], chunks=2) as chunks:
                assert [c async for c in chunks] == [{"i": 0, "n": 1}, {"i": 1, "n": 1}]
            before = log.read_text().count("closed") if log.exists() else 0
            async with client.stream("echo", ["a"], chunks=1000, pause=0.05) as chunks:
                async for chunk in chunks:
                    assert chunk == {"i": 0, "n": 1}
                    break
            deadline = time.monotonic() + 15
            while log.read_text().count("closed") <= before:
                assert time.monotonic() < deadline, "the server did not stop the generator"
                await asyncio.sleep(0.05)

    asyncio.run(main())


def test_async_infer(server):
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            x = np.ones((2, 3), dtype=np.int32)
            out = await client.infer("echo", {"x": x}, parameters={"double": True})
            np.testing.assert_array_equal(out["output_0"], 2 * x)

    asyncio.run(main())
