"""``predictor_runtime.client.Client`` against a real ``serve`` subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from client_helpers import requests_counted, version_body

from predictor_runtime.client import (
    ApiError,
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    VersionFailedError,
)

pytestmark = pytest.mark.slow  # a serve subprocess per module


def counting(client: Client) -> list[str]:
    """Record every HTTP request the client sends (attempts, retries included)."""
    sent: list[str] = []
    client._http.event_hooks["request"].append(lambda r: sent.append(f"{r.method} {r.url.path}"))
    return sent


def test_predict_default_and_named_version_with_kwargs(server):
    with Client(server.url) as client:
        assert client.predict("echo", ["a", 2]) == [{"x": "a", "kw": {}}, {"x": 2, "kw": {}}]
        out = client.predict("echo", [[1.0, 2.0]], version="v1", signature_name="s", k=1)
        assert out == [{"x": [1.0, 2.0], "kw": {"signature_name": "s", "k": 1}}]
        # a 2-D numpy array travels as nested lists
        assert client.predict("echo", np.arange(4.0).reshape(2, 2))[1]["x"] == [2.0, 3.0]


def test_predict_rejects_a_non_list_before_sending(server):
    with Client(server.url) as client, pytest.raises(TypeError, match="instances must be a list"):
        client.predict("echo", "abc")  # type: ignore[arg-type]


def test_typed_errors_carry_status_and_the_servers_message(server):
    with Client(server.url, retries=0) as client:
        with pytest.raises(BadRequestError) as bad:
            client.predict("echo", ["ok", "boom"])
        assert bad.value.status == 400
        assert (
            "Prediction failed" in bad.value.message
            and "the predictor exploded" in bad.value.message
        )
        # plain {"error": "..."} envelope of the predict routes
        with pytest.raises(NotFoundError) as missing:
            client.predict("nope", [1])
        assert missing.value.status == 404 and "nope" in missing.value.message
        # Google's envelope of the resource routes: message and status name
        with pytest.raises(NotFoundError) as gone:
            client.get_version("echo", "v404")
        assert "v404" in gone.value.message and gone.value.reason == "NOT_FOUND"
        with pytest.raises(ConflictError) as dup:
            client.create_model("echo")
        assert dup.value.status == 409 and "echo" in dup.value.message
        assert isinstance(dup.value, ApiError) and str(dup.value).startswith("HTTP 409: ")


def test_no_retry_on_400(server):
    before = requests_counted("echo", "v1", 400, server.url)
    with Client(server.url, retries=5, backoff=0.01) as client:
        sent = counting(client)
        with pytest.raises(BadRequestError):
            client.predict("echo", ["boom"])
    assert sent == ["POST /v1/models/echo:predict"]
    assert requests_counted("echo", "v1", 400, server.url) == before + 1


def test_retries_a_version_still_loading_until_it_answers(server, model_factory):
    model_dir, pkg = model_factory("slow_load", load_seconds=1.5)
    with Client(server.url, retries=0) as client:
        op = client.create_version("echo", version_body("loading", model_dir, pkg), wait=False)
        assert op["done"] is False
        with pytest.raises(ServiceUnavailableError) as exc:  # retries=0: the first 503 raises
            client.predict("echo", ["a"], version="loading")
        assert exc.value.status == 503 and exc.value.message
    with Client(server.url, retries=10, backoff=0.1, max_backoff=0.5) as client:
        sent = counting(client)
        started = time.monotonic()
        assert client.predict("echo", ["a"], version="loading") == [{"x": "a", "kw": {}}]
        assert len(sent) > 1, "the loading version should have answered 503 at least once"
        assert time.monotonic() - started < 15
        client.delete_version("echo", "loading")


def test_management_lifecycle(server, model_factory):
    model_dir, pkg = model_factory("shop_v1")
    with Client(server.url) as client:
        created = client.create_model("shop", description="a shop", labels={"team": "a"})
        assert created["name"].endswith("/models/shop") and created["labels"] == {"team": "a"}
        assert any(m["name"].endswith("/models/shop") for m in client.list_models())
        version = client.create_version("shop", version_body("v1", model_dir, pkg))
        assert version["state"] == "READY" and version["isDefault"] is True
        assert client.predict("shop", ["q"]) == [{"x": "q", "kw": {}}]
        client.create_version("shop", version_body("v2", model_dir, pkg))
        names = sorted(v["name"].rsplit("/", 1)[1] for v in client.list_versions("shop"))
        assert names == ["v1", "v2"]
        op = client.delete_version("shop", "v2")
        assert op["done"] is True and "error" not in op
        assert [v["name"].rsplit("/", 1)[1] for v in client.list_versions("shop")] == ["v1"]
        assert client.get_model("shop")["defaultVersion"]["name"].endswith("/v1")


def test_create_version_raises_with_the_versions_error_message(server, model_factory):
    model_dir, pkg = model_factory("broken", fail="weights are corrupt (test)")
    with Client(server.url) as client:
        with pytest.raises(VersionFailedError) as exc:
            client.create_version("echo", version_body("broken", model_dir, pkg))
        assert "weights are corrupt (test)" in exc.value.message
        assert exc.value.version["state"] == "FAILED"
        with pytest.raises(TimeoutError):
            model_dir, pkg = model_factory("slower", load_seconds=3)
            client.create_version("echo", version_body("slower", model_dir, pkg), wait_timeout=0.3)


def test_api_key_is_sent_as_bearer(tmp_path):
    from client_helpers import start_echo_server, stop

    srv = start_echo_server(tmp_path, "--api-key", "s3cret")
    try:
        with Client(srv.url, api_key="s3cret") as client:
            seen: list[str | None] = []
            client._http.event_hooks["request"].append(
                lambda r: seen.append(r.headers.get("authorization"))
            )
            assert client.predict("echo", [1])[0]["x"] == 1
            assert seen == ["Bearer s3cret"]
        with Client(srv.url, retries=0) as anonymous:
            try:
                anonymous.predict("echo", [1])
            except ApiError as exc:
                assert exc.status == 401 and exc.message
            else:
                pytest.fail("a request without the api key was answered")
    finally:
        stop(srv)


def test_context_manager_closes_the_pool(server):
    with Client(server.url) as client:
        client.predict("echo", [1])
    assert client._http.is_closed


def test_connection_errors_are_retried_then_raised():
    import socket

    from predictor_runtime.client import ApiConnectionError

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.05) as client:
        sent = counting(client)
        with pytest.raises(ApiConnectionError, match="ConnectError") as exc:
            client.predict("echo", [1])
        assert isinstance(exc.value.__cause__, httpx.ConnectError)
    assert len(sent) == 3


class _Scripted(threading.Thread):
    """A tiny real HTTP server answering a fixed list of (status, headers, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        super().__init__(daemon=True)
        self.answers = list(answers)
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.times.append(time.monotonic())
                status, headers, body = outer.answers.pop(0)
                self.send_response(status)
                for k, v in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def run(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)

    def __enter__(self) -> _Scripted:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.join(5)


def test_429_honours_retry_after_and_retries_zero_turns_retries_off():
    busy = (
        429,
        {"Retry-After": "1"},
        b'{"error": {"code": 429, "message": "queue full", "status": "RESOURCE_EXHAUSTED"}}',
    )
    ok = (200, {"content-type": "application/json"}, b'{"predictions": [1]}')
    with _Scripted([busy, ok]) as stub, Client(stub.url, backoff=0.01) as client:
        assert client.predict("m", [1]) == [1]
        assert stub.times[1] - stub.times[0] >= 0.95  # waited what Retry-After asked
    with _Scripted([busy]) as stub, Client(stub.url, retries=0) as client:
        from predictor_runtime.client import RateLimitError

        with pytest.raises(RateLimitError) as exc:
            client.predict("m", [1])
        assert exc.value.message == "queue full" and exc.value.retry_after == 1.0
        assert len(stub.times) == 1


def test_non_json_error_bodies_still_surface_text():
    page = (502, {"content-type": "text/html"}, b"<html>bad gateway from the proxy</html>")
    with _Scripted([page]) as stub, Client(stub.url) as client:
        with pytest.raises(ApiError) as exc:
            client.predict("m", [1])
        assert exc.value.status == 502 and "bad gateway from the proxy" in exc.value.message
        assert len(stub.times) == 1  # 502 is not retried


def test_importing_the_client_imports_no_ml_framework_nor_numpy():
    code = (
        "import sys, predictor_runtime.client\n"
        "bad = [m for m in ('numpy', 'sklearn', 'xgboost', 'tensorflow', 'torch', 'ray')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- Launch-style tasks and streams (SPEC 7) -------------------------------------------


def test_predict_async_future_with_timeout_and_callback(server):
    with Client(server.url) as client:
        future = client.predict_async("echo", ["slow"], k=1)
        with pytest.raises(TimeoutError, match=future.task_id):
            future.result(timeout=0.2)
        assert future.result(timeout=30) == [{"x": "slow", "kw": {"k": 1}}]
        assert future.done() and future.status == "SUCCESS"

        called = threading.Event()
        seen: list[Any] = []

        def on_done(f: Any) -> None:
            seen.append(f)
            called.set()

        f2 = client.predict_async("echo", ["a", "b"], callback=on_done)
        assert called.wait(30) and seen == [f2]
        assert [p["x"] for p in f2.result()] == ["a", "b"]

        failed = client.predict_async("echo", ["boom"])
        with pytest.raises(BadRequestError, match="the predictor exploded"):
            failed.result(timeout=30)
        with pytest.raises(ValueError, match="default version"):
            client.predict_async("echo", [1], version="v1")


def test_stream_yields_chunks_and_stops_early(server):
    log = server.root / "echo_v1" / "streams.log"
    with Client(server.url) as client:
        with client.stream("echo", ["a", "b"], chunks=3) as chunks:
            assert list(chunks) == [{"i": 0, "n": 2}, {"i": 1, "n": 2}, {"i": 2, "n": 2}]
        before = log.read_text().count("closed") if log.exists() else 0
        started = time.monotonic()
        with client.stream("echo", [1], chunks=1000, pause=0.05) as chunks:
            first = next(chunks)
        assert first == {"i": 0, "n": 1}
        assert time.monotonic() - started < 10  # did not wait for the 1000 chunks
        deadline = time.monotonic() + 15
        while not (log.exists() and log.read_text().count("closed") > before):
            assert time.monotonic() < deadline, "the server did not stop the generator"
            time.sleep(0.05)
        # the connection pool still works after an early close
        assert client.predict("echo", [5])[0]["x"] == 5
        # a predictor that raises mid-stream: the chunks before it, then its typed error
        got: list[Any] = []
        with pytest.raises(ApiError, match="the stream broke at chunk 2") as exc:
            for chunk in client.stream("echo", [1], chunks=5, fail_at=2):
                got.append(chunk)
        assert got == [{"i": 0, "n": 1}, {"i": 1, "n": 1}] and exc.value.status >= 400


# -- Open Inference Protocol V2 (SPEC 11) ----------------------------------------------


def test_infer_numpy_in_and_out(server):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with Client(server.url) as client:
        out = client.infer("echo", {"input-0": x}, parameters={"double": True})
        assert list(out) == ["output_0"]
        np.testing.assert_array_equal(out["output_0"], 2 * x)
        same = client.infer(
            "echo", {"x": x}, version="v1", outputs=["output_0"], parameters={"double": True}
        )
        np.testing.assert_array_equal(same["output_0"], 2 * x)
        with pytest.raises(BadRequestError) as exc:  # V2 errors: {"error": "..."} with 400
            client.infer("echo", {"a": x, "b": x}, parameters={"double": True})
        assert exc.value.message and exc.value.status == 400
        with pytest.raises(NotFoundError, match="nope"):
            client.infer("nope", {"x": x})
