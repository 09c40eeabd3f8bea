"""Two processes' views of one state file: a write through one is seen by the other.

Two :class:`ManagedState` objects on the same SQLite file stand for two ``serve`` workers
(each has its own connection, registry and sync); no HTTP, no mocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from predictor_runtime.server.registry import Registry
from predictor_runtime.server.routes.management.handlers import Management
from predictor_runtime.server.state import ManagedState


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until ``condition()`` holds (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def run(coro_fn: Callable[..., Any], tmp_path: Path, **kwargs: Any) -> None:
    async def main() -> None:
        first = ManagedState(Registry(), state_dir=tmp_path, **kwargs)
        second = ManagedState(Registry(), state_dir=tmp_path, **kwargs)
        await first.start()
        await second.start()
        try:
            await coro_fn(first, second)
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(main())


def write(state: ManagedState, method: str, *args: str, body: Any = None, **query: str) -> Any:
    mgmt = Management(state)
    data = orjson.dumps(body) if body is not None else b""
    return mgmt.write(getattr(mgmt, method), "p", *args, body=data, query=query)


def test_create_patch_delete_through_one_are_seen_by_the_other(tmp_path: Path) -> None:
    async def scenario(a: ManagedState, b: ManagedState) -> None:
        await write(a, "_post_models", body={"name": "shop", "labels": {"k": "v"}})
        assert "shop" in a.registry.models
        assert await b.refresh() is True  # b notices a's commit (PRAGMA data_version)
        assert b.registry.models["shop"].labels == {"k": "v"}
        assert await b.refresh() is False  # nothing new: no re-read

        await write(
            b, "_patch_model", "shop", body={"description": "from b"}, updateMask="description"
        )
        await a.refresh()
        assert a.registry.models["shop"].description == "from b"
        assert a.registry.models["shop"].etag == b.registry.models["shop"].etag

        await write(a, "_delete_model", "shop")
        await b.refresh()
        assert "shop" not in b.registry.models

    run(scenario, tmp_path, sync_interval=60.0)


def test_periodic_sync_applies_the_other_writer_without_a_request(tmp_path: Path) -> None:
    async def scenario(a: ManagedState, b: ManagedState) -> None:
        await write(a, "_post_models", body={"name": "later"})
        await wait_for(lambda: "later" in b.registry.models)
        await write(a, "_patch_model", "later", body={"labels": {"x": "y"}}, updateMask="labels")
        await wait_for(lambda: b.registry.models["later"].labels == {"x": "y"})

    run(scenario, tmp_path, sync_interval=0.02)


def test_a_version_created_through_one_is_loaded_by_both(tmp_path: Path, echo_model: Any) -> None:
    model_dir, pkg = echo_model()

    async def scenario(a: ManagedState, b: ManagedState) -> None:
        await write(a, "_post_models", body={"name": "m"})
        op = await write(
            a,
            "_post_versions",
            "m",
            body={
                "name": "v1",
                "deploymentUri": str(model_dir),
                "predictionClass": "echo_predictor.EchoPredictor",
                "packageUris": [str(pkg)],
            },
        )
        assert op["done"] is False
        await b.refresh()

        def ready(state: ManagedState) -> bool:
            v = state.registry.models["m"].versions.get("v1")
            return v is not None and v.state == "READY"

        await wait_for(lambda: ready(a) and ready(b), timeout=60)
        for state in (a, b):
            out = await state.registry.version("m").ready().predict(["q"], {})
            assert out[0]["id"] == "q"
        # the operation was completed once, in the shared store, by whichever loaded first
        stored = a.store.operation(op["name"].rsplit("/", 1)[1])
        assert stored is not None and stored["done"] is True
        assert stored["response"]["state"] == "READY"

    run(scenario, tmp_path, sync_interval=0.05)
