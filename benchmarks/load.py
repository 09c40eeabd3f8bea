"""Load benchmark of ``python -m predictor_runtime serve`` (bounded: ~2 minutes by default).

What it does, all in one run so the numbers are comparable:

1. builds into a temp dir a scikit-learn ``RandomForestClassifier`` (100 trees,
   ``max_depth=8``, 30 features, synthetic data) saved as ``model.joblib``, and an XGBoost
   model (100 trees, depth 6, 30 features, ``binary:logistic``) saved as ``model.json``;
   both are served through the real framework plugins (auto-detected from the file
   names), or through a tiny custom predictor if those plugins are not installed;
2. measures the in-process floor for each payload: ``Dispatcher.predict_body`` (parse +
   array + model predict + serialize, no HTTP) in a loop, pinned to core 0;
3. starts the server pinned to core 0 (``taskset -c 0``), measures start-up-to-ready
   (process start until ``/readyz`` answers 200) and resident memory;
4. drives it with ``wrk`` pinned to core 1 with a Lua POST script whose ``done`` hook
   prints latency percentiles, for
   W1 (one instance per request, 16 connections) and W2 (1,000 instances per request,
   4 connections);
5. prints a Markdown table (and ``--json`` for machines).

Usage: ``python benchmarks/load.py [--duration 10] [--json out.json]``. Needs ``wrk``
(``apt-get install wrk``) and ``taskset``; assumes at least 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

N_FEATURES = 30
WRK_SCRIPT = r"""
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"p50_us\": %d, " ..
    "\"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

FALLBACK_PREDICTOR = """
import os


class SklearnFallback:
    def __init__(self, model):
        self.model = model

    def predict(self, instances, **kwargs):
        import numpy as np
        return self.model.predict_proba(np.asarray(instances, dtype=np.float64))

    @classmethod
    def from_path(cls, model_dir):
        import joblib
        return cls(joblib.load(os.path.join(model_dir, "model.joblib")))


class XGBoostFallback:
    def __init__(self, booster):
        self.booster = booster

    def predict(self, instances, **kwargs):
        import numpy as np
        return self.booster.inplace_predict(np.asarray(instances, dtype=np.float32))

    @classmethod
    def from_path(cls, model_dir):
        import xgboost
        booster = xgboost.Booster()
        booster.load_model(os.path.join(model_dir, "model.json"))
        return cls(booster)
"""


# -- models and payloads -------------------------------------------------------------


def build_models(root: Path) -> dict[str, Path]:
    """Train both models into ``root``; returns name -> model directory."""
    import joblib
    import numpy as np
    import xgboost
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(
        n_samples=5000, n_features=N_FEATURES, n_informative=12, random_state=0
    )
    rf_dir = root / "rf"
    rf_dir.mkdir()
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(x, y)
    joblib.dump(rf, rf_dir / "model.joblib")

    xgb_dir = root / "xgb"
    xgb_dir.mkdir()
    dtrain = xgboost.DMatrix(x.astype(np.float32), label=y)
    params = {"max_depth": 6, "objective": "binary:logistic", "nthread": 1}
    booster = xgboost.train(params, dtrain, num_boost_round=100)
    booster.save_model(str(xgb_dir / "model.json"))
    return {"RandomForest (sklearn)": rf_dir, "XGBoost": xgb_dir}


def wrk_row(res: dict[str, Any], workload: str, rows: int, conns: int) -> dict[str, Any]:
    """The common result fields of one timed wrk run (rates, percentiles in ms, errors)."""
    return {
        "workload": workload,
        "rows": rows,
        "connections": conns,
        "requests_per_s": res["requests_per_s"],
        "instances_per_s": res["requests_per_s"] * rows,
        "p50_ms": res["p50_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "errors": res["errors"],
    }


def make_body(rows: int, seed: int) -> bytes:
    """A predict body of ``rows`` instances of 30 random features."""
    import numpy as np

    data = np.random.default_rng(seed).normal(size=(rows, N_FEATURES)).round(5)
    return json.dumps({"instances": data.tolist()}).encode()


def plugin_frameworks() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "predictor_runtime", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {row["framework"] for row in json.loads(out)}


def model_flags(name: str, model_dir: Path, pkg: Path, frameworks: set[str]) -> list[str]:
    """``serve``/floor flags: the real plugin when installed, else the fallback class."""
    if name.startswith("RandomForest") and "sklearn" not in frameworks:
        return ["--prediction-class", "fallback.SklearnFallback", "--package", str(pkg)]
    if name.startswith("XGBoost") and "xgboost" not in frameworks:
        return ["--prediction-class", "fallback.XGBoostFallback", "--package", str(pkg)]
    return []


# -- in-process floor ----------------------------------------------------------------


def floor_main(argv: list[str]) -> None:
    """``load.py --floor MODEL_DIR BODY_FILE SECONDS [model flags]``: print req/s."""
    model_dir, body_file, seconds = argv[0], argv[1], float(argv[2])
    flags = argv[3:]
    prediction_class = package = None
    if flags:
        prediction_class, package = flags[1], flags[3]
    import gc

    from predictor_runtime.dispatcher import Dispatcher
    from predictor_runtime.loader import load_model

    model = load_model(
        model_dir, prediction_class=prediction_class, packages=[package] if package else []
    )
    dispatcher = Dispatcher(model)
    body = Path(body_file).read_bytes()
    gc.collect()
    gc.freeze()
    for _ in range(20):
        dispatcher.predict_body(body)
    n = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        dispatcher.predict_body(body)
        n += 1
        if n % 8 == 0 and time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests_per_s": n / elapsed}))


def measure_floor(model_dir: Path, body_file: Path, seconds: float, flags: list[str]) -> float:
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "--floor", str(model_dir),
           str(body_file), str(seconds), *flags]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["requests_per_s"])


