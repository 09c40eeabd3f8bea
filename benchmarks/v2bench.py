"""W2 over the Open Inference Protocol V2: ``compare.py --v2`` (see benchmarks/README.md).

Per round and model (the two models of ``load.py``), in one run:

- one ``python -m predictor_runtime serve`` (default settings, pinned to core 0) timed on
  three protocols in turn with the very same 1,000 x 30 numbers: V1 JSON
  (``/v1/models/m:predict``), V2 JSON (one ``FP64`` tensor ``[1000, 30]`` with ``data``) and
  V2 binary (Triton's binary tensor extension: JSON header + 240,000 raw little-endian
  bytes, ``Inference-Header-Content-Length``; the output asked for in binary too);
- MLServer (``--anchors-python``) on the same V2 JSON body, in each configuration of
  ``MLSERVER_V2_GRID`` (the best per round is the baseline).

Before timing, 4 concurrent requests of each variant must answer 200 with exactly the
model's own predictions. ``wrk -t1 -c4`` on core 1, warm-up then the timed run. Rounds
repeat the whole sequence, so the spread of a shared machine shows up in the table.
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import N_FEATURES, WRK_SCRIPT, build_models, make_body, run_wrk, wrk_row

OURS = "predictor-runtime"
MLSERVER = "MLServer"
ROWS, CONNS, SEED = 1000, 4, 2
# (label, parallel_workers, max_batch_size, max_batch_time s): the two best MLServer
# settings for W2 in the full grid of compare.py.
MLSERVER_V2_GRID = [("pw=0, no batching", 0, 0, 0.0), ("pw=0, batch 16 / 1 ms", 0, 16, 0.001)]


def wrk_script(headers: dict[str, str]) -> str:
    """``load.WRK_SCRIPT`` with extra request headers."""
    lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    return WRK_SCRIPT.replace('wrk.headers["Content-Type"] = "application/json"\n', lines)


def bodies(v1: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    """variant -> (body, headers) for the same instances."""
    x = np.asarray(json.loads(v1)["instances"], dtype=np.float64)
    tensor = {"name": "input-0", "shape": list(x.shape), "datatype": "FP64"}
    v2_json = json.dumps({"inputs": [{**tensor, "data": x.reshape(-1).tolist()}]}).encode()
    raw = x.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    ).encode()
    json_headers = {"Content-Type": "application/json"}
    return {
        "V1 JSON": (v1, json_headers),
        "V2 JSON": (v2_json, json_headers),
        "V2 binary": (
            header + raw,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
        ),
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: HTTP {e.code}: {e.read()[:300]!r}") from e


def predictions(variant: str, headers: dict[str, str], payload: bytes) -> np.ndarray:
    """The predictions in a response of ``variant`` (binary outputs decoded)."""
    if variant == "V1 JSON":
        return np.asarray(json.loads(payload)["predictions"], dtype=np.float64)
    size = {k.lower(): v for k, v in headers.items()}.get("inference-header-content-length")
    if size is None:
        out = json.loads(payload)["outputs"][0]
        return np.asarray(out["data"], dtype=np.float64)
    head = json.loads(payload[: int(size)])
    out = head["outputs"][0]
    dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8"}[out["datatype"]]
    return np.frombuffer(payload[int(size) :], dtype=dtype).astype(np.float64)


def validate(url: str, variant: str, body: bytes, headers: dict[str, str], expected: Any) -> None:
    """4 concurrent requests: each must get exactly the model's own predictions."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(url, body, headers), range(4)))
    for h, payload in answers:
        got = predictions(variant, h, payload)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"{url} [{variant}]: predictions differ from the model's own")


