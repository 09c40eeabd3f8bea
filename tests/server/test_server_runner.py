"""The multi-worker runner: a worker killed with SIGKILL is replaced, serving goes on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

ECHO = ["--prediction-class", "echo_predictor.EchoPredictor", "--model-name", "echo"]

pytestmark = pytest.mark.slow


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def worker_pids(parent: int) -> set[int]:
    """The live children of ``parent`` (from /proc; Linux)."""
    path = f"/proc/{parent}/task/{parent}/children"
    with open(path) as fh:
        return {int(p) for p in fh.read().split()}


def serving_pids(url: str, tries: int = 40) -> set[int]:
    """PIDs that answered predictions over ``tries`` fresh connections."""
    seen: set[int] = set()
    for i in range(tries):
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v1/models/echo:predict", json={"instances": [i]})
        assert r.status_code == 200, r.text
        seen.add(r.json()["predictions"][0]["pid"])
    return seen


def test_a_worker_killed_with_sigkill_is_replaced(cli_server: Any, echo_model: Any) -> None:
    model_dir, pkg = echo_model()
    srv = cli_server(
        ["--model-dir", str(model_dir), "--package", str(pkg), *ECHO, "--workers", "2"]
    )
    parent = srv.proc.pid
    before = wait_until(
        lambda: len(worker_pids(parent)) == 2 and worker_pids(parent), 30, "2 workers"
    )
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert victim not in serving_pids(srv.url, 10)  # answered (200) by the survivor meanwhile

    def replaced() -> set[int] | None:
        now = worker_pids(parent)
        return now if len(now) == 2 and victim not in now else None

    after = wait_until(replaced, 30, "the killed worker to be replaced")
    assert (after & before) == before - {victim}
    # the server keeps answering, and the new worker serves too once it is up
    new = (after - before).pop()
    wait_until(lambda: new in serving_pids(srv.url, 10), 60, f"worker {new} to serve")
    assert srv.proc.poll() is None
    assert srv.stop(signal.SIGTERM) == 0


def test_the_fixture_fails_fast_with_the_output_when_the_server_dies(tmp_path: Any) -> None:
    from conftest import start_cli_server

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)exited \(1\).*does not exist") as exc:
        start_cli_server(["--model-dir", str(tmp_path / "missing")], cwd=tmp_path)
    assert time.monotonic() - started < 30
    assert "error:" in str(exc.value)


def test_the_fixture_fails_fast_when_the_server_hangs(tmp_path: Any, echo_model: Any) -> None:
    from conftest import start_cli_server

    model_dir, pkg = echo_model(load_seconds=120)  # loads far longer than the timeout
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="not listening after 3 s"):
        start_cli_server(
            ["--model-dir", str(model_dir), "--package", str(pkg), *ECHO], cwd=tmp_path, timeout=3
        )
    assert time.monotonic() - started < 15
