"""``python -m predictor_runtime predict --url``: the same input files, sent to a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictor_runtime.testing import run_cli

pytestmark = pytest.mark.slow  # a serve subprocess per module


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "json": tmp_path / "instances.jsonl",
        "request": tmp_path / "request.json",
        "text": tmp_path / "instances.txt",
    }
    files["json"].write_text('[1.0, 2.0]\n{"a": NaN}\n"s"\n')
    files["request"].write_text(json.dumps({"instances": [1, 2], "top_k": 3}))
    files["text"].write_text("hello world\nsecond line\n")
    return files


def local_args(server) -> list[str]:
    pkg = server.root / "pkg"
    return [
        "--model-dir", str(server.root / "echo_v1"),
        "--prediction-class", "client_predictors.Echo",
        "--package", str(pkg),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "key"),
    [("--json-instances", "json"), ("--json-request", "request"), ("--text-instances", "text")],
)
def test_remote_predict_prints_what_local_predict_prints(server, inputs, flag, key, tmp_path):
    remote = run_cli("predict", "--url", server.url, "--model", "echo", flag, str(inputs[key]))
    assert remote.returncode == 0, remote.stderr
    local = run_cli("predict", *local_args(server), flag, str(inputs[key]), cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    assert json.loads(remote.stdout)["predictions"]


def test_remote_predict_with_version_and_signature_name(server, inputs):
    proc = run_cli(
        "predict", "--url", server.url, "--model", "echo", "--version", "v1",
        "--json-request", str(inputs["request"]), "--signature-name", "sig",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["predictions"]
    assert out[0] == {"x": 1, "kw": {"top_k": 3, "signature_name": "sig"}}


def test_remote_predict_errors_are_one_line(server, inputs):
    proc = run_cli(
        "predict", "--url", server.url, "--model", "nope", "--json-instances", str(inputs["json"])
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {server.url}: ") and "(HTTP 404)" in proc.stderr
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("predict", "--url", server.url, "--json-instances", str(inputs["json"]))
    assert proc.returncode == 1 and "--url needs --model" in proc.stderr


def test_predict_needs_exactly_one_of_model_dir_and_url(inputs, tmp_path):
    neither = run_cli("predict", "--json-instances", str(inputs["json"]))
    both = run_cli(
        "predict", "--model-dir", str(tmp_path), "--url", "http://127.0.0.1:9",
        "--model", "m", "--json-instances", str(inputs["json"]),
    )  # fmt: skip
    for proc in (neither, both):
        assert proc.returncode == 1
        assert "exactly one of --model-dir (local) or --url (a server)" in proc.stderr


def test_unreachable_server_is_a_clear_error(inputs):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli(
        "predict", "--url", f"http://127.0.0.1:{port}", "--model", "m",
        "--json-instances", str(inputs["json"]),
    )  # fmt: skip
    assert proc.returncode == 1 and "ConnectError" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_remote_stream_prints_the_chunks_local_stream_prints(server, tmp_path):
    request = tmp_path / "stream.json"
    request.write_text(json.dumps({"instances": ["a", "b"], "chunks": 3}))
    remote = run_cli(
        "predict", "--url", server.url, "--model", "echo", "--stream", "--json-request", str(request)
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert [json.loads(line) for line in remote.stdout.splitlines()] == [
        {"i": i, "n": 2} for i in range(3)
    ]
    local = run_cli(
        "predict", *local_args(server), "--stream", "--json-request", str(request), cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
