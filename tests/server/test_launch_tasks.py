"""Async tasks from the outside: concurrency, merging, and durability across kill -9."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch_helpers import launch_model, wait_for, wait_task

pytestmark = pytest.mark.slow


def test_200_concurrent_tasks_each_get_their_own_rows(cli_server, tmp_path: Path):
    args = [*launch_model(tmp_path, delay=0.005), "--model-name", "echo", "--max-batch-size", "64"]
    srv = cli_server([*args, "--state-dir", str(tmp_path / "state")])

    async def main() -> list[tuple[list[str], dict]]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:

            async def one(i: int) -> tuple[list[str], dict]:
                rows = [f"task{i}-row{k}" for k in range(1 + i % 3)]
                r = await client.post(
                    "/v1/async-tasks?model_endpoint_id=echo",
                    json={"args": {"instances": rows}},
                )
                assert r.status_code == 200, r.text
                task_id = r.json()["task_id"]
                while True:
                    body = (await client.get(f"/v1/async-tasks/{task_id}")).json()
                    if body["status"] in ("SUCCESS", "FAILURE"):
                        return rows, body
                    await asyncio.sleep(0.1)

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(main())
    for rows, body in results:
        assert body["status"] == "SUCCESS", body
        assert [p["id"] for p in body["result"]["result"]["predictions"]] == rows
    metrics = httpx.get(srv.url + "/metrics").text
    calls = requests = 0.0
    for line in metrics.splitlines():
        if line.startswith("predictor_batch_requests_count{"):
            calls += float(line.split()[-1])
        elif line.startswith("predictor_batch_requests_sum{"):
            requests += float(line.split()[-1])
    assert requests == 200
    assert calls < 200  # one-row tasks were merged into shared model calls
    assert 'predictor_tasks_total{model="echo",status="SUCCESS"} 200.0' in metrics


def test_kill_9_loses_nothing_and_never_reruns_finished_tasks(cli_server, tmp_path: Path):
    effects = tmp_path / "effects.txt"
    state = tmp_path / "state"
    args = [
        *launch_model(tmp_path, delay=0.05, side_effects=str(effects)),
        "--model-name", "echo",
        "--max-batch-size", "3",
        "--state-dir", str(state),
    ]  # fmt: skip
    srv = cli_server(args)
    client = httpx.Client(base_url=srv.url, timeout=30)
    ids = {}
    for i in range(50):
        r = client.post("/v1/async-tasks?model_endpoint_id=echo", json={"args": {"instances": [i]}})
        assert r.status_code == 200
        ids[r.json()["task_id"]] = i
    client.close()

    def ran() -> int:
        return len(effects.read_text().splitlines()) if effects.exists() else 0

    wait_for(lambda: ran() >= 12, 30, "tasks did not start running")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    with sqlite3.connect(state / "tasks.sqlite3") as db:
        rows = db.execute("SELECT id, status FROM tasks").fetchall()
    status = dict(rows)
    assert set(status) == set(ids)  # every accepted task is in the queue
    finished = {i for i, s in status.items() if s == "SUCCESS"}
    assert 0 < len(finished) < 50, "kill -9 should land in the middle of the run"

    srv2 = cli_server(args)
    client = httpx.Client(base_url=srv2.url, timeout=30)
    for task_id, i in ids.items():
        body = wait_task(client, task_id, timeout=60)
        assert body["status"] == "SUCCESS", body
        assert body["result"]["result"]["predictions"] == [{"id": i, "kw": {}}]
    client.close()
    counts = Counter(json.loads(line) for line in effects.read_text().splitlines())
    assert set(counts) == set(range(50))  # every task ran
    for task_id in finished:
        assert counts[ids[task_id]] == 1, f"task {ids[task_id]} had finished but ran again"


def test_worker_processes_share_one_queue(cli_server, tmp_path: Path):
    effects = tmp_path / "effects.txt"
    args = [
        *launch_model(tmp_path, delay=0.01, side_effects=str(effects)),
        "--model-name", "echo",
        "--workers", "2",
        "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    srv = cli_server(args)
    client = httpx.Client(base_url=srv.url, timeout=30)
    ids = {}
    for i in range(60):
        r = client.post("/v1/async-tasks?model_endpoint_id=echo", json={"args": {"instances": [i]}})
        assert r.status_code == 200
        ids[r.json()["task_id"]] = i
    for task_id, i in ids.items():  # any worker answers for any task
        body = wait_task(client, task_id)
        assert body["result"]["result"]["predictions"] == [{"id": i, "kw": {}}]
    client.close()
    counts = Counter(json.loads(line) for line in effects.read_text().splitlines())
    assert counts == Counter(range(60))  # each task ran exactly once
