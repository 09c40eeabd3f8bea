"""Batch prediction throughput: the job runner against a plain loop, and Ray Data against
local worker processes, measured in the same run on the same file.

    python benchmarks/bench_jobs.py [--rows 100000] [--batch-size 1024] [--repeat 3] [--no-ray]

Runs 1 and 2 alternate ``--repeat`` times and the best time of each is kept.

1. *baseline*: an in-process loop that reads the file line by line, parses each line with
   orjson, predicts batches of ``--batch-size`` rows with the scikit-learn model itself and
   writes ``{"instance", "prediction"}`` lines; the model is loaded before timing.
2. *local, 1 worker*: :func:`predictor_runtime.jobs.run_plan` on the same file with the same
   model already loaded (``batch-predict --workers 1`` without the model load); the
   target is at least 0.8x the baseline's rows/s.
3. *local, 2 workers*: ``batch-predict --workers 2`` (two spawned processes, each loading
   the model: included in the time, as it is for Ray's actors).
4. *Ray Data, 2 actors*: ``batch-predict --workers 2 --ray-address local`` on a Ray
   started before timing (``ray.init`` time reported apart).

Prints a Markdown table (rows/s and ratios) for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def make_data(root: Path, rows: int) -> tuple[Path, Path]:
    """A RandomForest (30 features) in ``root/model`` and ``rows`` JSON lines of input."""
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=5000, n_features=30, random_state=0)
    model = root / "model"
    model.mkdir()
    clf = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(x, y)
    joblib.dump(clf, model / "model.joblib")
    rng = np.random.default_rng(0)
    data = root / "in.jsonl"
    with open(data, "w") as fh:
        for start in range(0, rows, 10_000):
            block = rng.normal(size=(min(10_000, rows - start), 30)).round(6)
            fh.write("".join(json.dumps(r) + "\n" for r in block.tolist()))
    return model, data


def baseline(model_dir: Path, data: Path, out: Path, batch: int) -> float:
    """Seconds for the plain read -> predict -> write loop."""
    import joblib
    import numpy as np
    import orjson

    clf = joblib.load(model_dir / "model.joblib")
    started = time.perf_counter()
    with open(data, "rb") as src, open(out, "wb") as dst:
        raws: list[bytes] = []
        rows: list[list[float]] = []

        def flush() -> None:
            preds = clf.predict(np.asarray(rows, dtype=np.float64)).tolist()
            dst.write(
                b"".join(
                    b'{"instance":' + r + b',"prediction":' + orjson.dumps(p) + b"}\n"
                    for r, p in zip(raws, preds, strict=True)
                )
            )
            raws.clear()
            rows.clear()

        for line in src:
            raw = line.strip()
            raws.append(raw)
            rows.append(orjson.loads(raw))
            if len(rows) >= batch:
                flush()
        if rows:
            flush()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs of 1. and 2. (best kept)")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()

    from predictor_runtime.jobs import JobSpec, ModelRef, make_plan, run_plan

    root = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    try:
        model_dir, data = make_data(root, args.rows)
        ref = ModelRef(str(model_dir))
        n = args.rows
        timings: dict[str, float] = {"baseline": float("inf"), "local1": float("inf")}
        dispatcher = ref.load(args.batch_size)
        for i in range(args.repeat):  # alternate, keep the best of each: a busy machine
            took = baseline(model_dir, data, root / "baseline.jsonl", args.batch_size)
            timings["baseline"] = min(timings["baseline"], took)
            spec1 = JobSpec([str(data)], str(root / f"local1-{i}"), batch_size=args.batch_size)
            plan = make_plan(spec1)
            t = time.perf_counter()
            result = run_plan(spec1, plan, dispatcher=dispatcher)
            timings["local1"] = min(timings["local1"], time.perf_counter() - t)
            assert result.predictions == n, result

        spec2 = JobSpec([str(data)], str(root / "local2"), batch_size=args.batch_size, workers=2)
        t = time.perf_counter()
        result = run_plan(spec2, make_plan(spec2), model=ref)
        timings["local2"] = time.perf_counter() - t
        assert result.predictions == n, result

        print(f"local runs done: {timings}", file=sys.stderr, flush=True)
        ray_init = None
        if not args.no_ray:
            import ray

            from predictor_runtime.jobs.ray_data import run_on_ray

            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")  # busy machines
            t = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray_init = time.perf_counter() - t
            spec_r = JobSpec([str(data)], str(root / "ray2"), batch_size=args.batch_size, workers=2)
            t = time.perf_counter()
            result = run_on_ray(spec_r, make_plan(spec_r), ref)
            timings["ray2"] = time.perf_counter() - t
            ray.shutdown()
            assert result.predictions == n, result

        def row(name: str, key: str, base: str) -> str:
            rate = n / timings[key]
            ratio = timings[base] / timings[key]
            return f"| {name} | {timings[key]:.2f} s | {rate:,.0f} | {ratio:.2f}x |"

        print(f"\n{n:,} rows of 30 floats, batch size {args.batch_size}, RandomForest(20 trees)\n")
        print("| run | time | rows/s | ratio |")
        print("|---|---:|---:|---:|")
        print(row("baseline: read, predict, write loop (in process)", "baseline", "baseline"))
        print(row("batch-predict, 1 worker (model loaded)", "local1", "baseline"))
        print(row("batch-predict, 2 worker processes (load included)", "local2", "local2"))
        if "ray2" in timings:
            print(row("Ray Data, 2 actors (load included)", "ray2", "local2"))
            print(f"\nray.init(num_cpus=2): {ray_init:.1f} s (not in the Ray Data time)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
