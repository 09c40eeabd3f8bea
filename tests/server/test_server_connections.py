"""Connections and processes: silent and slow clients closed, the concurrency bound,
workers that die with their supervisor, and a drain that refuses new connections cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from predictor_runtime.server import connections
from predictor_runtime.server.runner import ServerOptions

FAST = ServerOptions(graceful_timeout=5, timeout_headers=0.5, timeout_body=0.5)


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``; and what it sent first."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got


def test_silent_connection_is_closed(live_factory: Any) -> None:
    srv = live_factory(server_options=FAST)
    with socket.create_connection(address(srv.url)) as s:
        closed, sent = closed_within(s, 10)
    assert closed and sent == b""


def test_slowloris_headers_get_408_and_close(live_factory: Any) -> None:
    srv = live_factory(server_options=FAST)
    socks = [socket.create_connection(address(srv.url)) for _ in range(10)]
    try:
        start = time.monotonic()
        for s in socks:
            s.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: localhost\r\n")
        for s in socks:  # one more header line each, well within the timeout
            s.sendall(b"X-Slow: 1\r\n")
        results = [closed_within(s, 10) for s in socks]
        assert time.monotonic() - start < 8
    finally:
        for s in socks:
            s.close()
    for closed, sent in results:
        assert closed and sent.startswith(b"HTTP/1.1 408")
        assert b'"status":"DEADLINE_EXCEEDED"' in sent or b"408" in sent
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_slow_body_is_closed_and_handler_not_called(live_factory: Any) -> None:
    srv = live_factory(server_options=FAST)
    with socket.create_connection(address(srv.url)) as s:
        s.sendall(
            b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: localhost\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inst'
        )
        closed, _ = closed_within(s, 10)
    assert closed
    assert srv.predictor().calls == []


def test_slow_model_is_not_a_slow_client(live_factory: Any) -> None:
    from echo_predictor import EchoPredictor

    srv = live_factory(server_options=FAST, predictor=EchoPredictor(slow_seconds=1.5))
    r = httpx.post(srv.url + "/v1/models/echo:predict", json={"instances": ["slow"]}, timeout=30)
    assert r.status_code == 200


def test_keep_alive_connection_serves_requests_after_pauses(live_factory: Any) -> None:
    srv = live_factory(server_options=FAST)
    with httpx.Client(base_url=srv.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.8)  # longer than the header timeout: idle is keep-alive's business
        assert client.get("/healthz").status_code == 200


def test_idle_keep_alive_connection_is_closed(live_factory: Any) -> None:
    opts = ServerOptions(
        graceful_timeout=5, timeout_headers=5, timeout_body=5, timeout_keep_alive=0.5
    )
    srv = live_factory(server_options=opts)
    with socket.create_connection(address(srv.url)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        start = time.monotonic()
        closed, sent = closed_within(s, 10)
        waited = time.monotonic() - start
    assert closed and sent.startswith(b"HTTP/1.1 200")
    assert 0.4 < waited < 5  # about the keep-alive timeout, at most 1.5 times it


def test_pipelined_requests_are_all_answered(live_factory: Any) -> None:
    srv = live_factory(server_options=FAST)
    one = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    last = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with socket.create_connection(address(srv.url)) as s:
        s.sendall(one * 3 + last)  # four requests in one packet
        closed, sent = closed_within(s, 10)
    assert closed
    assert sent.count(b"HTTP/1.1 200") == 4


def test_concurrency_bound_answers_503_json(live_factory: Any) -> None:
    from echo_predictor import EchoPredictor

    opts = ServerOptions(graceful_timeout=5, limit_concurrency=2)
    srv = live_factory(server_options=opts, predictor=EchoPredictor(slow_seconds=2))
    results: list[int] = []

    def slow() -> None:
        r = httpx.post(
            srv.url + "/v1/models/echo:predict", json={"instances": ["slow"]}, timeout=30
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(srv.predictor().calls) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    r = httpx.get(srv.url + "/v1/projects/p/models", timeout=10)
    for t in threads:
        t.join(30)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["status"] == "UNAVAILABLE"
    assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
    assert sorted(results) == [200, 200]
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_default_concurrency_bound_fits_the_open_files_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = connections.default_limit_concurrency()
    assert 16 <= limit <= connections.MAX_DEFAULT_CONCURRENCY
    if soft != resource.RLIM_INFINITY:
        assert limit <= max(16, soft - connections.RESERVED_FDS)


def test_cli_defaults_match_the_server_defaults() -> None:
    from predictor_runtime import cli

    assert cli.DEFAULT_TIMEOUT_KEEP_ALIVE == connections.DEFAULT_TIMEOUT_KEEP_ALIVE
    assert cli.DEFAULT_TIMEOUT_HEADERS == connections.DEFAULT_TIMEOUT_HEADERS
    assert cli.DEFAULT_TIMEOUT_BODY == connections.DEFAULT_TIMEOUT_BODY


# -- processes (CLI servers in subprocesses) -------------------------------------------


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie has exited; only its reaping is left


def echo_args(echo_model: Any, **config: Any) -> list[str]:
    model_dir, pkg = echo_model(**config)
    return [
        "--model-dir",
        str(model_dir),
        "--prediction-class",
        "echo_predictor.EchoPredictor",
        "--package",
        str(pkg),
    ]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_exit_when_the_supervisor_is_killed(cli_server: Any, echo_model: Any) -> None:
    srv = cli_server([*echo_args(echo_model), "--workers", "2"])
    workers = children_of(srv.proc.pid)
    assert len(workers) == 2
    try:
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 20
        while not all(gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(w) for w in workers), "workers outlived their supervisor"
        with pytest.raises(OSError):
            socket.create_connection(address(srv.url), timeout=2).close()
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)


@pytest.mark.parametrize("workers", [1, 2])
def test_drain_refuses_new_connections_cleanly(
    cli_server: Any, echo_model: Any, workers: int
) -> None:
    srv = cli_server([*echo_args(echo_model, slow_seconds=3), "--workers", str(workers)])
    url = srv.url + "/v1/models/default:predict"
    assert httpx.post(url, json={"instances": [1]}).status_code == 200
    answer: list[tuple[httpx.Response, float]] = []

    def call() -> None:
        r = httpx.post(url, json={"instances": ["slow"]}, timeout=30)
        answer.append((r, time.monotonic()))

    slow = threading.Thread(target=call)
    slow.start()
    time.sleep(1.0)  # let the slow request (3 s in the model) reach the model
    srv.proc.send_signal(signal.SIGTERM)
    refused_at = None
    deadline = time.monotonic() + 10
    while refused_at is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(address(srv.url), timeout=2):
                pass
        except ConnectionRefusedError:
            refused_at = time.monotonic()
        time.sleep(0.02)
    slow.join(30)
    assert refused_at is not None, "new connections were never refused during the drain"
    assert answer and answer[0][0].status_code == 200  # the request in flight finished
    assert refused_at < answer[0][1]  # refused while that request was still running
    assert srv.proc.wait(30) == 0
    for reader in srv.readers:  # the output is complete once the pipes are drained
        reader.join(10)
    err = srv.output()
    assert "SIGTERM: shutting down" in err and "shutdown complete" in err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--timeout-headers", "0"), ("--timeout-body", "-1"), ("--limit-concurrency", "0")],
)
def test_bad_connection_flags_are_one_line_errors(flag: str, value: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0", flag, value],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and out.stderr.startswith(f"error: {flag} must be")
