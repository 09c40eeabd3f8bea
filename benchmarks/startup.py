"""Start-up of ``serve`` for one or more source trees: the server's own share of the time
to ready, median of several starts, with the floor of a bare uvicorn app in the same run.

For each start: process start to ``/readyz`` 200 (``ready``), minus the "framework import
and model load" seconds the server logs (``load``): ``own = ready - load``. Trees take
turns start by start, so they see the same machine; every process is pinned to core 0 and
runs with bytecode caching on (this machine sets ``PYTHONDONTWRITEBYTECODE``, which would
add compiling to every start)::

    git worktree add --detach /tmp/before <commit>
    python benchmarks/startup.py /tmp/before . --model xgboost --starts 7

``--model`` is ``xgboost`` or ``forest`` (``load.py``'s benchmark models, trained into a
temporary folder) or ``constant`` (a custom predictor importing nothing: the whole start-up
is the server's own). The floor is :data:`compare.FLOOR_APP`: an ASGI app on uvicorn + uvloop +
httptools that answers a constant, timed from process start to its first 200.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab_trees import tree_env  # benchmarks/ is not a package
from compare import FLOOR_APP, Server, constant_predictor
from load import build_models, free_port


def time_to_ready(cmd: list[str], port: int, env: dict[str, str], work: Path) -> float:
    """Seconds from starting ``cmd`` (pinned to core 0) to ``/readyz`` answering 200."""
    server = Server(cmd, work, f"http://127.0.0.1:{port}/readyz", work / "server.log", env)
    server.stop()
    return server.ready_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", type=Path, help="source trees to start in turn")
    ap.add_argument("--model", choices=("xgboost", "forest", "constant"), default="xgboost")
    ap.add_argument("--starts", type=int, default=7)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    own: dict[str, list[float]] = {str(t): [] for t in args.trees}
    loads: dict[str, list[float]] = {str(t): [] for t in args.trees}
    floor: list[float] = []
    with tempfile.TemporaryDirectory(prefix="predictor-startup-") as tmp:
        root = Path(tmp)
        models = build_models(root)
        flags: list[str] = []
        if args.model == "constant":  # a custom predictor that imports nothing
            model_dir, flags = constant_predictor(root)
        else:
            model_dir = models["XGBoost" if args.model == "xgboost" else "RandomForest (sklearn)"]
        app = root / "floor_app.py"
        app.write_text(FLOOR_APP)
        for _ in range(args.starts):
            for tree in args.trees:
                work = Path(tempfile.mkdtemp(dir=root))
                port = free_port()
                cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--model-dir",
                       str(model_dir), "--model-name", "m", "--port", str(port),
                       "--state-dir", str(work / "state"), *flags]  # fmt: skip
                tree_env_vars = dict(env, PYTHONPATH=tree_env(tree))
                ready = time_to_ready(cmd, port, tree_env_vars, work)
                found = re.search(r"framework import and model load: ([0-9.]+) s",
                                  (work / "server.log").read_text())  # fmt: skip
                if found is None:
                    raise RuntimeError(f"{tree}: the server did not log its model load time")
                loads[str(tree)].append(float(found.group(1)))
                own[str(tree)].append(ready - float(found.group(1)))
            port = free_port()
            work = Path(tempfile.mkdtemp(dir=root))
            floor.append(time_to_ready([sys.executable, str(app), str(port)], port, env, work))
    print(f"\n{args.starts} starts each, {args.model} model, core 0, trees in turn.\n")
    print("| tree | own share (median) | per start | framework import + load (median) |")
    print("|---|---:|---|---:|")
    for tree in args.trees:
        values = own[str(tree)]
        per = ", ".join(f"{v * 1000:.0f}" for v in values)
        print(f"| {tree} | **{statistics.median(values) * 1000:.0f} ms** | {per} | "
              f"{statistics.median(loads[str(tree)]):.2f} s |")  # fmt: skip
    per = ", ".join(f"{v * 1000:.0f}" for v in floor)
    print(
        f"| bare uvicorn app (floor) | **{statistics.median(floor) * 1000:.0f} ms** | {per} | - |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
