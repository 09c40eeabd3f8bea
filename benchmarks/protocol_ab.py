"""In-process A/B of the whole serving stack below the kernel: uvicorn's protocol, the
server's connection limits, the app, the pipeline, the batcher and a real model.

Closed-loop clients (16 by default, like ``load.py``'s W1) each own an in-memory
transport: the moment a response is complete, the connection's next request is fed to
the protocol's ``data_received``, as a kernel socket would. No wrk, no socket I/O: what it
leaves out (syscalls, the kernel's TCP stack) costs both trees the same. It prints one
JSON line: requests per second of wall time and per second of this process's CPU time,
CPU microseconds per request, mean rows and seconds per model call, GC time.

``--inline`` runs model calls in the event loop's thread (no hand-off to the model
thread), which leaves the stack's own cost. Even so, back-to-back runs of one tree differ
by up to 20% on this VM; run the two trees *at the same time* on one core, with the same
``--start-at``, and compare requests per CPU second (rounds agree within about 2%)::

    at=$(( $(date +%s) + 12 ))
    for tree in /work/wt/before /work/main; do
        PYTHONPATH=$tree:$tree/plugins/sklearn:$tree/plugins/xgboost taskset -c 0 \
            python benchmarks/protocol_ab.py --inline --seconds 4 --start-at $at &
    done; wait

``--model-dir`` serves any model folder ``serve`` accepts (default: a tiny custom predictor
summing each row); ``--profile FILE`` writes a cProfile of the measured phase.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 30
#: (rows, seconds) of every model call
CALLS: list[tuple[int, float]] = []


class Transport(asyncio.Transport):
    """A connection's in-memory transport: counts response bytes, feeds the next request."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.client.received(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.client.closed()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.client.protocol = protocol

    def get_protocol(self) -> Any:
        return self.client.protocol


class Client:
    """One keep-alive connection sending ``request`` again as soon as it is answered."""

    def __init__(self, bench: Bench, request: bytes) -> None:
        self.bench = bench
        self.request = request
        self.buf = b""
        self.expect = -1
        self.transport = Transport(self)
        self.protocol: Any = bench.make_protocol()
        self.protocol.connection_made(self.transport)

    def send(self) -> None:
        self.protocol.data_received(self.request)

    def received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.expect < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[: end + 2].lower()
                if not head.startswith(b"http/1.1 200"):
                    raise SystemExit(f"unexpected answer: {self.buf[:300]!r}")
                start = head.index(b"content-length:") + len(b"content-length:")
                self.expect = end + 4 + int(head[start : head.index(b"\r\n", start)])
            if len(self.buf) < self.expect:
                return
            self.buf = self.buf[self.expect :]
            self.expect = -1
            self.bench.completed()
            if self.bench.running:
                # the next request arrives in a later loop iteration, like socket data
                self.bench.loop.call_soon(self.send)

    def closed(self) -> None:
        if self.bench.running:
            raise SystemExit(f"the server closed a connection; last bytes: {self.buf[-300:]!r}")


class Bench:
    """The server stack of the tree on ``sys.path`` and the clients driving it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: Any) -> None:
        from uvicorn.server import ServerState

        self.loop = loop
        self.config = config
        self.state = ServerState()
        self.done = 0
        self.running = True

    def make_protocol(self) -> Any:
        return self.config.http_protocol_class(
            config=self.config, server_state=self.state, app_state={}, _loop=self.loop
        )

    def completed(self) -> None:
        self.done += 1


class InlineExecutor(concurrent.futures.Executor):
    """Runs each model call at once in the event loop's thread (``--inline``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting request
            future.set_exception(exc)
        return future


