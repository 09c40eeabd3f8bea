"""Generative endpoints: HTTP overhead, time to first chunk, embedding batching (one run).

Every row is a ratio against a baseline measured in the same run:

1. ``generateContent`` and ``embedContent`` over HTTP (one keep-alive client, requests
   one after another) against calling the same predictor's ``generate`` / ``embed``
   directly in this process, for the bundled example (cheap calls: the ratio is mostly
   HTTP) and for a predictor whose calls cost a fixed 5 ms (a small neural model);
   and against the same 5 ms call through the AI Platform ``:predict`` route (what
   the generative layer adds over the existing predict path);
2. time to the first streamed chunk (``streamGenerateContent?alt=sse``, 16 words over
   5 ms) against the whole stream, and against the predictor's own first word;
3. throughput of 32 connections (``wrk``) sending single-text ``embedContent`` requests to
   a predictor whose ``embed`` costs 2 ms a call plus 20 µs a text: merged by the adaptive
   batcher against the same predictor with ``batching = False`` (one call per request).

Servers are real ``serve`` subprocesses. Usage: ``python benchmarks/bench_generative.py
[--requests 200] [--duration 5] [--json out.json]``; about a minute (training the example
included). Needs ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXED = textwrap.dedent(
    '''
    import json, os, time

    GENERATE_SECONDS = 0.005
    EMBED_CALL_SECONDS = 0.002
    EMBED_TEXT_SECONDS = 0.00002


    class FixedCost:
        """Calls with a fixed cost, like a small neural model (sleeps release the GIL)."""

        def __init__(self, batching):
            self.batching = batching

        def generate(self, contents, **config):
            time.sleep(GENERATE_SECONDS)
            return " ".join(["word"] * 16)

        def predict(self, instances, **kwargs):  # the same call through AI Platform's route
            time.sleep(GENERATE_SECONDS)
            return [" ".join(["word"] * 16) for _ in instances]

        def generate_stream(self, contents, **config):
            for i in range(16):
                time.sleep(GENERATE_SECONDS / 16)
                yield "word" if i == 0 else " word"

        def embed(self, texts, **config):
            time.sleep(EMBED_CALL_SECONDS + EMBED_TEXT_SECONDS * len(texts))
            return [[float(len(t))] * 8 for t in texts]

        def count_tokens(self, contents):
            return sum(len(p.get("text", "").split()) for c in contents for p in c["parts"])

        @classmethod
        def from_path(cls, model_dir):
            with open(os.path.join(model_dir, "config.json")) as f:
                return cls(json.load(f)["batching"])
    '''
)
CONTENTS = [{"role": "user", "parts": [{"text": "Return the"}]}]
GEN_BODY = {"contents": CONTENTS, "generationConfig": {"maxOutputTokens": 16, "seed": 1}}
EMBED_BODY = {"content": {"parts": [{"text": "read the contents of a file"}]}}


class Server:
    """``python -m predictor_runtime serve`` in a subprocess."""

    def __init__(self, args: list[str], cwd: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("Listening on "):
                self.url = line.split()[2]
                return
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def median_seconds(fn: Callable[[], Any], n: int) -> float:
    for _ in range(max(3, n // 10)):  # warm-up
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_chunk(client: httpx.Client, url: str) -> tuple[float, float]:
    """``(seconds to the first SSE event, seconds to the end)`` of one stream."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json=GEN_BODY) as r:
        for chunk in r.iter_raw():
            if first is None and b"data: " in chunk:
                first = time.perf_counter() - started
    assert first is not None
    return first, time.perf_counter() - started