# -- server and load -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (MiB)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def start_server(
    model_dir: Path, flags: list[str], workers: int, cwd: Path
) -> tuple[Any, str, float]:
    port = free_port()
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "predictor_runtime", "serve",
           "--model-dir", str(model_dir), "--model-name", "m", "--port", str(port),
           "--workers", str(workers), "--state-dir", str(cwd / "state"), *flags]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server died: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.perf_counter() - started > 60:
            proc.kill()
            raise RuntimeError("server did not become ready in 60 s")
        time.sleep(0.005)
    return proc, url, time.perf_counter() - started


def stop_server(proc: Any) -> int:
    proc.terminate()
    try:
        return int(proc.wait(40))
    except subprocess.TimeoutExpired:
        proc.kill()
        return int(proc.wait(5))


def run_wrk(url: str, body_file: Path, script: Path, connections: int, seconds: float) -> dict:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(script), url]  # fmt: skip
    env = dict(os.environ, BODY_FILE=str(body_file))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    res = json.loads(line[len("RESULT ") :])
    res["requests_per_s"] = res["requests"] / (res["duration_us"] / 1e6)
    non2xx = [x for x in out.splitlines() if "Non-2xx" in x]
    if non2xx:
        res["errors"] += int(non2xx[0].split()[-1])
    return res


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--floor":
        floor_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per run")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", help="also write results as JSON here")
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.stderr.write("error: needs wrk and taskset (apt-get install wrk util-linux)\n")
        return 2

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="predictor-load-") as tmp:
        root = Path(tmp)
        models = build_models(root)
        pkg = root / "pkg"
        pkg.mkdir()
        (pkg / "fallback.py").write_text(FALLBACK_PREDICTOR)
        frameworks = plugin_frameworks()
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        w1, w2 = root / "w1.json", root / "w2.json"
        w1.write_bytes(make_body(1, 1))
        w2.write_bytes(make_body(1000, 2))
        workloads = [("W1", w1, 1, 16), ("W2", w2, 1000, 4)]
        for name, model_dir in models.items():
            flags = model_flags(name, model_dir, pkg, frameworks)
            via = "custom fallback" if flags else "plugin"
            proc, url, ready_s = start_server(model_dir, flags, args.workers, root)
            try:
                predict = url + "/v1/models/m:predict"
                for wname, body, rows, conns in workloads:
                    run_wrk(predict, body, script, conns, args.warmup)
                    res = run_wrk(predict, body, script, conns, args.duration)
                    floor = measure_floor(model_dir, body, min(args.duration, 5), flags)
                    results.append(
                        {
                            "model": name,
                            "via": via,
                            **wrk_row(res, wname, rows, conns),
                            "floor_requests_per_s": floor,
                            "vs_floor": res["requests_per_s"] / floor,
                            "ready_s": ready_s,
                            "rss_mb": rss_mb(proc.pid),
                        }
                    )
                    print(json.dumps(results[-1]), file=sys.stderr)
            finally:
                code = stop_server(proc)
                if code != 0:
                    print(f"warning: server exited with {code}", file=sys.stderr)

    print_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import platform

    import numpy
    import sklearn
    import xgboost

    print(
        f"\nMachine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"scikit-learn {sklearn.__version__}, xgboost {xgboost.__version__}; server on core 0 "
        f"({args.workers} worker), wrk on core 1, {args.duration:g} s per run.\n"
    )
    print(
        "| model | workload | req/s | instances/s | p50 ms | p99 ms | errors "
        "| in-process floor req/s | server / floor | start-up to ready s | RSS MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['model']} | {r['workload']} ({r['rows']} inst, {r['connections']} conn) "
            f"| {r['requests_per_s']:,.0f} | {r['instances_per_s']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {r['floor_requests_per_s']:,.0f} "
            f"| {r['vs_floor']:.2f} | {r['ready_s']:.2f} | {r['rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
