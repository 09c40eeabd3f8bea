"""Persistence across restarts and --workers N, with real ``serve`` subprocesses."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

ECHO = ["--prediction-class", "echo_predictor.EchoPredictor"]
BASE = "/v1/projects/p/models"


def wait_op(url: str, op: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not op["done"]:
        assert time.monotonic() < deadline, op
        time.sleep(0.05)
        op = httpx.get(f"{url}/v1/{op['name']}").json()
    return op


def wait_state(url: str, path: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        v = httpx.get(url + path).json()
        if v["state"] != "CREATING" or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def test_restart_restores_api_models(cli_server, echo_model, tmp_path: Path):
    model_dir, pkg = echo_model()
    state = tmp_path / "state"
    args = ["--state-dir", str(state), "--model-dir", str(model_dir), "--package", str(pkg), *ECHO]
    srv = cli_server(args)
    url = srv.url
    assert httpx.post(url + BASE, json={"name": "kept", "labels": {"a": "b"}}).status_code == 200
    body = {
        "name": "v1",
        "deploymentUri": f"file://{model_dir}",
        "predictionClass": "echo_predictor.EchoPredictor",
        "packageUris": [str(pkg)],
        "description": "restored",
        "requestLoggingConfig": {"samplingPercentage": 0.5, "bigqueryTableName": "p.d.t"},
    }
    op = wait_op(url, httpx.post(url + BASE + "/kept/versions", json=body).json())
    assert op["response"]["state"] == "READY"
    r = httpx.post(url + BASE + "/kept:predict", json={"instances": ["x"]})
    assert r.status_code == 200
    before = httpx.get(url + BASE + "/kept/versions/v1").json()
    # the command-line model is served but patched only until the restart
    r = httpx.patch(url + BASE + "/default/versions/v1?updateMask=description",
                    json={"description": "temporary"})  # fmt: skip
    assert r.status_code == 200
    assert srv.stop(signal.SIGTERM) == 0

    # lastUseTime was persisted lazily, at shutdown
    with sqlite3.connect(state / "state.sqlite3") as db:
        (raw,) = db.execute("SELECT resource FROM versions WHERE model = 'kept'").fetchone()
    assert '"lastUseTime":"' in raw

    srv = cli_server(args)
    url = srv.url
    names = [m["name"] for m in httpx.get(url + BASE).json()["models"]]
    assert sorted(names) == ["projects/p/models/default", "projects/p/models/kept"]
    assert httpx.get(url + BASE + "/kept").json()["labels"] == {"a": "b"}
    v = wait_state(url, BASE + "/kept/versions/v1")
    assert v["state"] == "READY", v
    assert v["isDefault"] is True and v["description"] == "restored"
    assert v["createTime"] == before["createTime"] and v["lastUseTime"] == before["lastUseTime"]
    assert v["requestLoggingConfig"] == body["requestLoggingConfig"]
    r = httpx.post(url + BASE + "/kept/versions/v1:predict", json={"instances": ["again"]})
    assert r.status_code == 200 and r.json()["predictions"][0]["id"] == "again"
    cli_version = httpx.get(url + BASE + "/default/versions/v1").json()
    assert "description" not in cli_version  # re-registered from the flags
    assert srv.stop() == 0


def test_two_workers_see_each_others_writes(cli_server, echo_model, tmp_path: Path):
    model_dir, pkg = echo_model(load_seconds=0.2)
    srv = cli_server(["--state-dir", str(tmp_path / "state"), "--model-dir", str(model_dir),
                      "--package", str(pkg), *ECHO, "--workers", "2"])  # fmt: skip
    url = srv.url
    assert httpx.post(url + BASE, json={"name": "shared"}).status_code == 200
    body = {
        "name": "v1",
        "deploymentUri": str(model_dir),
        "predictionClass": "echo_predictor.EchoPredictor",
        "packageUris": [str(pkg)],
    }
    wait_op(url, httpx.post(url + BASE + "/shared/versions", json=body).json())

    async def many(path: str, n: int = 8) -> list[httpx.Response]:
        results = []
        for _ in range(4):  # fresh connections spread over both workers
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                results += await asyncio.gather(
                    *(client.post(path, json={"instances": [i]}) for i in range(n))
                )
        return results

    # once the operation is done, every worker answers (waiting for its own copy to load)
    responses = asyncio.run(many(BASE + "/shared:predict"))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.json()["predictions"][0]["pid"] for r in responses}) == 2
    # a patch made through one worker is seen by the next request to any worker
    r = httpx.patch(url + BASE + "/shared/versions/v1?updateMask=description",
                    json={"description": "seen"})  # fmt: skip
    assert r.status_code == 200

    async def gets() -> list[httpx.Response]:
        out = []
        for _ in range(6):
            async with httpx.AsyncClient(base_url=url) as client:
                out.append(await client.get(BASE + "/shared/versions/v1"))
        return out

    assert all(r.json()["description"] == "seen" for r in asyncio.run(gets()))
    # a deletion too: the version stops being served everywhere
    httpx.post(url + BASE + "/shared/versions", json={**body, "name": "v2"})
    assert httpx.post(url + BASE + "/shared/versions/v2:setDefault").status_code == 200
    assert httpx.delete(url + BASE + "/shared/versions/v1").status_code == 200
    # every worker drops it at its next data_version check (periodic, or on a miss)
    deadline = time.monotonic() + 30
    while True:
        responses = asyncio.run(many(BASE + "/shared/versions/v1:predict", 2))
        if all(r.status_code == 404 for r in responses):
            break
        assert time.monotonic() < deadline, [r.status_code for r in responses]
        time.sleep(0.05)
    assert srv.stop() == 0