def overhead_rows(name: str, url: str, model: str, predictor: Any, n: int) -> list[dict]:
    base = f"{url}/v1beta/models/{model}"
    rows = []
    with httpx.Client(timeout=30) as client:
        for verb, body, direct in [
            (
                "generateContent",
                GEN_BODY,
                lambda: predictor.generate(CONTENTS, max_output_tokens=16, seed=1),
            ),
            ("embedContent", EMBED_BODY, lambda: predictor.embed(["read the contents of a file"])),
        ]:
            bare = median_seconds(direct, n)
            http = median_seconds(
                lambda v=verb, b=body: client.post(f"{base}:{v}", json=b).raise_for_status(), n
            )
            rows.append(
                {"case": f"{name}: {verb}", "baseline": bare, "measured": http, "what": "median"}
            )
        firsts, totals = [], []
        for _ in range(max(10, n // 4)):
            f, t = first_chunk(client, f"{base}:streamGenerateContent?alt=sse")
            firsts.append(f)
            totals.append(t)

    def own_first() -> None:
        next(iter(predictor.generate_stream(CONTENTS, max_output_tokens=16, seed=1)))

    rows.append(
        {
            "case": f"{name}: time to first chunk / whole stream",
            "baseline": statistics.median(totals),
            "measured": statistics.median(firsts),
            "what": "median",
        }
    )
    rows.append(
        {
            "case": f"{name}: time to first chunk over HTTP / the predictor's first word",
            "baseline": median_seconds(own_first, n),
            "measured": statistics.median(firsts),
            "what": "median",
        }
    )
    return rows


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"content": {"parts": [{"text": "read the contents of a file"}]}}'
wrk.headers["Content-Type"] = "application/json"
"""


def embed_throughput(url: str, model: str, seconds: float, tmp: str) -> float:
    """Requests per second of 32 connections sending single-text embedContent (wrk, a C
    client, so the client's own cost does not hide the server's)."""
    script = Path(tmp) / "embed.lua"
    script.write_text(WRK_SCRIPT)
    target = f"{url}/v1beta/models/{model}:embedContent"
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "-s", str(script), target]
    subprocess.run([*cmd[:3], "-d1s", *cmd[4:]], capture_output=True, check=True)  # warm-up
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            if "Non-2xx" in out:
                raise RuntimeError(f"errors during the run:\n{out}")
            return float(line.split()[1])
    raise RuntimeError(f"unexpected wrk output:\n{out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per measurement")
    ap.add_argument("--duration", type=float, default=5, help="seconds of each wrk run")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    from predictor_runtime.examples.generative import wordlm

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        srv = Server(["--example", "generative", "--state-dir", str(state)], tmp)
        try:
            example = wordlm.WordLMPredictor.from_path(str(state / "example" / "generative"))
            rows += overhead_rows("bundled example", srv.url, "generative", example, args.requests)
        finally:
            srv.stop()

        pkg = Path(tmp) / "pkg"
        pkg.mkdir()
        (pkg / "fixed_cost.py").write_text(FIXED)
        sys.path.insert(0, str(pkg))
        import fixed_cost  # type: ignore[import-not-found]

        servers = {}
        for batching in (True, False):
            model_dir = Path(tmp) / f"model-{batching}"
            model_dir.mkdir()
            (model_dir / "config.json").write_text(json.dumps({"batching": batching}))
            servers[batching] = Server(
                ["--model-dir", str(model_dir), "--model-name", "fixed",
                 "--prediction-class", "fixed_cost.FixedCost", "--package", str(pkg),
                 "--state-dir", str(Path(tmp) / f"state-{batching}")],
                tmp,
            )  # fmt: skip
        try:
            fixed = fixed_cost.FixedCost(True)
            rows += overhead_rows("5 ms model", servers[True].url, "fixed", fixed, args.requests)
            with httpx.Client(timeout=30) as client:
                url = servers[True].url
                predict = median_seconds(
                    lambda: client.post(
                        f"{url}/v1/models/fixed:predict", json={"instances": ["Return the"]}
                    ).raise_for_status(),
                    args.requests,
                )
                generate = median_seconds(
                    lambda: client.post(
                        f"{url}/v1beta/models/fixed:generateContent", json=GEN_BODY
                    ).raise_for_status(),
                    args.requests,
                )
            rows.append(
                {
                    "case": "5 ms model: generateContent / AI Platform :predict, same cost",
                    "baseline": predict,
                    "measured": generate,
                    "what": "median",
                }
            )
            unmerged = embed_throughput(servers[False].url, "fixed", args.duration, tmp)
            merged = embed_throughput(servers[True].url, "fixed", args.duration, tmp)
            rows.append(
                {
                    "case": "32 concurrent embedContent clients (2 ms a call): merged / unmerged",
                    "baseline": unmerged,
                    "measured": merged,
                    "what": "req/s",
                }
            )
        finally:
            for s in servers.values():
                s.stop()

    print("| case | baseline | measured | ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        unit = (
            (lambda v: f"{v:,.0f} req/s")
            if r["what"] == "req/s"
            else (lambda v: f"{v * 1e3:.3f} ms")
        )
        ratio = r["measured"] / r["baseline"]
        print(f"| {r['case']} | {unit(r['baseline'])} | {unit(r['measured'])} | {ratio:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
