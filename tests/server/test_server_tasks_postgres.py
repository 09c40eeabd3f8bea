"""Async tasks shared by two ``serve`` processes through one real PostgreSQL.

Both serve the same command-line model (local to each) with their own ``--state-dir``;
the tasks table in the database is their only link. The predictor appends one line per
instance to a file both processes share, before and after it works, so side effects can
be counted: every task must have exactly one ``done`` line.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

FX_PREDICTOR = '''
import os
import time


class FxPredictor:
    """Answers each instance's id; logs "start"/"done" lines; sleeps the batch's max "sleep"."""

    def __init__(self, path):
        self.path = path

    @classmethod
    def from_path(cls, model_dir):
        return cls(os.path.join(model_dir, "effects.log"))

    def predict(self, instances, **kwargs):
        self._log("start", instances)
        delay = max((i.get("sleep", 0) for i in instances), default=0)
        if delay:
            time.sleep(delay)
        self._log("done", instances)
        return [i["id"] for i in instances]

    def _log(self, what, instances):
        lines = "".join(f"{what} {i['id']} {os.getpid()}\\n" for i in instances)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
'''


@pytest.fixture
def fx_model(tmp_path: Path) -> tuple[Path, list[str]]:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "fx_predictor.py").write_text(FX_PREDICTOR)
    model = tmp_path / "model"
    model.mkdir()
    args = ["--model-dir", str(model), "--package", str(pkg), "--model-name", "fx",
            "--prediction-class", "fx_predictor.FxPredictor"]  # fmt: skip
    return model / "effects.log", args


def effects(path: Path) -> dict[str, collections.Counter[str]]:
    """``{"start"|"done": Counter(task id -> lines)}`` and per-pid counts under ``pids``."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    if path.exists():
        for line in path.read_text().splitlines():
            what, ident, pid = line.split()
            out[what][ident] += 1
            out["pid:" + what][pid] += 1
    return out


async def submit(url: str, ids: list[str], sleep: float = 0.0) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        sem = asyncio.Semaphore(50)

        async def one(ident: str) -> str:
            body = {"args": {"instances": [{"id": ident, "sleep": sleep}]}}
            async with sem:
                r = await client.post("/v1/async-tasks?model_endpoint_id=fx", json=body)
            assert r.status_code == 200, r.text
            return r.json()["task_id"]

        return await asyncio.gather(*(one(i) for i in ids))


def statuses(url: str, task_ids: list[str]) -> collections.Counter[str]:
    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            sem = asyncio.Semaphore(50)

            async def one(t: str) -> str:
                async with sem:
                    return (await client.get(f"/v1/async-tasks/{t}")).json()["status"]

            return await asyncio.gather(*(one(t) for t in task_ids))

    return collections.Counter(asyncio.run(run()))


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_1000_tasks_submitted_to_two_processes_run_exactly_once(
    cli_server, fx_model, tmp_path: Path, pg_url: str
):
    log, args = fx_model
    a = cli_server(["--state-dir", str(tmp_path / "a"), "--state-url", pg_url, *args])
    b = cli_server(["--state-dir", str(tmp_path / "b"), "--state-url", pg_url, *args])
    ids = [f"task{i:04d}" for i in range(1000)]

    async def both() -> list[list[str]]:
        return await asyncio.gather(submit(a.url, ids[:500]), submit(b.url, ids[500:]))

    task_ids = [t for part in asyncio.run(both()) for t in part]
    assert len(set(task_ids)) == 1000
    wait_for(lambda: sum(effects(log)["done"].values()) >= 1000, 120, "1,000 tasks to run")
    got = statuses(a.url, task_ids)
    assert got == {"SUCCESS": 1000}, got
    done = effects(log)["done"]
    assert set(done) == set(ids) and set(done.values()) == {1}  # each exactly once
    assert statuses(b.url, task_ids[:10]) == {"SUCCESS": 10}  # one queue, seen from both
    for srv in (a, b):
        assert srv.stop() == 0


@pytest.mark.slow
def test_tasks_of_a_killed_process_finish_on_the_other_after_the_lease(
    cli_server, fx_model, tmp_path: Path, pg_url: str
):
    log, args = fx_model
    lease = ["--task-lease", "2"]
    a = cli_server(["--state-dir", str(tmp_path / "a"), "--state-url", pg_url, *lease, *args])
    b = cli_server(["--state-dir", str(tmp_path / "b"), "--state-url", pg_url, *lease, *args])
    ids = [f"slow{i}" for i in range(8)]
    # submitted to A, which claims them at once (B could only take PENDING ones)
    task_ids = asyncio.run(submit(a.url, ids, sleep=4.0))
    wait_for(lambda: len(effects(log)["start"]) > 0, 30, "A to start running them")
    assert list(effects(log)["pid:start"]) == [str(a.proc.pid)]
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    assert effects(log)["done"] == {}  # none finished on A
    assert statuses(b.url, task_ids) == {"STARTED": len(ids)}  # A's, until its lease expires
    wait_for(lambda: statuses(b.url, task_ids) == {"SUCCESS": len(ids)}, 60, "B to finish them")
    done = effects(log)["done"]
    assert set(done) == set(ids) and set(done.values()) == {1}
    assert list(effects(log)["pid:done"]) == [str(b.proc.pid)]
    assert b.stop() == 0
