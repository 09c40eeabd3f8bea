"""``python -m predictor_runtime serve`` as a subprocess: example, shutdown, workers, flags."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest

ECHO = ["--prediction-class", "echo_predictor.EchoPredictor", "--model-name", "echo"]


def test_serves_bundled_example_and_stops_on_sigterm(cli_server, tmp_path):
    srv = cli_server(["--state-dir", str(tmp_path / "state")])
    assert srv.banner[0].startswith("Serving the bundled example: model iris version v1")
    assert "curl" in srv.banner[1]
    assert (tmp_path / "state" / "example" / "iris" / "model.joblib").is_file()
    assert httpx.get(srv.url + "/readyz").status_code == 200
    body = {"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}
    r = httpx.post(srv.url + "/v1/projects/demo/models/iris:predict", json=body)
    assert r.json() == {"predictions": ["versicolor", "setosa"]}
    r = httpx.post(srv.url + "/v1/models/iris/versions/v1:predict", json={"instances": [[1, 2]]})
    assert r.status_code == 400
    assert r.json()["error"].startswith("Prediction failed: ValueError")
    model = httpx.get(srv.url + "/v1/projects/demo/models/iris").json()
    assert model["defaultVersion"]["predictionClass"] == "predictor.IrisPredictor"
    assert srv.stop() == 0


def test_sigterm_during_burst_drains_in_flight_requests(cli_server, echo_model, tmp_path):
    calls = tmp_path / "calls.jsonl"
    model_dir, pkg = echo_model(delay=0.3, calls_file=str(calls))
    srv = cli_server(["--model-dir", str(model_dir), "--package", str(pkg), *ECHO,
                      "--max-batch-size", "4"])  # fmt: skip

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            tasks = [
                asyncio.ensure_future(
                    client.post("/v1/models/echo:predict", json={"instances": [f"q{i}"]})
                )
                for i in range(12)
            ]
            # the second model call starts 0.3 s after the first: by then every request
            # has reached the server and waits in the batcher (3 calls still to go)
            deadline = time.monotonic() + 30
            while not (calls.exists() and len(calls.read_text().splitlines()) >= 2):
                assert time.monotonic() < deadline, "the server never made a second model call"
                await asyncio.sleep(0.01)
            assert not all(t.done() for t in tasks)  # some still in flight at SIGTERM
            srv.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 12
    assert [r.json()["predictions"][0]["id"] for r in responses] == [f"q{i}" for i in range(12)]
    assert srv.proc.wait(30) == 0
    # and it stopped accepting
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/healthz", timeout=1)


def test_two_workers_share_the_port_and_metrics(cli_server, echo_model):
    model_dir, pkg = echo_model(delay=0.01)
    srv = cli_server(["--model-dir", str(model_dir), "--package", str(pkg), *ECHO,
                      "--workers", "2"])  # fmt: skip
    assert "workers: 2" in srv.banner[-1]

    async def many() -> list[httpx.Response]:
        results = []
        for _ in range(6):  # fresh connections spread over both workers
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
                results += await asyncio.gather(
                    *(client.post("/v1/models/echo:predict", json={"instances": [i]})
                      for i in range(10))
                )  # fmt: skip
        return results

    responses = asyncio.run(many())
    assert all(r.status_code == 200 for r in responses)
    pids = {r.json()["predictions"][0]["pid"] for r in responses}
    assert len(pids) == 2, pids
    assert srv.proc.pid not in pids  # children serve; the parent supervises
    text = httpx.get(srv.url + "/metrics").text
    assert 'predictor_requests_total{code="200",model="echo",version="v1"} 60.0' in text
    assert srv.stop(signal.SIGINT) == 0


def test_readyz_and_startup_with_slow_loading_model(cli_server, echo_model):
    model_dir, pkg = echo_model(load_seconds=0.5)
    started = time.monotonic()
    srv = cli_server(["--model-dir", str(model_dir), "--package", str(pkg), *ECHO])
    assert time.monotonic() - started >= 0.5
    assert httpx.get(srv.url + "/readyz").status_code == 200
    assert srv.stop() == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model-dir", "/nonexistent/dir"], "does not exist"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--prediction-class", "x.Y"], "need --model-dir"),
        (["--max-request-bytes", "0"], "--max-request-bytes must be >= 1"),
    ],
)
def test_bad_flags_one_line_nonzero_exit(tmp_path, args, needle):
    cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr
