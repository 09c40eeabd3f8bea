"""Launch-style tasks: async throughput through the durable queue, and streaming latency.

Both comparisons are measured in the same run, against a baseline on the same server:

1. **Async vs online.** ``serve`` (the bundled iris example: a scikit-learn model behind a
   custom prediction routine) on core 0. The same client (``--concurrency``
   connections, on core 1; a minimal asyncio HTTP/1.1 client so that the server, not
   the client, is measured) sends ``--tasks`` one-row requests:
   - online: ``POST /v1/models/iris:predict``, each answered with its prediction;
   - async: ``POST /v1/async-tasks`` for every row, then ``GET /v1/async-tasks/{id}``
     until each is SUCCESS (what a Launch client does).
   Two ratios over online rows/s: the queue's (rows over the time from the first submit
   to the last task's ``finished_at`` in the server's database: submit, store, claim,
   predict, record) and the polling client's (until it has seen every task SUCCESS, one
   extra GET per row). Merged batch sizes (rows and requests
   per model call) come from the server's ``/metrics`` before and after each phase.
2. **Time to first streamed event.** The streaming example (``TypewriterPredictor``,
   20 ms per word, 10 words): time from ``POST /v1/streaming-tasks`` to the first SSE
   event, against a direct call of the same generator in this process (time to its first
   chunk); the whole stream's time shows the first event is not held back.

Usage: ``python benchmarks/bench_launch.py [--tasks 10000] [--concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STREAMING = ROOT / "predictor_runtime" / "examples" / "streaming"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cmd = [*taskset, sys.executable, "-m", "predictor_runtime", "serve", "--port", str(port),
           "--state-dir", str(cwd / "state"), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def batch_totals(url: str) -> dict[str, float]:
    """Sums and counts of the batch histograms (all versions)."""
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    out = {"rows_sum": 0.0, "calls": 0.0, "requests_sum": 0.0}
    for line in text.splitlines():
        if line.startswith("predictor_batch_size_rows_sum{"):
            out["rows_sum"] += float(line.split()[-1])
        elif line.startswith("predictor_batch_size_rows_count{"):
            out["calls"] += float(line.split()[-1])
        elif line.startswith("predictor_batch_requests_sum{"):
            out["requests_sum"] += float(line.split()[-1])
    return out


def merged(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    calls = after["calls"] - before["calls"]
    return {
        "model_calls": calls,
        "rows_per_call": (after["rows_sum"] - before["rows_sum"]) / max(calls, 1),
        "requests_per_call": (after["requests_sum"] - before["requests_sum"]) / max(calls, 1),
    }


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection (cheap, so the server is measured)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def run_online(url: str, rows: list[list[float]], conc: int) -> float:
    conns = [await Conn.open(url) for _ in range(conc)]
    it = iter(rows)

    async def worker(c: Conn) -> None:
        for row in it:
            status, body = await c.request(
                "POST", "/v1/models/iris:predict", json.dumps({"instances": [row]}).encode()
            )
            assert status == 200, body

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return elapsed


async def run_async(url: str, rows: list[list[float]], conc: int) -> dict[str, float]:
    """Submit every row as a task, then GET each until SUCCESS; times in seconds.

    ``submitted``: until the last task id was answered; ``polled``: until every task was
    seen SUCCESS through a GET; ``wall_start``: ``time.time()`` at the first submit (the
    server's ``finished_at`` of the last task, read from its database, gives the queue's
    own completion time).
    """
    conns = [await Conn.open(url) for _ in range(conc)]
    ids: list[str] = []
    it = iter(rows)

    async def submitter(c: Conn) -> None:
        for row in it:
            body = json.dumps({"args": {"instances": [row]}}).encode()
            status, out = await c.request("POST", "/v1/async-tasks?model_endpoint_id=iris", body)
            assert status == 200, out
            ids.append(json.loads(out)["task_id"])

    wall_start = time.time()
    started = time.perf_counter()
    await asyncio.gather(*(submitter(c) for c in conns))
    submitted = time.perf_counter() - started
    pending = iter(ids)

    async def poller(c: Conn) -> None:
        for task_id in pending:
            while True:
                _, out = await c.request("GET", f"/v1/async-tasks/{task_id}")
                state = json.loads(out)["status"]
                if state == "SUCCESS":
                    break
                assert state in ("PENDING", "STARTED"), out
                await asyncio.sleep(0.01)

    await asyncio.gather(*(poller(c) for c in conns))
    polled = time.perf_counter() - started
    for c in conns:
        c.close()
    return {"submitted": submitted, "polled": polled, "wall_start": wall_start}


def last_finish(state_dir: Path, since: float) -> float:
    """Seconds from ``since`` to the last ``finished_at`` in the server's task database."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(state_dir / "tasks.sqlite3")) as db:
        (last,) = db.execute("SELECT MAX(finished_at) FROM tasks").fetchone()
    return float(last) - since


