"""Cost of request logging (``requestLoggingConfig.samplingPercentage`` 1.0) on throughput.

One server, one run: ``python -m predictor_runtime serve`` pinned to core 0 serving an
XGBoost model (the cheapest model per request of ``load.py``, so the logging overhead is
the largest share), driven by ``wrk`` pinned to core 1 with one-instance requests
(16 connections). Rounds alternate logging off / on (switched with a PATCH of the
version's ``requestLoggingConfig``, which applies to the next request) so that drift of
the VM affects both sides alike; the table reports the median of the rounds.

Usage: ``python benchmarks/bench_request_log.py [--duration 6] [--rounds 3]``.
Needs ``wrk``, ``taskset``, 2 cores, xgboost (or the fallback predictor of ``load.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # benchmarks/load.py: models, server and wrk helpers

TABLE = "bench.logs.predictions"
VERSION = "/v1/projects/bench/models/m/versions/v1"


def patch_logging(url: str, rate: float) -> None:
    body = {"requestLoggingConfig": {"samplingPercentage": rate, "bigqueryTableName": TABLE}}
    req = urllib.request.Request(
        url + VERSION + "?updateMask=requestLoggingConfig",
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def dropped(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("predictor_request_log_dropped_total{")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-request-log-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        pkg = root / "pkg"
        pkg.mkdir()
        (pkg / "fallback.py").write_text(load.FALLBACK_PREDICTOR)
        model_dir = load.build_models(root / "models")["XGBoost"]
        flags = load.model_flags("XGBoost", model_dir, pkg, load.plugin_frameworks())
        body_file = root / "body.json"
        body_file.write_bytes(load.make_body(1, seed=1))
        script = root / "post.lua"
        script.write_text(load.WRK_SCRIPT)
        proc, url, _ = load.start_server(model_dir, flags, 1, root)
        predict = url + VERSION + ":predict"
        results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        try:
            patch_logging(url, 0.0)
            load.run_wrk(predict, body_file, script, args.connections, 2)  # warm-up
            for _ in range(args.rounds):
                for setting, rate in (("off", 0.0), ("on", 1.0)):
                    patch_logging(url, rate)
                    res = load.run_wrk(predict, body_file, script, args.connections, args.duration)
                    results[setting].append(res)
            patch_logging(url, 0.0)
            lost = dropped(url)
        finally:
            load.stop_server(proc)  # SIGTERM: the writer flushes its queue
        with sqlite3.connect(root / "state" / "request_logs.sqlite3") as db:
            (logged,) = db.execute(f'SELECT count(*) FROM "{TABLE}"').fetchone()

    served_on = sum(r["requests"] for r in results["on"])
    rows = []
    for setting in ("off", "on"):
        rs = results[setting]
        rows.append(
            {
                "setting": setting,
                "req_s": statistics.median(r["requests_per_s"] for r in rs),
                "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1000,
                "errors": sum(r["errors"] for r in rs),
                "rounds": [round(r["requests_per_s"]) for r in rs],
            }
        )
    ratio = rows[1]["req_s"] / rows[0]["req_s"]
    print(f"Python {platform.python_version()}, {args.rounds} rounds x {args.duration:g} s, "
          f"wrk -c{args.connections}, XGBoost, 1 instance per request\n")  # fmt: skip
    print("| request logging | req/s (median) | rounds req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        label = "off" if r["setting"] == "off" else "on, samplingPercentage 1.0"
        rounds = ", ".join(f"{x:,}" for x in r["rounds"])
        print(f"| {label} | {r['req_s']:,.0f} | {rounds} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['errors']} |")  # fmt: skip
    print(f"\nthroughput with logging / without: {ratio:.3f} (cost {100 * (1 - ratio):.1f}%)")
    print(f"rows logged: {logged:,} of {served_on:,} requests served with logging on; "
          f"dropped (queue full): {lost:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
