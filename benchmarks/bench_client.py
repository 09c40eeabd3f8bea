"""The Python client's overhead against bare HTTP clients, measured in the same run.

Run: ``python benchmarks/bench_client.py [--calls 300] [--rounds 7] [--rows 1000]``

It starts ``serve`` (a subprocess on 127.0.0.1) with a trivial custom predictor, so the
server's own time is as small as it gets and the client's share shows, then alternates
rounds of:

- one-row predict: ``httpx.Client.post(url, json=...)`` + ``.json()`` (baseline) against
  ``predictor_runtime.client.Client.predict`` (same pooled keep-alive connection kind);
- V2 infer of a ``rows`` x 30 float32 tensor (when the server has the V2 routes):
  ``tritonclient.http.InferenceServerClient.infer`` with binary tensors (baseline)
  against ``Client.infer``, and a bare ``httpx.Client.post`` of the same body encoded
  once (the transport's share, no tensor encoding or decoding).

The contenders alternate call by call (``rounds`` x ``calls`` calls each), so load drift on
a shared machine hits them alike; the table shows the median latency per call and the
CPU time the benchmark process spent per call (the client's own cost), each with its
ratio to the baseline.
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

import httpx
import numpy as np

PREDICTOR = '''
import numpy as np

class Identity:
    """Returns its instances; nothing else to time."""

    def predict(self, instances, **kwargs):
        return instances if isinstance(instances, list) else np.asarray(instances)

    @classmethod
    def from_path(cls, model_dir):
        return cls()
'''


def start_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    (root / "pkg").mkdir()
    (root / "pkg" / "bench_identity.py").write_text(PREDICTOR)
    (root / "model").mkdir()
    cmd = [
        sys.executable, "-m", "predictor_runtime", "serve", "--port", "0",
        "--model-dir", str(root / "model"), "--model-name", "m",
        "--prediction-class", "bench_identity.Identity", "--package", str(root / "pkg"),
        "--state-dir", str(root / "state"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Listening on "):
            return proc, line.split()[2]
    raise SystemExit("the server did not start")


def compare(
    title: str, contenders: dict[str, Callable[[], object]], calls: int, rounds: int
) -> None:
    """Alternate the contenders call by call (so load drift hits all alike); medians."""
    for fn in contenders.values():  # warm up connections and caches
        for _ in range(20):
            fn()
    latencies: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, float] = dict.fromkeys(contenders, 0.0)
    clock, cpu_clock = time.perf_counter, time.process_time
    for _ in range(rounds):
        for _ in range(calls):
            for name, fn in contenders.items():
                c0, t0 = cpu_clock(), clock()
                fn()
                t1, c1 = clock(), cpu_clock()
                latencies[name].append(t1 - t0)
                cpu[name] += c1 - c0
    names = list(contenders)
    base = statistics.median(latencies[names[0]])
    base_cpu = cpu[names[0]]
    n = calls * rounds
    print(f"\n{title} ({n} calls each, alternating)")
    print("| case | median latency | ratio | client CPU per call | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    for i, name in enumerate(names):
        med = statistics.median(latencies[name])
        label = f"{name} (baseline)" if i == 0 else name
        print(
            f"| {label} | {med * 1e6:.0f} µs | {med / base:.2f}x "
            f"| {cpu[name] / n * 1e6:.0f} µs | {cpu[name] / base_cpu:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()

    from predictor_runtime.client import ApiError, Client

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            row = [[0.1 * i for i in range(30)]]
            bare = httpx.Client(base_url=url, timeout=30)
            client = Client(url)

            def bare_predict() -> object:
                r = bare.post("/v1/models/m:predict", json={"instances": row})
                r.raise_for_status()
                return r.json()["predictions"]

            def client_predict() -> object:
                return client.predict("m", row)

            assert bare_predict() == client_predict() == row
            compare(
                "one-row predict",
                {"httpx.Client.post": bare_predict, "Client.predict": client_predict},
                args.calls,
                args.rounds,
            )

            tensor = np.random.default_rng(0).normal(size=(args.rows, 30)).astype(np.float32)
            try:
                client.infer("m", {"x": tensor})
            except ApiError as exc:
                print(f"\ninfer: skipped, the server has no V2 infer route ({exc})")
                return
            import tritonclient.http as triton

            tc = triton.InferenceServerClient(url.removeprefix("http://"))

            def triton_infer() -> object:
                inp = triton.InferInput("x", list(tensor.shape), "FP32")
                inp.set_data_from_numpy(tensor, binary_data=True)
                result = tc.infer("m", [inp])
                return result.as_numpy(result.get_response()["outputs"][0]["name"])

            def client_infer() -> object:
                return next(iter(client.infer("m", {"x": tensor}).values()))

            from predictor_runtime.client import _v2

            body, n = _v2.encode_request({"x": tensor}, None, {})
            headers = {"content-type": "application/octet-stream", _v2.HEADER_LENGTH: str(n)}

            def bare_infer() -> object:  # transport only: the body is encoded once, not parsed
                r = bare.post("/v2/models/m/infer", content=body, headers=headers)
                r.raise_for_status()
                return r.content

            np.testing.assert_array_equal(np.asarray(triton_infer()), client_infer())
            compare(
                f"V2 infer, {args.rows} x 30 FP32",
                {
                    "tritonclient.http infer": triton_infer,
                    "Client.infer": client_infer,
                    "httpx.Client.post, pre-encoded body (transport only)": bare_infer,
                },
                max(10, args.calls // 5),
                args.rounds,
            )
            tc.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