async def first_event(url: str, n: int) -> tuple[list[float], list[float]]:
    import httpx

    text = " ".join(f"w{i}" for i in range(10))
    firsts, totals = [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            async with client.stream(
                "POST",
                "/v1/streaming-tasks?model_endpoint_id=typewriter",
                json={"args": {"instances": [text]}},
            ) as r:
                first = None
                async for line in r.aiter_lines():
                    if line.startswith("data:") and first is None:
                        first = time.perf_counter() - started
            firsts.append(first or 0.0)
            totals.append(time.perf_counter() - started)
    return firsts, totals


def direct_first_chunk(n: int) -> list[float]:
    sys.path.insert(0, str(STREAMING))
    from predictor import TypewriterPredictor  # type: ignore[import-not-found]

    pred = TypewriterPredictor(delay=0.02)  # as served below
    text = " ".join(f"w{i}" for i in range(10))
    out = []
    for _ in range(n):
        started = time.perf_counter()
        gen = pred.predict_stream([text])
        next(gen)
        out.append(time.perf_counter() - started)
        gen.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    import random

    rnd = random.Random(0)
    rows = [[round(rnd.uniform(4, 8), 1), round(rnd.uniform(2, 4), 1),
             round(rnd.uniform(1, 7), 1), round(rnd.uniform(0.1, 2.5), 1)]
            for _ in range(args.tasks)]  # fmt: skip
    results: dict[str, Any] = {"tasks": args.tasks, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        proc, url = start([], cwd)  # the bundled iris example
        try:
            asyncio.run(run_online(url, rows[:500], args.concurrency))  # warm-up
            asyncio.run(run_async(url, rows[:500], args.concurrency))
            b0 = batch_totals(url)
            online = asyncio.run(run_online(url, rows, args.concurrency))
            b1 = batch_totals(url)
            times = asyncio.run(run_async(url, rows, args.concurrency))
            b2 = batch_totals(url)
        finally:
            stop(proc)
        queue_done = last_finish(cwd / "state", times["wall_start"])
        results["online_rows_per_s"] = args.tasks / online
        results["async_submit_per_s"] = args.tasks / times["submitted"]
        results["async_rows_per_s"] = args.tasks / queue_done
        results["async_polled_rows_per_s"] = args.tasks / times["polled"]
        results["ratio_async_to_online"] = online / queue_done
        results["ratio_async_polled_to_online"] = online / times["polled"]
        results["online_batches"] = merged(b0, b1)
        results["async_batches"] = merged(b1, b2)

        stream_dir = cwd / "typewriter"
        stream_dir.mkdir()
        (stream_dir / "config.json").write_text(json.dumps({"delay": 0.02}))
        proc, url = start(
            ["--model-dir", str(stream_dir), "--model-name", "typewriter",
             "--prediction-class", "predictor.TypewriterPredictor", "--package", str(STREAMING)],
            cwd,
        )  # fmt: skip
        try:
            asyncio.run(first_event(url, 3))
            firsts, totals = asyncio.run(first_event(url, args.streams))
        finally:
            stop(proc)
        direct = direct_first_chunk(args.streams)
        results["stream_first_event_ms"] = statistics.median(firsts) * 1000
        results["stream_total_ms"] = statistics.median(totals) * 1000
        results["direct_first_chunk_ms"] = statistics.median(direct) * 1000
        results["first_event_overhead_ms"] = (
            results["stream_first_event_ms"] - results["direct_first_chunk_ms"]
        )
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
