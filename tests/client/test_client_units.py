"""Pieces of the client that need no server: SSE framing, error bodies, backoff, bodies."""

from __future__ import annotations

import email.utils
import time

import numpy as np
import pytest

from predictor_runtime.client import ApiError, BadRequestError, NotFoundError, _base
from predictor_runtime.client._errors import error_from_response, parse_retry_after


def test_sse_decoder_joins_data_lines_and_skips_comments_and_other_fields():
    dec = _base.SSEDecoder()
    lines = [": keep-alive", "event: message", "id: 1", 'data: {"a":', "data: 1}", "", "", "data:x"]
    events = [e for e in map(dec.feed, lines) if e is not None]
    assert events == ['{"a":\n1}'] and dec.flush() == "x" and dec.flush() is None


def test_stream_events_unwrap_chunks_and_raise_failures():
    ok = (
        '{"status": "SUCCESS", "result": {"result": [1, 2]}, "traceback": null, "status_code": 200}'
    )
    assert _base.stream_event(ok) == [1, 2]
    bad = (
        '{"status": "FAILURE", "result": null, "traceback": "ValueError: nope", "status_code": 400}'
    )
    with pytest.raises(BadRequestError, match="ValueError: nope"):
        _base.stream_event(bad)


def test_task_outcomes():
    assert _base.task_outcome({"status": "PENDING"}) == ("PENDING", None, None)
    done = {"status": "SUCCESS", "result": {"result": {"predictions": [3]}}}
    assert _base.task_outcome(done) == ("SUCCESS", [3], None)
    status, value, error = _base.task_outcome(
        {"status": "FAILURE", "traceback": "Traceback...\nValueError: x", "status_code": 404}
    )
    assert status == "FAILURE" and value is None and isinstance(error, NotFoundError)


@pytest.mark.parametrize(
    ("body", "message", "reason"),
    [
        (b'{"error": "Prediction failed: boom"}', "Prediction failed: boom", None),
        (
            b'{"error": {"code": 404, "message": "no model m", "status": "NOT_FOUND"}}',
            "no model m",
            "NOT_FOUND",
        ),
        (b"upstream timed out", "upstream timed out", None),
        (b"", "Bad Gateway", None),
        (b'{"error": {"code": 500}}', "Bad Gateway", None),
    ],
)
def test_both_error_envelopes_and_plain_text(body, message, reason):
    err = error_from_response(502, body, {}, "Bad Gateway")
    assert type(err) is ApiError and err.status == 502
    assert err.message == message and err.reason == reason


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(later) <= 30  # type: ignore[operator]


def test_backoff_is_jittered_exponential_and_capped():
    s = _base.Settings(
        "http://h/", api_key="k", timeout=1, retries=3, backoff=0.5, max_backoff=2.0,
        project="p", headers=None,
    )  # fmt: skip
    for attempt, full in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 2.0)]:
        delays = [s.delay(attempt, None) for _ in range(200)]
        assert min(delays) >= full / 2 and max(delays) <= full and len(set(delays)) > 1
    assert s.delay(0, 7.0) == 7.0 and s.delay(0, 600.0) == _base.MAX_RETRY_AFTER
    assert s.headers["authorization"] == "Bearer k" and s.base_url == "http://h"
    with pytest.raises(ValueError, match="retries"):
        _base.Settings(
            "http://h",
            api_key=None,
            timeout=1,
            retries=-1,
            backoff=0,
            max_backoff=0,
            project="-",
            headers=None,
        )


def test_request_bodies():
    body = _base.task_request(np.array([[1.5, 2.0]]), {"k": 1}, "http://cb", {"kind": "basic"})
    assert (
        body
        == b'{"args":{"instances":[[1.5,2.0]],"k":1},"callback_url":"http://cb","callback_auth":{"kind":"basic"}}'
    )
    with pytest.raises(TypeError, match="got dict"):
        _base.predict_request({"a": 1}, {})
    s = _base.Settings(
        "http://h",
        api_key=None,
        timeout=1,
        retries=0,
        backoff=0,
        max_backoff=0,
        project="my proj",
        headers=None,
    )
    assert s.predict_path("m/x", "v 1") == "/v1/models/m%2Fx/versions/v%201:predict"
    assert (
        s.operation_path({"name": "projects/p/operations/op1"}) == "/v1/projects/p/operations/op1"
    )
    assert s.versions_path("m") == "/v1/projects/my%20proj/models/m/versions"
