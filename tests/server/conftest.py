"""Fixtures for outside-in server tests: in-process servers in a thread, CLI subprocesses.

Every server a fixture starts is stopped in its teardown, so none outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from echo_predictor import EchoPredictor  # noqa: E402

from predictor_runtime.loader import LoadedModel  # noqa: E402
from predictor_runtime.server.app import App  # noqa: E402
from predictor_runtime.server.registry import BatchSettings, Registry  # noqa: E402
from predictor_runtime.server.runner import ServerOptions, bind_socket  # noqa: E402


@dataclass
class LiveServer:
    """A server running in a background thread of the test process."""

    url: str
    registry: Registry
    app: App
    batches: list[tuple[int, int]] = field(default_factory=list)
    server: Any = None
    thread: threading.Thread | None = None

    def predictor(self, model: str = "echo", version: str = "v1") -> EchoPredictor:
        v = self.registry.version(model, version)
        assert v.dispatcher is not None
        return v.dispatcher.model.predictor

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
            assert not self.thread.is_alive(), "server thread did not stop"


def start_live_server(
    *,
    predictor: Any = None,
    max_batch_size: int = 16,
    max_batch_delay_ms: float = 0.0,
    max_request_bytes: int = 1_572_864,
    batching: bool = True,
    metrics: bool = True,
    state_dir: Path | None = None,
) -> LiveServer:
    """Registry with model ``echo`` version ``v1`` (READY) and a running uvicorn server.

    With ``state_dir``, the resource routes persist there (and request logging works).
    """
    import uvicorn

    from predictor_runtime.server.metrics import Metrics
    from predictor_runtime.server.runner import _uvicorn_config
    from predictor_runtime.server.state import ManagedState

    batches: list[tuple[int, int]] = []
    met = Metrics() if metrics else None

    def on_batch(model: str, version: str) -> Any:
        inner = met.batch_hook(model, version) if met is not None else None

        def hook(rows: int, requests: int, seconds: float) -> None:
            batches.append((rows, requests))
            if inner is not None:
                inner(rows, requests, seconds)

        return hook

    settings = BatchSettings(max_batch_size=max_batch_size, max_batch_delay_ms=max_batch_delay_ms)
    registry = Registry(settings, on_batch=on_batch)
    pred = predictor if predictor is not None else EchoPredictor(delay=0.002)
    if not batching:
        pred.batching = False
    version = registry.add_version("echo", "v1", deployment_uri="/nonexistent/echo")
    registry.attach(version, LoadedModel.wrap(pred, "custom", "/nonexistent/echo"))
    state = ManagedState(registry, state_dir=state_dir, metrics=met) if state_dir else None
    app = App(registry, metrics=met, max_request_bytes=max_request_bytes, state=state)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, ServerOptions(graceful_timeout=5)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process server did not start")
        time.sleep(0.01)
    live = LiveServer(f"http://127.0.0.1:{port}", registry, app, batches, server, thread)
    return live


@pytest.fixture
def live() -> Iterator[LiveServer]:
    """An in-process server for model ``echo`` (max batch size 16, 2 ms per model call)."""
    srv = start_live_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def live_factory() -> Iterator[Any]:
    """Start in-process servers with custom settings; all are stopped at teardown."""
    started: list[LiveServer] = []

    def make(**kwargs: Any) -> LiveServer:
        srv = start_live_server(**kwargs)
        started.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


@dataclass
class CliServer:
    """``python -m predictor_runtime serve`` running as a subprocess.

    Its stdout and stderr are drained by threads into :attr:`lines` (so a chatty server
    never blocks on a full pipe); :meth:`output` shows them.
    """

    proc: subprocess.Popen[str]
    url: str
    banner: list[str]
    lines: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def close(self) -> None:
        """Kill the server and its workers (its own process group) if any still run; then
        join the output readers and close the pipes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this fixture started
        self.proc.wait(5)
        for reader in self.readers:
            reader.join(10)
        if not any(reader.is_alive() for reader in self.readers):
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr, interleaved)."""
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def _drain(stream: Any, lines: list[str], prefix: str, wake: threading.Event) -> None:
    for line in stream:
        lines.append(prefix + line.rstrip("\n"))
        wake.set()
    wake.set()


def start_cli_server(
    args: list[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> CliServer:
    """Start ``serve --port 0 ARGS`` and wait for its "Listening on" line.

    Fails as soon as the server exits, or after ``timeout`` seconds without that line
    (a hang), with everything the server printed; never waits for pytest's own timeout.
    """
    cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0", *args]
    full_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        start_new_session=True,  # its own process group: teardown kills workers too
    )
    lines: list[str] = []
    wake = threading.Event()
    readers = [
        threading.Thread(target=_drain, args=(stream, lines, prefix, wake), daemon=True)
        for stream, prefix in ((proc.stdout, ""), (proc.stderr, "[stderr] "))
    ]
    for reader in readers:
        reader.start()
    srv = CliServer(proc, "", [], lines, readers)
    deadline = time.monotonic() + timeout
    while True:
        listening = [line for line in lines if line.startswith("Listening on ")]
        if listening:
            srv.url = listening[0].split()[2]
            srv.banner = [line for line in lines if not line.startswith("[stderr] ")]
            return srv
        if proc.poll() is not None:
            srv.close()  # joins the readers: the output is complete
            raise RuntimeError(
                f"server exited ({proc.returncode}) before listening:\n{srv.output()}"
            )
        if time.monotonic() > deadline:
            srv.close()
            raise RuntimeError(
                f"server not listening after {timeout} s; its output:\n{srv.output()}"
            )
        wake.wait(0.1)
        wake.clear()


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Any]:
    """Start CLI servers in subprocesses; any still running at teardown is killed."""
    started: list[CliServer] = []

    def make(args: list[str], **kwargs: Any) -> CliServer:
        srv = start_cli_server(args, cwd=tmp_path, **kwargs)
        started.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in started:
            srv.close()


@pytest.fixture
def echo_model(tmp_path: Path) -> Any:
    """Write the echo predictor package and a model dir; returns a function of config."""

    def make(**config: Any) -> tuple[Path, Path]:
        import json

        pkg = tmp_path / "pkg"
        pkg.mkdir(exist_ok=True)
        shutil.copy(HERE / "echo_predictor.py", pkg / "echo_predictor.py")
        model_dir = tmp_path / "model"
        model_dir.mkdir(exist_ok=True)
        (model_dir / "config.json").write_text(json.dumps(config))
        return model_dir, pkg

    return make
