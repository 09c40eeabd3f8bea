"""Async task throughput and management write latency on PostgreSQL against SQLite.

Everything is measured in the same run, SQLite being the baseline.

**Async tasks** (``--tasks``, 0 to skip): ``serve`` (the bundled iris example) on core 0,
the client of ``bench_launch.py`` on core 1 submitting one-row tasks over
``--concurrency`` connections, then polling each until SUCCESS. Throughput is rows over
the time from the first submit to the last ``finished_at`` recorded in the task table
(submit, store, claim, predict, record), and over the time until the client has seen every
task SUCCESS.

**Management writes**, two levels:

- **store**: one management write transaction as the routes run it (read the version, check
  its etag, write it back and write an operation), and the change check every request
  makes (``changed_since``), called directly;
- **http**: ``PATCH /v1/projects/p/models/bench?updateMask=description`` answered by a real
  ``serve`` process (one worker), sequential, from a client on the same machine.

PostgreSQL is a throwaway server started here (``predictor_runtime.testing_postgres``), once
with its defaults (``fsync``, a WAL flush per commit) and once with
``synchronous_commit=off`` (what SQLite's WAL with ``synchronous=NORMAL``, this project's
setting, promises: survives a process crash, may lose the last commits on power loss).

    python benchmarks/bench_state.py [--tasks 5000] [--concurrency 64] [--writes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from predictor_runtime.server.store import SQLiteStore
from predictor_runtime.server.store.postgres import PostgresStore
from predictor_runtime.testing_postgres import TempPostgres

ASYNC_OFF = "?options=-c%20synchronous_commit%3Doff"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_launch  # noqa: E402  (its server launcher and minimal HTTP client)


def last_finish(cwd: Path, url: str | None) -> float:
    """The newest ``finished_at`` in the server's task table (SQLite file or PostgreSQL)."""
    if url is None:
        import sqlite3

        with sqlite3.connect(cwd / "state" / "tasks.sqlite3") as db:
            return float(db.execute("SELECT max(finished_at) FROM tasks").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        return float(conn.execute("SELECT max(finished_at) FROM tasks").fetchone()[0])


def bench_tasks(url: str | None, n: int, conc: int, cwd: Path) -> dict[str, float]:
    """Async task throughput of one ``serve`` on one backend (rows/s)."""
    rnd = random.Random(0)
    rows = [[round(rnd.uniform(4, 8), 1), round(rnd.uniform(2, 4), 1),
             round(rnd.uniform(1, 7), 1), round(rnd.uniform(0.1, 2.5), 1)]
            for _ in range(n)]  # fmt: skip
    proc, base = bench_launch.start(["--state-url", url] if url else [], cwd)
    try:
        asyncio.run(bench_launch.run_async(base, rows[:300], conc))  # warm-up
        times = asyncio.run(bench_launch.run_async(base, rows, conc))
    finally:
        bench_launch.stop(proc)
    return {
        "queue": n / (last_finish(cwd, url) - times["wall_start"]),
        "polled": n / times["polled"],
        "submit": n / times["submitted"],
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(len(ordered) * 0.95) - 1] * 1e3


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(max(5, n // 20)):  # warm-up
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def store_write(store: Any) -> Callable[[], None]:
    store.put_model({"name": "bench", "defaultVersion": "v1"})
    store.put_version("bench", {"name": "v1", "etag": "0", "description": ""})
    counter = iter(range(10**9))

    def write() -> None:
        i = next(counter)
        with store.transaction() as tx:
            rec = store.get_version("bench", "v1", tx)
            assert rec["etag"] == str(i)
            rec.update(description=f"d{i}", etag=str(i + 1))
            store.put_version("bench", rec, tx)
            store.put_operation({"name": f"op{i}", "done": True, "metadata": {}}, tx)

    return write


def bench_store(name: str, store: Any, n: int) -> list[tuple[str, str, list[float]]]:
    token = store.changed_since(None)[1]
    rows = [(name, "write transaction", time_calls(store_write(store), n))]
    rows.append((name, "changed_since", time_calls(lambda: store.changed_since(token), n)))
    store.close()
    return rows


def bench_http(name: str, state_dir: Path, url: str | None, n: int) -> list[float]:
    cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0",
           "--state-dir", str(state_dir)]  # fmt: skip
    if url:
        cmd += ["--state-url", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Listening on "):
                base = line.split()[2]
                break
        else:
            raise RuntimeError(f"{name}: serve did not start")
        with httpx.Client(base_url=base, timeout=30) as client:
            client.post("/v1/projects/p/models", json={"name": "bench"}).raise_for_status()
            counter = iter(range(10**9))

            def patch() -> None:
                r = client.patch(
                    "/v1/projects/p/models/bench?updateMask=description",
                    json={"description": f"d{next(counter)}"},
                )
                r.raise_for_status()

            return time_calls(patch, n)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    n = args.writes
    results: list[tuple[str, str, list[float]]] = []
    with TempPostgres(durable=True) as pg, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backends = {
            "SQLite (WAL, synchronous=NORMAL)": None,
            "PostgreSQL (defaults: WAL flush per commit)": pg.new_database("bench_sync"),
            "PostgreSQL (synchronous_commit=off)": pg.new_database("bench_async") + ASYNC_OFF,
        }
        for i, (name, url) in enumerate(backends.items()):
            store = PostgresStore(url) if url else SQLiteStore(work / f"store{i}")
            results += bench_store(name, store, n)
        serve_dir = work / "serve"  # one state dir: the bundled example is trained once
        fresh = {
            name: url and pg.new_database(f"http_{i}") + ("" if "bench_sync" in url else ASYNC_OFF)
            for i, (name, url) in enumerate(backends.items())
        }
        for name, url in fresh.items():
            results.append((name, "HTTP PATCH model", bench_http(name, serve_dir, url, n)))
            if url is None:
                os.remove(serve_dir / "state.sqlite3")
        tasks: dict[str, dict[str, float]] = {}
        if args.tasks:
            if shutil.which("taskset"):
                os.sched_setaffinity(0, {1})  # the client; the server goes on core 0
            for i, name in enumerate(backends):
                url = backends[name] and pg.new_database(f"tasks_{i}")
                if url and "bench_async" in (backends[name] or ""):
                    url += ASYNC_OFF
                cwd = work / f"tasks{i}"
                cwd.mkdir()
                tasks[name] = bench_tasks(url, args.tasks, args.concurrency, cwd)
    if tasks:
        base = next(iter(tasks.values()))
        print(f"{args.tasks} one-row async tasks, {args.concurrency} connections\n")
        print("| backend | submitted/s | rows/s (queue) | rows/s (client saw SUCCESS) | "
              "ratio to SQLite (queue) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|")
        for name, r in tasks.items():
            print(
                f"| {name} | {r['submit']:,.0f} | {r['queue']:,.0f} | {r['polled']:,.0f} | "
                f"{r['queue'] / base['queue']:.2f}x |"
            )
        print()
    baseline = {kind: percentiles(s)[0] for name, kind, s in results if name.startswith("SQLite")}
    print(f"{n} sequential calls each; ratio = median / SQLite's median\n")
    print("| operation | backend | median | p95 | ratio to SQLite |")
    print("|---|---|---:|---:|---:|")
    for name, kind, samples in sorted(results, key=lambda r: r[1]):
        median, p95 = percentiles(samples)
        print(
            f"| {kind} | {name} | {median:.3f} ms | {p95:.3f} ms | {median / baseline[kind]:.2f}x |"
        )


if __name__ == "__main__":
    main()