def reference(model_dir: Path, v1: bytes) -> np.ndarray:
    x = np.asarray(json.loads(v1)["instances"], dtype=np.float64)
    if (model_dir / "model.joblib").exists():
        import joblib

        return np.asarray(joblib.load(model_dir / "model.joblib").predict(x), dtype=np.float64)
    import xgboost

    booster = xgboost.Booster(model_file=str(model_dir / "model.json"))
    return booster.inplace_predict(x.astype(np.float32)).astype(np.float64)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in process group ``pgid``."""
    import os

    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime stime
    return total / os.sysconf("SC_CLK_TCK")


def timed(url: str, body_file: Path, script: Path, args: Any, pgid: int) -> dict[str, Any]:
    """Warm-up, then the timed run; also the server's CPU time per request, which a
    shared, busy machine distorts far less than throughput (see benchmarks/README.md)."""
    run_wrk(url, body_file, script, CONNS, args.warmup)
    cpu = group_cpu_seconds(pgid)
    res = run_wrk(url, body_file, script, CONNS, args.duration)
    cpu = group_cpu_seconds(pgid) - cpu
    row = wrk_row(res, "W2", ROWS, CONNS)
    row["cpu_ms_per_request"] = 1000 * cpu / max(res["requests"], 1)
    return row


def run(args: Any) -> int:
    """The ``--v2`` mode of compare.py."""
    from compare import start_mlserver, start_ours

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="predictor-v2-") as tmp:
        root = Path(tmp)
        models = build_models(root)
        v1 = make_body(ROWS, SEED)
        files: dict[str, tuple[Path, Path, dict[str, str]]] = {}
        for variant, (body, headers) in bodies(v1).items():
            slug = variant.replace(" ", "-")
            (root / f"{slug}.body").write_bytes(body)
            (root / f"{slug}.lua").write_text(wrk_script(headers))
            files[variant] = (root / f"{slug}.body", root / f"{slug}.lua", headers)
        for rnd in range(1, args.rounds + 1):
            for model, model_dir in models.items():
                expected = reference(model_dir, v1)
                server, v1_url = start_ours(model_dir, [], root)
                v2_url = v1_url.replace("/v1/models/m:predict", "/v2/models/m/infer")
                try:
                    for variant, (body_file, script, headers) in files.items():
                        url = v1_url if variant == "V1 JSON" else v2_url
                        validate(url, variant, body_file.read_bytes(), headers, expected)
                        row = timed(url, body_file, script, args, server.proc.pid)
                        results.append({**row, "server": OURS, "config": variant})
                        results[-1].update(model=model, round=rnd)
                        print(json.dumps(results[-1]), file=sys.stderr)
                finally:
                    server.stop()
                kind = "forest" if model.startswith("RandomForest") else "booster"
                model_file = model_dir / ("model.joblib" if kind == "forest" else "model.json")
                body_file, script, headers = files["V2 JSON"]
                for cfg in MLSERVER_V2_GRID:
                    try:
                        server, url = start_mlserver(
                            args.anchors_python, model_file, kind, cfg, root
                        )
                    except RuntimeError as e:
                        print(f"FAILED MLServer [{cfg[0]}] {model}: {e}", file=sys.stderr)
                        continue
                    try:
                        validate(url, "V2 JSON", body_file.read_bytes(), headers, expected)
                        row = timed(url, body_file, script, args, server.proc.pid)
                        results.append({**row, "server": MLSERVER, "config": f"V2 JSON, {cfg[0]}"})
                        results[-1].update(model=model, round=rnd)
                        print(json.dumps(results[-1]), file=sys.stderr)
                    finally:
                        server.stop()
    print_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: list[dict[str, Any]], args: Any) -> None:
    """Per model and protocol: median over rounds and range, and ratios per round to the best
    MLServer configuration of that round, by throughput and by server CPU per request."""
    print(
        f"\nW2 = {ROWS:,} instances of {N_FEATURES} features per request, {CONNS} connections; "
        f"{args.rounds} round(s) of {args.duration:g} s after {args.warmup:g} s warm-up "
        f"(finished {time.strftime('%H:%M UTC', time.gmtime())}).\n"
    )
    print(
        "| model | server | protocol (setting) | req/s median (range) | p50 ms | p99 ms | errors "
        "| CPU ms/req median (range) | ÷ best MLServer, req/s | ÷ best MLServer, CPU/req "
        "| ÷ our V1 JSON, req/s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def spread(values: list[float], fmt: str) -> str:
        med = statistics.median(values)
        return f"{med:{fmt}} ({min(values):{fmt}} to {max(values):{fmt}})"

    def ratio(values: list[float]) -> str:
        if not values:
            return "-"
        return f"**{statistics.median(values):.2f}x** ({min(values):.2f} to {max(values):.2f})"

    for model in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == model]
        by_round: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_round.setdefault(r["round"], []).append(r)
        for server, config in dict.fromkeys((r["server"], r["config"]) for r in rows):
            mine = [r for r in rows if (r["server"], r["config"]) == (server, config)]
            vs_ml, vs_ml_cpu, vs_v1 = [], [], []
            for r in mine if server == OURS else []:
                peers = by_round[r["round"]]
                ml = [p for p in peers if p["server"] == MLSERVER]
                v1 = [p for p in peers if p["server"] == OURS and p["config"] == "V1 JSON"]
                if ml:
                    vs_ml.append(r["requests_per_s"] / max(p["requests_per_s"] for p in ml))
                    best_cpu = min(p["cpu_ms_per_request"] for p in ml)
                    vs_ml_cpu.append(best_cpu / r["cpu_ms_per_request"])
                if v1:
                    vs_v1.append(r["requests_per_s"] / v1[0]["requests_per_s"])
            print(
                f"| {model} | {server} | {config} "
                f"| {spread([r['requests_per_s'] for r in mine], ',.0f')} "
                f"| {statistics.median(r['p50_ms'] for r in mine):.1f} "
                f"| {statistics.median(r['p99_ms'] for r in mine):.1f} "
                f"| {sum(r['errors'] for r in mine)} "
                f"| {spread([r['cpu_ms_per_request'] for r in mine], '.2f')} "
                f"| {ratio(vs_ml)} | {ratio(vs_ml_cpu)} "
                f"| {f'{statistics.median(vs_v1):.2f}x' if vs_v1 else '-'} |"
            )
