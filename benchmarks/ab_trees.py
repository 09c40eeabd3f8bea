"""Paired A/B of two source trees' servers: both serve at the same time, so both see the
same machine.

Each round starts ``python -m predictor_runtime serve`` from tree A and from tree B, both
pinned to core 0, and drives each with its own ``wrk`` (both on core 1) at the same time
for the same seconds. The two servers share core 0 half and half, so the ratio of their
requests per second is the ratio of their efficiency, whatever else the machine does
meanwhile (on this 2-core VM, back-to-back runs of one tree differ by up to 20%; paired
ratios by about 2%). Absolute numbers are about half a lone server's.

For each model of ``load.py`` (forest, XGBoost) and each workload (W1: 1 row, 16
connections; W2: 1,000 rows, 4 connections), ``--rounds`` rounds; the start order
alternates. Prints one JSON line per round and a Markdown table of the median B/A ratios::

    git worktree add --detach /tmp/before <commit>
    python benchmarks/ab_trees.py /tmp/before . --rounds 3

Each tree is put on ``PYTHONPATH`` with its ``plugins/*`` folders.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # (benchmarks/ is not a package)

WORKLOADS = [("W1", 1, 16), ("W2", 1000, 4)]


def tree_env(tree: Path) -> str:
    """The PYTHONPATH that runs ``tree``'s package and plugins."""
    paths = [tree, *(tree / "plugins" / p for p in ("sklearn", "xgboost", "tensorflow"))]
    return ":".join(str(p.resolve()) for p in paths)


def one_round(
    trees: dict[str, Path], model_dir: Path, rows: int, conns: int, args: Any, root: Path, rnd: int
) -> dict[str, dict[str, Any]]:
    import os

    body = root / f"body-{rows}.json"
    if not body.exists():
        body.write_bytes(load.make_body(rows, 1))
    script = root / "post.lua"
    servers: dict[str, Any] = {}
    names = list(trees) if rnd % 2 == 0 else list(trees)[::-1]
    saved = os.environ.get("PYTHONPATH")
    try:
        for name in names:
            os.environ["PYTHONPATH"] = tree_env(trees[name])
            work = Path(tempfile.mkdtemp(dir=root))
            servers[name] = load.start_server(model_dir, [], 1, work)
        results: dict[str, dict[str, Any]] = {}

        def drive(name: str, seconds: float, keep: bool) -> None:
            url = servers[name][1] + "/v1/models/m:predict"
            r = load.run_wrk(url, body, script, conns, seconds)
            if keep:
                results[name] = r

        for seconds, keep in ((args.warmup, False), (args.duration, True)):
            threads = [threading.Thread(target=drive, args=(n, seconds, keep)) for n in trees]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results
    finally:
        for proc, _url, _ready in servers.values():
            load.stop_server(proc)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree_a", type=Path, help="the baseline tree (A)")
    ap.add_argument("tree_b", type=Path, help="the tree to compare (B)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5, help="seconds per timed run")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of warm-up per round")
    ap.add_argument("--only", default="", help="models whose name contains this")
    ap.add_argument("--workloads", default="W1,W2")
    args = ap.parse_args()
    trees = {"A": args.tree_a, "B": args.tree_b}
    table: list[tuple[str, str, list[float], list[float], list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="predictor-ab-") as tmp:
        root = Path(tmp)
        (root / "post.lua").write_text(load.WRK_SCRIPT)
        models = load.build_models(root)
        for model, model_dir in models.items():
            if args.only not in model:
                continue
            for wname, rows, conns in WORKLOADS:
                if wname not in args.workloads.split(","):
                    continue
                ratios, a_rps, b_rps = [], [], []
                for rnd in range(args.rounds):
                    res = one_round(trees, model_dir, rows, conns, args, root, rnd)
                    a, b = res["A"]["requests_per_s"], res["B"]["requests_per_s"]
                    errors = res["A"]["errors"] + res["B"]["errors"]
                    ratios.append(b / a)
                    a_rps.append(a)
                    b_rps.append(b)
                    line = {"model": model, "workload": wname, "round": rnd, "A_rps": round(a, 1),
                            "B_rps": round(b, 1), "B/A": round(b / a, 3), "errors": errors}  # fmt: skip
                    print(json.dumps(line), flush=True)
                table.append((model, wname, ratios, a_rps, b_rps))
    print(f"\nA = {args.tree_a}, B = {args.tree_b}; both servers at once on core 0, "
          f"{args.duration:g} s per round, {args.rounds} rounds.\n")  # fmt: skip
    print("| model | workload | A req/s (median) | B req/s (median) | B/A per round | B/A median |")
    print("|---|---|---:|---:|---|---:|")
    for model, wname, ratios, a_rps, b_rps in table:
        per_round = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"| {model} | {wname} | {statistics.median(a_rps):,.0f} | "
            f"{statistics.median(b_rps):,.0f} | {per_round} | **{statistics.median(ratios):.2f}x** |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
