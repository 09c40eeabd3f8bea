"""One shape per resource: what a write answers (and records) is what GET then shows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import start_live_server

P = "/v1/projects/p"


@pytest.fixture
def srv(tmp_path: Any) -> Any:
    server = start_live_server(state_dir=tmp_path / "state")
    try:
        yield server
    finally:
        server.stop()


def without_type(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "@type"}


def test_model_patch_operation_equals_get(srv: Any) -> None:
    with httpx.Client(base_url=srv.url) as c:
        # a prediction sets lastUseTime in memory only; the answer must still match GET
        assert c.post("/v1/models/echo:predict", json={"instances": ["a"]}).status_code == 200
        r = c.patch(
            f"{P}/models/echo",
            params={"updateMask": "description,labels"},
            json={"description": "patched", "labels": {"team": "a"}},
        )
        assert r.status_code == 200, r.text
        op = r.json()
        assert op["done"] is True and op["metadata"]["operationType"] == "UPDATE_MODEL"
        assert op["response"]["@type"] == "type.googleapis.com/google.cloud.ml.v1.Model"
        got = c.get(f"{P}/models/echo").json()
        assert without_type(op["response"]) == got
        assert got["description"] == "patched" and got["labels"] == {"team": "a"}
        assert "lastUseTime" in got["defaultVersion"]
        # the operation was recorded with its response (not completed in a second step)
        assert c.get("/v1/" + op["name"]).json() == op


def test_version_patch_operation_equals_get(srv: Any) -> None:
    with httpx.Client(base_url=srv.url) as c:
        r = c.patch(
            f"{P}/models/echo/versions/v1",
            params={"updateMask": "labels"},
            json={"labels": {"stage": "prod"}},
        )
        assert r.status_code == 200, r.text
        op = r.json()
        got = c.get(f"{P}/models/echo/versions/v1").json()
        assert without_type(op["response"]) == got == op["metadata"]["version"]
        assert got["labels"] == {"stage": "prod"} and got["isDefault"] is True
        listed = c.get(f"{P}/models/echo/versions").json()["versions"]
        assert listed == [got]
        assert c.get(f"{P}/models/echo").json()["defaultVersion"] == got


def test_create_and_set_default_answer_what_get_shows(srv: Any) -> None:
    with httpx.Client(base_url=srv.url) as c:
        created = c.post(f"{P}/models", json={"name": "shop", "labels": {"a": "b"}})
        assert created.status_code == 200, created.text
        assert created.json() == c.get(f"{P}/models/shop").json()
        answer = c.post(f"{P}/models/echo/versions/v1:setDefault")
        assert answer.status_code == 200, answer.text
        assert answer.json() == c.get(f"{P}/models/echo/versions/v1").json()


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/models/nope", 'The model resource: "nope" was not found.'),
        (
            "GET",
            "/models/echo/versions/v9",
            'The version resource: "v9" (model echo) was not found.',
        ),
        (
            "PATCH",
            "/models/echo/versions/v9",
            'The version resource: "v9" (model echo) was not found.',
        ),
        ("POST", "/models/nope/versions", 'Field: parent Error: The model resource: "nope"'),
        ("GET", "/operations/nope", 'The operation "nope" was not found.'),
    ],
)
def test_not_found_messages(srv: Any, method: str, path: str, message: str) -> None:
    body = {"name": "v1", "deploymentUri": "/x"} if method == "POST" else {}
    r = httpx.request(method, srv.url + P + path, json=body, params={"updateMask": "labels"})
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["status"] == "NOT_FOUND" and message in err["message"], err
