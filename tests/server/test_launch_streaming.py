"""Streaming predictors (SPEC 8) from the outside: SSE as produced, failures, disconnects,
and ``predict --stream`` on the CLI."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch_helpers import launch_model, sse_events, wait_for

from predictor_runtime.testing import run_cli

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "predictor_runtime" / "examples" / "streaming"


def stream(client: httpx.Client, instances: list) -> httpx.Response:
    return client.stream(
        "POST",
        "/v1/streaming-tasks?model_endpoint_id=echo",
        json={"args": {"instances": instances}},
    )


def test_streaming_tasks(cli_server, tmp_path: Path):
    srv = cli_server([*launch_model(tmp_path), "--model-name", "echo"])
    client = httpx.Client(base_url=srv.url, timeout=30)

    # the first event arrives while the generator is still blocked
    flag = tmp_path / "go"
    with stream(client, [["wait", str(flag)]]) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        events = sse_events(r)
        first = next(events)
        assert first == {
            "status": "SUCCESS",
            "result": {"result": {"step": 1}},
            "traceback": None,
            "status_code": 200,
        }
        assert not flag.exists()  # nothing has released the generator yet
        flag.write_text("go")
        assert [e["result"]["result"] for e in events] == [{"step": 2}]

    # an exception mid-stream: one FAILURE event, then the end
    with stream(client, [["fail"]]) as r:
        events = list(sse_events(r))
    assert [e["status"] for e in events] == ["SUCCESS", "FAILURE"]
    assert events[1]["result"] is None and events[1]["status_code"] == 400
    assert "ValueError: stream broke" in events[1]["traceback"]

    # the client goes away: the generator is closed (its finally runs)
    closed = tmp_path / "closed"
    with stream(client, [["forever", str(closed)]]) as r:
        events = sse_events(r)
        assert next(events)["status"] == "SUCCESS"
        next(events)
    wait_for(closed.exists, 10, "the generator was not closed after the disconnect")

    # the raw framing: "data: {json}" then a blank line, per event
    with stream(client, ["a", "b"]) as r:
        raw = r.read()
    assert raw.count(b"data: ") == 2 and raw.endswith(b"}\n\n")
    assert raw.split(b"\n\n")[0] == (
        b'data: {"status":"SUCCESS","result":{"result":{"id":"a"}},"traceback":null,'
        b'"status_code":200}'
    )
    metrics = client.get("/metrics").text
    assert "predictor_stream_first_event_seconds_count" in metrics
    assert "predictor_stream_duration_seconds_count" in metrics
    client.close()


def test_predict_stream_cli_prints_chunks_as_json_lines(tmp_path: Path):
    (tmp_path / "in.txt").write_text("one two three\nfour\n")
    (tmp_path / "req.json").write_text(json.dumps({"instances": ["x y"], "delay": 0}))
    common = [
        "predict",
        "--model-dir", str(EXAMPLE),
        "--prediction-class", "predictor.TypewriterPredictor",
        "--package", str(EXAMPLE),
        "--stream",
    ]  # fmt: skip
    started = time.monotonic()
    result = run_cli(*common, "--text-instances", str(tmp_path / "in.txt"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["word"] for c in lines] == ["one", "two", "three", "four"]
    assert [c["instance"] for c in lines] == [0, 0, 0, 1]
    assert time.monotonic() - started < 60
    result = run_cli(*common, "--json-request", str(tmp_path / "req.json"))
    assert [json.loads(x)["word"] for x in result.stdout.splitlines()] == ["x", "y"]
