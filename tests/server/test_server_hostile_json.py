"""Each cause of the 500s found by fuzzing is now a clear 4xx, and the server stays up.

Plus property-based fuzzing (hypothesis, bounded to a few seconds per route family) of the
predict and management routes of a real server: never a 5xx, always a JSON error body.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictor_runtime.codecs import MAX_JSON_DEPTH, exceeds_depth, nesting_depth

PREDICT = "/v1/models/echo:predict"


def post_raw(live: Any, body: bytes, path: str = PREDICT) -> httpx.Response:
    return httpx.post(live.url + path, content=body, headers={"content-type": "application/json"})


def assert_healthy(live: Any) -> None:
    assert httpx.get(live.url + "/healthz").status_code == 200
    ok = httpx.post(live.url + PREDICT, json={"instances": ["still-up"]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["id"] == "still-up"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1100, 100_000])
def test_deep_nesting_is_400_before_parsing(live: Any, depth: int) -> None:
    body = b'{"instances":' + b"[" * depth + b"]" * depth + b"}"
    r = post_raw(live, body)
    assert r.status_code == 400
    assert f"deeper than {MAX_JSON_DEPTH} levels" in r.json()["error"]
    r = post_raw(
        live,
        b'{"name": "m", "labels": ' + b"[" * depth + b"]" * depth + b"}",
        "/v1/projects/p/models",
    )
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert_healthy(live)


def test_nesting_at_the_limit_is_served(live: Any) -> None:
    inner = MAX_JSON_DEPTH - 4  # {"instances": [ ... ]} and the echo's own wrapping
    body = b'{"instances":[' + b"[" * inner + b"1" + b"]" * inner + b"]}"
    assert post_raw(live, body).status_code == 200


def test_depth_scan_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a": "[[[[[[", "b": [["\\"]]]"]]}') == 3
    assert nesting_depth(b'["\\\\", [1]]') == 2
    text = json.dumps({"s": "[" * 500, "instances": [[1]]}).encode()
    assert not exceeds_depth(text)


@pytest.mark.parametrize(
    "body",
    [
        b'{"\\ud800":1}',
        b'{"\xed\xa0\x80":1}',
        b'{"instances":["\\udc00", NaN]}',
        b'{"instances":["\xff"]}',
        b'{"\\ud800": NaN}',
    ],
)
def test_lone_surrogates_and_invalid_utf8_are_400(live: Any, body: bytes) -> None:
    r = post_raw(live, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("Invalid JSON in request body")
    assert_healthy(live)


def test_big_integer_next_to_nan_is_written_exactly(live: Any) -> None:
    r = post_raw(live, b'{"instances":[1180591620717411303424,NaN]}')
    assert r.status_code == 200, r.text
    assert b'"id":1180591620717411303424' in r.content
    assert [p["id"] for p in r.json()["predictions"]] == [1180591620717411303424, None]


class Unencodable:
    """Returns what JSON cannot hold for the instance named after it."""

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        out: list[Any] = []
        for inst in instances:
            if inst == "surrogate":
                out.append("bad \udcff text")
            elif inst == "deep":
                value: Any = 1
                for _ in range(300):
                    value = [value]
                out.append(value)
            elif inst == "object":
                out.append(object())
            else:
                out.append(inst)
        return out


@pytest.mark.parametrize(
    ("what", "reason"),
    [("surrogate", "not valid Unicode"), ("deep", "nest too deeply"), ("object", "object")],
)
def test_unencodable_output_is_a_prediction_failure(
    live_factory: Any, what: str, reason: str
) -> None:
    srv = live_factory(predictor=Unencodable())
    r = httpx.post(srv.url + PREDICT, json={"instances": [1, what]})
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert message.startswith("Prediction failed: the output of instance 1 cannot be written")
    assert reason in message


def test_error_messages_with_surrogates_stay_json(live: Any) -> None:
    r = post_raw(live, b'{"\\ud83d\\ude00": 1, "x\\ud83d\\ude00": NaN}')
    assert r.status_code == 400
    assert "instances" in r.json()["error"]


def _containers(children: Any, size: int) -> Any:
    """Lists and objects of ``children`` (a named function: hypothesis reads its source)."""
    return st.lists(children, max_size=size) | st.dictionaries(
        st.text(max_size=size), children, max_size=size
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=st.recursive(
        st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
        lambda children: _containers(children, 3),
        max_leaves=40,
    ),
    limit=st.integers(min_value=0, max_value=30),
)
def test_depth_check_agrees_with_an_exact_count(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    assert exceeds_depth(body, limit) == (nesting_depth(body) > limit)


def test_numeric_fast_path_hands_hostile_bodies_to_the_general_path() -> None:
    from predictor_runtime import fastparse

    if not fastparse.available():
        pytest.skip("pysimdjson is not installed")
    rows = b",".join([b"[1,2]"] * 2000)
    for body in (
        b'{"instances":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"instances":[' + rows + b",[3,1180591620717411303424]]}",
    ):
        assert fastparse.numeric_instances(body) is None


# -- property-based fuzzing ------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: _containers(children, 4),
    max_leaves=20,
)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


PREDICT_BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(encode),
    st.builds(
        lambda inst, kw: encode({"instances": inst, **kw}),
        st.lists(JSON_VALUES, max_size=4),
        st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2),
    ),
    st.integers(min_value=1, max_value=3000).map(
        lambda n: b'{"instances":' + b"[" * n + b"]" * n + b"}"
    ),
    st.sampled_from(
        [
            b'{"instances":[1e999]}',
            b'{"instances":[-Infinity]}',
            b'{"instances":["\\ud800"]}',
            b"\xef\xbb\xbf{}",
            b'{"instances":[{"b64":"!!"}]}',
        ]
    ),
)

MGMT_BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(encode),
    st.builds(
        lambda name, uri, extra: encode({"name": name, "deploymentUri": uri, **extra}),
        st.one_of(st.text(max_size=10), JSON_VALUES),
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(["/", "file:///", "gs://x", "/nonexistent", "file://localhost/tmp"]),
            JSON_VALUES,
        ),
        st.dictionaries(
            st.sampled_from(
                [
                    "labels",
                    "framework",
                    "packageUris",
                    "predictionClass",
                    "description",
                    "etag",
                    "autoScaling",
                    "manualScaling",
                    "requestLoggingConfig",
                ]
            ),
            JSON_VALUES,
            max_size=3,
        ),
    ),
)
MGMT_ROUTES = [
    ("POST", "/v1/projects/p/models"),
    ("PATCH", "/v1/projects/p/models/echo?updateMask=description,labels"),
    ("POST", "/v1/projects/p/models/echo/versions"),
    (
        "PATCH",
        "/v1/projects/p/models/echo/versions/v1?updateMask=labels,description,requestLoggingConfig",
    ),
    ("POST", "/v1/projects/p/models/echo/versions/v1:setDefault"),
    ("DELETE", "/v1/projects/p/models/fuzz"),
]
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


def check_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if r.status_code >= 400:
        assert "error" in body


def test_fuzz_predict_never_5xx(live: Any) -> None:
    with httpx.Client(base_url=live.url) as client:

        @FUZZ
        @given(body=PREDICT_BODIES)
        def run(body: bytes) -> None:
            check_answer(
                client.post(PREDICT, content=body, headers={"content-type": "application/json"})
            )

        run()
    assert_healthy(live)


def test_fuzz_management_never_5xx(live_factory: Any, tmp_path: Any) -> None:
    srv = live_factory(state_dir=tmp_path / "state")
    with httpx.Client(base_url=srv.url) as client:

        @FUZZ
        @given(route=st.sampled_from(MGMT_ROUTES), body=MGMT_BODIES)
        def run(route: tuple[str, str], body: bytes) -> None:
            method, path = route
            check_answer(
                client.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
            )

        run()
    assert_healthy(srv)


class NumericIdentity:
    """Takes the numeric fast path (``numeric_instances``); returns rows as lists."""

    numeric_instances = True

    def predict(self, instances: Any, **kwargs: Any) -> list[Any]:
        return [list(row) if hasattr(row, "__iter__") else row for row in instances]


HOSTILE_TOKENS = [
    b"1180591620717411303424", b"1e999", b"NaN", b"-Infinity", b'"\\ud800"', b'"\xff"',
    b"[" * 2000 + b"1" + b"]" * 2000, b"null", b"true", b'{"b64": "AA=="}', b"[]", b"-0",
]  # fmt: skip


def test_fuzz_numeric_fast_path_never_5xx(live_factory: Any) -> None:
    srv = live_factory(predictor=NumericIdentity())
    with httpx.Client(base_url=srv.url) as client:

        @FUZZ
        @given(
            rows=st.integers(min_value=1, max_value=900),
            at=st.integers(min_value=0, max_value=10_000),
            token=st.sampled_from(HOSTILE_TOKENS),
        )
        def run(rows: int, at: int, token: bytes) -> None:
            values = [b"[%d.5,2]" % i for i in range(rows)]
            i = at % rows
            values[i] = b"[" + token + b",2]"
            body = b'{"instances":[' + b",".join(values) + b"]}"
            check_answer(client.post(PREDICT, content=body))

        run()
    ok = httpx.post(srv.url + PREDICT, json={"instances": [[1.0, 2.0]] * 600})
    assert ok.status_code == 200 and ok.json()["predictions"][0] == [1.0, 2.0]


def test_v2_infer_refuses_deep_and_big_integer_bodies(live: Any) -> None:
    path = "/v2/models/echo/infer"
    deep = b'{"inputs":' + b"[" * 3000 + b"]" * 3000 + b"}"
    r = post_raw(live, deep, path)
    assert r.status_code == 400 and "deeper than" in r.json()["error"]
    pad = b'"' + b"p" * 5000 + b'"'
    big = b'{"id":' + pad + b',"inputs":[{"name":"x","shape":[1],"datatype":"INT64",'
    r = post_raw(live, big + b'"data":[1180591620717411303424]}]}', path)
    assert r.status_code < 500, r.text
    assert_healthy(live)


def test_raw_garbage_on_the_socket_leaves_the_server_up(live: Any) -> None:
    host, port = live.url.removeprefix("http://").split(":")
    for garbage in (
        b"\x00\xff" * 100 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n",
        b"POST " + b"/" * 70000 + b" HTTP/1.1\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(garbage)
            s.recv(1024)
    assert_healthy(live)
