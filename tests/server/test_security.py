"""SPEC 13 on a real server: the api key, Origin (CORS) and Host (DNS rebinding) checks."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from conftest import start_live_server

from predictor_runtime.server.context import ServerOptionsView
from predictor_runtime.server.security import Guard, bind_warning, is_loopback, split_host

KEY = "s3cret-key"
PREDICT = "/v1/models/echo:predict"
MODELS = "/v1/projects/p/models"


@pytest.fixture
def keyed() -> Any:
    srv = start_live_server(options=ServerOptionsView(api_key=KEY))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def cors() -> Any:
    srv = start_live_server(options=ServerOptionsView(cors_origins=("https://app.example",)))
    try:
        yield srv
    finally:
        srv.stop()


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_google(r: httpx.Response, code: int, status: str) -> str:
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["status"] == status
    return str(err["message"])


@pytest.mark.parametrize(
    "auth", [f"Bearer {KEY}", f"bearer {KEY}", basic(KEY), basic(KEY, "anything")]
)
def test_api_key_accepted_as_bearer_or_basic_user(keyed: Any, auth: str) -> None:
    r = httpx.post(keyed.url + PREDICT, json={"instances": [1]}, headers={"authorization": auth})
    assert r.status_code == 200 and r.json()["predictions"][0]["id"] == 1
    assert httpx.get(keyed.url + MODELS, headers={"authorization": auth}).status_code == 200


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong", f"Bearer {KEY}x", basic("wrong", KEY), "Basic !!!", f"Token {KEY}"],
)
def test_missing_or_wrong_key_is_401_in_googles_envelope(keyed: Any, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    for method, path in (("POST", PREDICT), ("GET", MODELS), ("GET", "/metrics"), ("GET", "/x")):
        r = httpx.request(method, keyed.url + path, json={"instances": [1]}, headers=headers)
        message = assert_google(r, 401, "UNAUTHENTICATED")
        assert ("missing" if auth is None else "wrong") in message
        assert KEY not in r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert keyed.predictor().calls == []


def test_health_routes_need_no_key(keyed: Any) -> None:
    assert httpx.get(keyed.url + "/healthz").status_code == 200
    assert httpx.get(keyed.url + "/readyz").status_code == 200


def test_guard_compares_keys_in_constant_time(monkeypatch: Any) -> None:
    import hmac

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    guard = Guard(api_key=KEY)
    scope = {"headers": [(b"authorization", b"Bearer nope")], "method": "GET", "server": None}
    refused, _ = guard.check(scope, public=False)
    assert refused is not None and refused.status == 401
    assert seen == [(b"nope", KEY.encode())]


def test_text_plain_post_from_another_origin_is_refused(live: Any) -> None:
    """The attack: any web page POSTs text/plain (no preflight) to the local server."""
    body = '{"name": "evil"}'
    for path in (MODELS, PREDICT):
        r = httpx.post(
            live.url + path,
            content=body,
            headers={"content-type": "text/plain", "origin": "http://evil.example"},
        )
        message = assert_google(r, 403, "PERMISSION_DENIED")
        assert "http://evil.example" in message and "--cors-origins" in message
    assert "evil" not in httpx.get(live.url + MODELS).text
    assert httpx.post(live.url + PREDICT, headers={"origin": "null"}, json={}).status_code == 403


def test_same_origin_and_no_origin_pass(live: Any) -> None:
    host = live.url.removeprefix("http://")
    ok = httpx.post(live.url + PREDICT, json={"instances": [1]}, headers={"origin": live.url})
    assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers
    assert httpx.post(live.url + PREDICT, json={"instances": [1]}).status_code == 200
    other_port = "http://" + host.split(":")[0] + ":1"
    assert httpx.get(live.url + MODELS, headers={"origin": other_port}).status_code == 403


def test_listed_origin_gets_cors_headers_and_preflight(cors: Any) -> None:
    origin = "https://app.example"
    r = httpx.post(cors.url + PREDICT, json={"instances": [1]}, headers={"origin": origin})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    pre = httpx.options(
        cors.url + MODELS,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == origin
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "authorization" in pre.headers["access-control-allow-headers"]
    bad = httpx.options(
        cors.url + MODELS,
        headers={"origin": "https://other.example", "access-control-request-method": "POST"},
    )
    assert_google(bad, 403, "PERMISSION_DENIED")


def test_dns_rebinding_host_refused_on_loopback_bind(live: Any) -> None:
    port = live.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "192.168.1.5"):
        r = httpx.get(live.url + MODELS, headers={"host": host})
        assert "DNS rebinding" in assert_google(r, 403, "PERMISSION_DENIED")
    # even when Origin and Host agree (the rebinding page is "same-origin" for the browser)
    r = httpx.post(
        live.url + PREDICT,
        json={"instances": [1]},
        headers={"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"},
    )
    assert r.status_code == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "app.localhost", f"[::1]:{port}"):
        assert httpx.get(live.url + MODELS, headers={"host": host}).status_code == 200


def test_non_loopback_bind_accepts_other_host_names() -> None:
    guard = Guard(bind_host="0.0.0.0")
    scope = {"headers": [(b"host", b"models.internal:8080")], "method": "GET", "server": None}
    assert guard.check(scope, public=False) == (None, ())


def test_loopback_names() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert is_loopback("x.localhost") and not is_loopback("0.0.0.0")
    assert not is_loopback("localhost.evil.example") and not is_loopback("10.0.0.1")
    assert split_host("[::1]:80") == "::1" and split_host("a.b:1") == "a.b"


def test_bind_warning() -> None:
    assert bind_warning("127.0.0.1", None) is None
    assert bind_warning("0.0.0.0", "key") is None
    warning = bind_warning("0.0.0.0", None)
    assert warning is not None and "--api-key" in warning and "WARNING" in warning


def test_serve_warns_on_open_bind_without_key(cli_server: Any, echo_model: Any) -> None:
    model_dir, pkg = echo_model()
    args = ["--model-dir", str(model_dir), "--prediction-class", "echo_predictor.EchoPredictor"]
    srv = cli_server([*args, "--package", str(pkg), "--host", "0.0.0.0"])
    assert srv.stop() == 0
    for reader in srv.readers:  # the output is complete once the pipes are drained
        reader.join(10)
    err = srv.output()
    assert "WARNING: listening on 0.0.0.0 without --api-key" in err
