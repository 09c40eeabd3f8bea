"""Management write latency on PostgreSQL against SQLite, measured in the same run.

Two levels, each on both backends:

- **store**: one management write transaction as the routes run it (read the version, check
  its etag, write it back and write an operation), and the change check every request
  makes (``changed_since``), called directly;
- **http**: ``PATCH /v1/projects/p/models/bench?updateMask=description`` answered by a real
  ``serve`` process (one worker), sequential, from a client on the same machine.

PostgreSQL is a throwaway server started here (``predictor_runtime.testing_postgres``), once
with its defaults (``fsync``, a WAL flush per commit) and once with
``synchronous_commit=off`` (what SQLite's WAL with ``synchronous=NORMAL``, this project's
setting, promises: survives a process crash, may lose the last commits on power loss).

    python benchmarks/bench_state.py [--writes 300]
"""

from __future__ import annotations

import argparse
import os
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
    n = parser.parse_args().writes
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
