"""Every status code of the HTTP API, against a real server over real HTTP (httpx)."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

PREDICT_PATHS = [
    "/v1/projects/p1/models/echo:predict",
    "/v1/projects/p1/models/echo/versions/v1:predict",
    "/v1/models/echo:predict",
    "/v1/models/echo/versions/v1:predict",
]


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_predict_routes_200(live, path):
    r = httpx.post(live.url + path, json={"instances": ["a", "b"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert [p["id"] for p in r.json()["predictions"]] == ["a", "b"]


def test_google_client_query_params_are_ignored(live):
    url = live.url + PREDICT_PATHS[0] + "?alt=json&prettyPrint=false&fields=predictions"
    r = httpx.post(url, json={"instances": ["x"]})
    assert r.status_code == 200
    assert r.json()["predictions"][0]["id"] == "x"


def test_kwargs_reach_the_predictor(live):
    r = httpx.post(live.url + PREDICT_PATHS[2], json={"instances": ["x"], "probabilities": True})
    assert r.json()["predictions"][0]["kw"] == {"probabilities": True}


def test_nan_literal_accepted(live):
    r = httpx.post(live.url + PREDICT_PATHS[2], content=b'{"instances": [NaN]}')
    assert r.status_code == 200
    assert r.json() == {
        "predictions": [{"id": None, "kw": {}, "pid": r.json()["predictions"][0]["pid"]}]
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"instances": []}', "must not be empty"),
        (b'{"rows": [1]}', 'missing "instances"'),
        (b"[1, 2]", "expected an object"),
    ],
)
def test_400_bad_request_body(live, body, needle):
    r = httpx.post(live.url + PREDICT_PATHS[0], content=body)
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert set(r.json()) == {"error"}


def test_400_bad_instance_names_it(live):
    r = httpx.post(live.url + PREDICT_PATHS[0], json={"instances": ["ok", "ok", "bad"]})
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid inputs: instance 2: this row is bad"}


def test_400_predictor_exception(live):
    r = httpx.post(live.url + PREDICT_PATHS[0], json={"instances": ["boom"]})
    assert r.status_code == 400
    assert r.json() == {"error": "Prediction failed: ValueError: boom"}


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/v1/models/nope:predict", "Model not found: nope"),
        ("/v1/projects/p/models/nope/versions/v1:predict", "Model not found: nope"),
        ("/v1/models/echo/versions/v9:predict", "Version not found: v9"),
    ],
)
def test_404_unknown_model_or_version(live, path, needle):
    r = httpx.post(live.url + path, json={"instances": [1]})
    assert r.status_code == 404
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    "path", ["/", "/v3/models/echo/infer", "/v1/models/echo:explain", "/v1/models/echo/x/y"]
)
def test_404_unknown_route_uses_google_envelope(live, path):
    r = httpx.post(live.url + path, json={"instances": [1]})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == 404 and err["status"] == "NOT_FOUND"
    assert "html" not in r.headers["content-type"]


def test_405_wrong_method(live):
    r = httpx.get(live.url + PREDICT_PATHS[0])
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert "error" in r.json()
    r = httpx.delete(live.url + "/healthz")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]


def test_413_by_content_length(live_factory):
    srv = live_factory(max_request_bytes=1000)
    body = orjson.dumps({"instances": ["x" * 2000]})
    with httpx.Client() as client:
        r = client.post(srv.url + PREDICT_PATHS[0], content=body)
        assert r.status_code == 413
        assert "limit is 1000 bytes" in r.json()["error"]
        # the same connection stays usable (the rest of the body was drained)
        r = client.post(srv.url + PREDICT_PATHS[0], json={"instances": ["ok"]})
        assert r.status_code == 200
    assert srv.predictor().calls == [(["ok"], {})]


def test_413_by_content_length_before_reading_body(live_factory):
    """The answer comes from the header alone: the body is never sent."""
    srv = live_factory(max_request_bytes=1000)
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
        )
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 413")


def test_413_by_chunked_body(live_factory):
    srv = live_factory(max_request_bytes=1000)

    def chunks():
        yield b'{"instances": ["'
        for _ in range(5):
            yield b"y" * 300
        yield b'"]}'

    with httpx.Client() as client:
        r = client.post(srv.url + PREDICT_PATHS[0], content=chunks())
        assert r.status_code == 413
        assert "limit is 1000 bytes" in r.json()["error"]
    assert srv.predictor().calls == []


def test_chunked_body_under_limit_is_accepted(live):
    def chunks():
        yield b'{"instances": '
        yield b'["a", "b"]}'

    r = httpx.post(live.url + PREDICT_PATHS[0], content=chunks())
    assert r.status_code == 200
    assert [p["id"] for p in r.json()["predictions"]] == ["a", "b"]


def test_503_while_version_not_ready(live):
    live.registry.add_version("echo", "v2", deployment_uri="/somewhere")  # CREATING
    r = httpx.post(live.url + "/v1/models/echo/versions/v2:predict", json={"instances": [1]})
    assert r.status_code == 503
    assert "not ready" in r.json()["error"]
    assert httpx.get(live.url + "/readyz").status_code == 503
    assert httpx.get(live.url + "/healthz").status_code == 200
    r = httpx.get(live.url + "/v1/projects/p/models/echo/versions/v2")
    assert r.json()["state"] == "CREATING"


def test_500_runtime_bug_is_json_without_traceback(live, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(live.registry, "version", broken)
    r = httpx.post(live.url + PREDICT_PATHS[0], json={"instances": [1]})
    assert r.status_code == 500
    assert r.json() == {"error": "Internal error: RuntimeError: registry exploded"}
    assert "Traceback" not in r.text


def test_500_unserializable_prediction(live_factory):
    class Weird:
        def predict(self, instances, **kwargs):
            return [object() for _ in instances]

        @classmethod
        def from_path(cls, model_dir):
            return cls()

    srv = live_factory(predictor=Weird())
    r = httpx.post(srv.url + PREDICT_PATHS[0], json={"instances": [1]})
    assert r.status_code == 500
    assert "problem processing the outputs" in r.json()["error"]


def test_healthz_readyz(live):
    assert httpx.get(live.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(live.url + "/readyz")
    assert r.status_code == 200


def test_models_and_versions_routes(live):
    base = live.url + "/v1/projects/proj"
    httpx.post(live.url + PREDICT_PATHS[0], json={"instances": [1]})
    models = httpx.get(base + "/models").json()["models"]
    assert [m["name"] for m in models] == ["projects/proj/models/echo"]
    model = httpx.get(base + "/models/echo").json()
    assert model["defaultVersion"]["name"] == "projects/proj/models/echo/versions/v1"
    assert model["defaultVersion"]["isDefault"] is True
    versions = httpx.get(base + "/models/echo/versions").json()["versions"]
    assert [v["state"] for v in versions] == ["READY"]
    version = httpx.get(base + "/models/echo/versions/v1").json()
    assert version["state"] == "READY"
    assert version["createTime"].endswith("Z") and version["lastUseTime"].endswith("Z")
    for path, status in [
        ("/models/nope", "NOT_FOUND"),
        ("/models/nope/versions", "NOT_FOUND"),
        ("/models/echo/versions/v9", "NOT_FOUND"),
    ]:
        r = httpx.get(base + path)
        assert r.status_code == 404
        assert r.json()["error"]["status"] == status
        assert r.json()["error"]["code"] == 404
    r = httpx.post(base + "/models/echo/versions/v1", json={})
    assert r.status_code == 405
    assert r.json()["error"]["code"] == 405


def test_metrics_contents(live):
    url = live.url + PREDICT_PATHS[0]
    assert httpx.post(url, json={"instances": ["a", "b", "c"]}).status_code == 200
    assert httpx.post(url, json={"instances": ["boom"]}).status_code == 400
    httpx.post(live.url + "/v1/models/ghost:predict", json={"instances": [1]})
    r = httpx.get(live.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'predictor_requests_total{code="200",model="echo",version="v1"} 1.0' in text
    assert 'predictor_requests_total{code="400",model="echo",version="v1"} 1.0' in text
    assert 'predictor_request_errors_total{code="400",model="echo",version="v1"} 1.0' in text
    assert 'predictor_requests_total{code="404",model="",version=""} 1.0' in text
    assert 'predictor_request_duration_seconds_count{model="echo",version="v1"} 2.0' in text
    assert 'predictor_batch_size_rows_bucket{le="4.0",model="echo",version="v1"}' in text
    assert 'predictor_batch_size_rows_sum{model="echo",version="v1"} 3.0' in text


def test_route_table_resolves_predict_and_resources(live):
    router = live.app.router

    def hit(method, path):
        found = router.match(path).for_method(method)
        return None if found is None else (found[0].pattern, found[1])

    assert hit("POST", "/v1/projects/p/models/m:predict") == (
        "/v1/projects/{project}/models/{model}:predict",
        {"project": "p", "model": "m"},
    )
    assert hit("POST", "/v1/models/m/versions/v:predict")[1] == {"model": "m", "version": "v"}
    assert hit("GET", "/v1/projects/p/models")[1] == {"project": "p"}
    assert hit("GET", "/v1/projects/p/models/m/versions/v/")[1] == {
        "project": "p",
        "model": "m",
        "version": "v",
    }
    assert hit("GET", "/v1/projects/p/operations/op1")[1] == {"project": "p", "operation": "op1"}
    assert hit("POST", "/v1/projects/p/models/m/versions/v:setDefault") is not None
    assert router.match("/v1/projects/p/models/m:frobnicate").routes == ()
    assert router.match("/v1//models/m:predict").routes == ()
    assert router.match("/v1/projects/p/models/m:predict").allow() == "POST"


def test_disconnecting_client_does_not_wedge(live_factory):
    srv = live_factory(max_batch_size=8)
    port = int(srv.url.rsplit(":", 1)[1])
    body = orjson.dumps({"instances": ["slow"]})
    # a client that sends a slow request and goes away at once
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(
                b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
    # a client that times out
    with pytest.raises(httpx.TimeoutException):
        httpx.post(srv.url + PREDICT_PATHS[0], json={"instances": ["slow"]}, timeout=0.05)
    # later requests are served (the first slow call may still be running: <= 1 s)
    started = time.monotonic()
    r = httpx.post(srv.url + PREDICT_PATHS[0], json={"instances": ["after"]}, timeout=10)
    assert r.status_code == 200
    assert r.json()["predictions"][0]["id"] == "after"
    assert time.monotonic() - started < 3.5