def build_app(model_dir: str | None, state_dir: str) -> Any:
    """The app as ``serve`` builds it (registry, metrics, state, options where they exist)."""
    from predictor_runtime.server import app as app_module
    from predictor_runtime.server.metrics import Metrics
    from predictor_runtime.server.registry import BatchSettings, Registry
    from predictor_runtime.server.state import ManagedState

    prediction_class = packages = None
    if model_dir is None:
        model_dir = tempfile.mkdtemp(prefix="protocol-ab-")
        Path(model_dir, "sumpredictor.py").write_text(
            "import numpy as np\n\n"
            "class Sum:\n"
            "    def __init__(self, d):\n        pass\n\n"
            "    def predict(self, instances, **kw):\n"
            "        return np.asarray(instances, dtype=float).sum(axis=1)\n\n"
            "    @classmethod\n"
            "    def from_path(cls, d):\n        return cls(d)\n"
        )
        prediction_class, packages = "sumpredictor.Sum", [model_dir]
    metrics = Metrics()

    def on_batch(model: str, version: str) -> Any:
        hook = metrics.batch_hook(model, version)

        def observe(rows: int, requests: int, seconds: float) -> None:
            CALLS.append((rows, seconds))
            hook(rows, requests, seconds)

        return observe

    registry = Registry(BatchSettings(), on_batch=on_batch)
    version = registry.add_version(
        "m",
        "v1",
        deployment_uri=str(Path(model_dir).resolve()),
        prediction_class=prediction_class,
        package_uris=packages or [],
    )
    registry.load_version(version, state_dir=state_dir)
    state = ManagedState(registry, state_dir=state_dir, metrics=metrics)
    state.prepare()
    kwargs: dict[str, Any] = {"metrics": metrics, "state": state}
    try:
        from predictor_runtime.server.context import ServerOptionsView
    except ImportError:  # a tree before the route table
        pass
    else:
        kwargs["options"] = ServerOptionsView(state_dir=state_dir, host="127.0.0.1")
    return app_module.App(registry, **kwargs)


async def run(args: argparse.Namespace, state_dir: str) -> dict[str, Any]:
    from predictor_runtime import batching
    from predictor_runtime.server import runner

    if args.inline:
        batching.ThreadPoolExecutor = InlineExecutor  # type: ignore[misc]
    loop = asyncio.get_running_loop()
    app = build_app(args.model_dir, state_dir)
    config = runner._uvicorn_config(app, runner.ServerOptions())
    config.load()
    bench = Bench(loop, config)

    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def life_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.ensure_future(
        config.loaded_app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, life_send)
    )
    await started.wait()

    rng = np.random.default_rng(0)
    rows = rng.random((args.rows, N_FEATURES)).round(4).tolist()
    body = json.dumps({"instances": rows}).encode()
    request = (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"User-Agent: protocol-ab\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    clients = [Client(bench, request) for _ in range(args.connections)]

    gc_time = [0.0, 0.0, 0.0]
    gc_count = [0, 0, 0]
    gc_started = [0.0]

    def gc_hook(what: str, info: dict[str, int]) -> None:
        if what == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_time[info["generation"]] += time.perf_counter() - gc_started[0]
            gc_count[info["generation"]] += 1

    gc.callbacks.append(gc_hook)

    async def phase(seconds: float) -> tuple[int, float, float]:
        bench.done = 0
        gc_time[:] = [0.0, 0.0, 0.0]
        gc_count[:] = [0, 0, 0]
        CALLS.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        return bench.done, time.perf_counter() - wall, time.process_time() - cpu

    for c in clients:
        c.send()
    await phase(args.warmup)
    if args.start_at:  # line up the measured phase with a run of another tree
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    done, wall, cpu = await phase(args.seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    bench.running = False
    await asyncio.sleep(0.2)
    await startup.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, 10)
    return {
        "requests_per_s": round(done / wall, 1),
        "requests_per_cpu_s": round(done / cpu, 1),
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "requests": done,
        "gc_us_per_request": [round(t / done * 1e6, 2) for t in gc_time],
        "gc_collections": gc_count,
        "modules": len(sys.modules),
        "rss_mb": round(int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20, 1),
        "rows_per_call": round(sum(r for r, _ in CALLS) / max(1, len(CALLS)), 2),
        "call_us": round(sum(s for _, s in CALLS) / max(1, len(CALLS)) * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", help="a model folder (default: a tiny custom predictor)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rows", type=int, default=1, help="instances per request")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument(
        "--inline",
        action="store_true",
        help="run model calls in the event loop's thread: no thread hand-off, so the "
        "number is the stack's own cost, deterministic enough to compare two trees",
    )
    ap.add_argument(
        "--start-at",
        type=float,
        help="start measuring at this Unix time (after the warm-up): two trees run at "
        "the same time on one core then share whatever the machine does, and their "
        "requests per CPU second compare fairly",
    )
    ap.add_argument("--profile", help="write a cProfile of the measured phase here")
    ap.add_argument("--warmup", type=float, default=1.0)
    args = ap.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="protocol-ab-state-") as state_dir:
        os.environ.setdefault("PREDICTOR_RUNTIME_STATE_DIR", state_dir)
        result = uvloop.run(run(args, state_dir))
    result["tree"] = str(Path(sys.modules["predictor_runtime"].__file__ or "").parent.parent)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
