"""Process model of ``serve``: bind once, load once, fork workers, supervise, drain on signals.

- The parent binds the listening socket itself (so ``--port 0`` works and every worker
  shares one port), loads every model, runs a full collection and ``gc.freeze()`` (the
  frameworks leave ~10^5 long-lived objects whose repeated scanning by the collector
  otherwise dominates tail latency), then:
- with one worker, serves in-process;
- with N workers, ``fork()``s N children *before any thread exists* (model threads are
  created lazily, per process, on first request). Children share the model's memory
  copy-on-write and each run ``uvicorn.Server.serve(sockets=[sock])`` on the inherited
  socket; the kernel spreads connections among them. The parent forwards
  SIGTERM/SIGINT to the children, restarts a child that dies unexpectedly, and exits 0
  once all children have drained.
- On SIGTERM/SIGINT a worker stops accepting, lets in-flight requests finish (bounded by
  ``graceful_timeout``), and exits 0. The supervisor closes its own copy of the listening
  socket first, so that once the workers have closed theirs new connections are refused
  (ECONNREFUSED) instead of queueing in a backlog nobody accepts from and being reset.
  A line is logged when the shutdown starts and when it ends.
- Workers exit when the supervisor dies, even by ``kill -9``: on Linux the kernel sends
  them SIGTERM (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and as a back-stop, each worker
  checks once a second that its parent is still the supervisor.
- Connection timeouts and the concurrency bound: :mod:`.connections`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .app import DEFAULT_MAX_REQUEST_BYTES
from .connections import (
    DEFAULT_TIMEOUT_BODY,
    DEFAULT_TIMEOUT_HEADERS,
    DEFAULT_TIMEOUT_KEEP_ALIVE,
    ConnectionLimits,
    default_limit_concurrency,
    protocol_class,
)

DEFAULT_GRACEFUL_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


@dataclass
class ServerOptions:
    """Network and process settings of ``serve``."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    access_log: bool = False
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    backlog: int = 2048
    #: seconds an idle keep-alive connection is kept.
    timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE
    #: seconds to receive a request's headers (silent and slowloris connections).
    timeout_headers: float = DEFAULT_TIMEOUT_HEADERS
    #: seconds to receive a request's body once its headers are in.
    timeout_body: float = DEFAULT_TIMEOUT_BODY
    #: connections or requests in progress per worker beyond which requests get 503
    #: (None: :func:`~.connections.default_limit_concurrency`).
    limit_concurrency: int | None = None


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` contains ``:``), inheritable by children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def enable_multiprocess_metrics() -> str:
    """Point prometheus_client at a fresh temp dir (call before it is imported)."""
    path = tempfile.mkdtemp(prefix="predictor-runtime-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def freeze_heap(collect: bool = True) -> None:
    """Move every object to the permanent generation (``gc.freeze``), after one full
    collection unless ``collect`` is False.

    Before a fork the collection keeps garbage out of the pages the workers share; with
    one process it only costs start-up (97 ms once XGBoost is loaded, for 16 unreachable
    objects, which are then frozen with the rest and never freed).
    """
    if collect:
        gc.collect()
    gc.freeze()


def _uvicorn_config(app: Any, options: ServerOptions) -> Any:
    import uvicorn

    limits = ConnectionLimits(
        timeout_headers=options.timeout_headers,
        timeout_body=options.timeout_body,
        limit_concurrency=options.limit_concurrency or default_limit_concurrency(),
        timeout_keep_alive=options.timeout_keep_alive,
    )
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol_class(limits),
        ws="none",  # no WebSocket routes: an Upgrade request is answered as plain HTTP
        timeout_keep_alive=max(1, round(options.timeout_keep_alive)),
        lifespan="on",
        access_log=options.access_log,
        # X-Forwarded-For/-Proto only matter to the access log (nothing else reads the
        # client address or scheme); without it the middleware is one more layer per request
        proxy_headers=options.access_log,
        log_level="info" if options.access_log else "warning",
        timeout_graceful_shutdown=int(options.graceful_timeout),
        server_header=False,
        backlog=options.backlog,
    )


def log(message: str) -> None:
    """One line on stderr, prefixed like every message of ``serve``."""
    sys.stderr.write(f"predictor-runtime: {message}\n")
    sys.stderr.flush()


def run_worker(
    app: Any,
    sock: socket.socket,
    options: ServerOptions,
    on_ready: Callable[[], None] | None = None,
    *,
    parent: int | None = None,
    log_shutdown: bool = False,
) -> None:
    """Serve ``app`` on ``sock`` in this process until SIGTERM/SIGINT, then drain.

    :param parent: the supervisor's pid: stop when this process's parent changes.
    :param log_shutdown: log when the shutdown starts (the caller logs its end).
    """
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready()

        def handle_exit(self, sig: int, frame: Any) -> None:
            if log_shutdown and not self.should_exit:
                name = signal.Signals(sig).name
                busy = len(self.server_state.tasks)
                log(f"{name}: shutting down, draining {busy} request(s) in progress")
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if parent is not None and counter % 10 == 0 and os.getppid() != parent:
                if not self.should_exit:
                    log(f"worker {os.getpid()}: the supervisor died; shutting down")
                self.should_exit = True
            return await super().on_tick(counter)

    server = _Server(_uvicorn_config(app, options))
    # uvicorn re-raises the captured signal after a graceful shutdown; with these
    # handlers restored at that point, the re-raise is a no-op and we exit 0.
    if _in_main_thread():
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, lambda *_: None)
    server.run(sockets=[sock])


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def serve_forever(
    build_app: Callable[[], Any],
    sock: socket.socket,
    options: ServerOptions,
    announce: Callable[[], None],
) -> int:
    """Run the server on ``sock`` with ``options.workers`` processes; returns exit status.

    ``build_app`` is called once, in the parent, after the models are loaded (and before
    any fork); ``announce`` prints the "listening" line once workers accept requests.
    """
    app = build_app()
    freeze_heap(collect=options.workers > 1)
    if options.workers <= 1:
        run_worker(app, sock, options, on_ready=announce, log_shutdown=True)
        log("shutdown complete")
        return 0
    status = _supervise(app, sock, options, announce)
    log("shutdown complete" if status == 0 else f"shutdown complete (exit status {status})")
    return status


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux), then make sure it lives."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(0)


def _supervise(
    app: Any, sock: socket.socket, options: ServerOptions, announce: Callable[[], None]
) -> int:
    supervisor = os.getpid()
    read_fd, write_fd = os.pipe()
    fds = {"read": read_fd, "write": write_fd}  # -1 once closed in the parent
    children: dict[int, int] = {}  # pid -> worker index
    stopping: list[int] = []

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                die_with_parent(supervisor)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if fds["read"] >= 0:
                    os.close(fds["read"])
                wfd = fds["write"]

                def ready() -> None:
                    if wfd >= 0:
                        with contextlib.suppress(OSError):
                            os.write(wfd, b"r")

                run_worker(app, sock, options, on_ready=ready, parent=supervisor)
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: Any) -> None:
        if not stopping:
            name = signal.Signals(signum).name
            log(f"{name}: shutting down {len(children)} worker(s), draining requests in progress")
            with contextlib.suppress(OSError):
                sock.close()  # refused, not reset, once the workers close their copies
        stopping.append(signum)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for i in range(options.workers):
        spawn(i)
    os.close(write_fd)
    fds["write"] = -1
    # wait (bounded) until every worker runs its server, then announce
    deadline = time.monotonic() + 30
    got = 0
    os.set_blocking(read_fd, False)
    while got < options.workers and time.monotonic() < deadline and not stopping:
        try:
            data = os.read(read_fd, 64)
            got += len(data)
            if not data:
                break
        except BlockingIOError:
            time.sleep(0.005)
    os.close(read_fd)
    fds["read"] = -1
    if not stopping:
        announce()
    status = 0
    kill_at: float | None = None
    restarts: list[float] = []
    while children:
        if stopping and kill_at is None:
            kill_at = time.monotonic() + options.graceful_timeout + 5
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if kill_at is not None and time.monotonic() > kill_at:
                for child in list(children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                status = 1
            time.sleep(0.05)
            continue
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(raw)
        _mark_dead(pid)
        if stopping:
            if code != 0:
                status = 1
            continue
        # unexpected death: restart, but not in a tight loop
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        sys.stderr.write(f"predictor-runtime: worker {pid} exited with {code}; restarting\n")
        if len(restarts) > 5 * options.workers:
            sys.stderr.write("predictor-runtime: workers keep dying; stopping\n")
            forward(signal.SIGTERM, None)
            status = 1
            continue
        spawn(index)
    return status


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)
