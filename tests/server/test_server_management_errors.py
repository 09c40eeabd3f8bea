"""Validation errors of the models/versions routes, over plain HTTP (httpx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import start_live_server

BASE = "/v1/projects/p/models"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_live_server(state_dir=tmp_path_factory.mktemp("state"))
    try:
        yield server
    finally:
        server.stop()


def check(r: httpx.Response, code: int, status: str, *needles: str) -> None:
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["status"] == status, err
    for needle in needles:
        assert needle in err["message"], err["message"]


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (b"{not json", ["Invalid JSON payload"]),
        (b"[1]", ["must be an object"]),
        (b'{"description": "x"}', ["model.name", "required"]),
        (b'{"name": "9lives"}', ["model.name", "start with a letter"]),
        (b'{"name": "has-dash"}', ["model.name"]),
        (b'{"name": "ok", "colour": "red"}', ['Unknown name "colour"']),
        (b'{"name": "ok", "labels": {"a": 1}}', ["model.labels"]),
        (b'{"name": "ok", "description": 5}', ["model.description"]),
    ],
)
def test_create_model_400(srv, body, needles):
    check(httpx.post(srv.url + BASE, content=body), 400, "INVALID_ARGUMENT", *needles)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"deploymentUri": "/x"}, ["version.name", "required"]),
        ({"name": "v-1", "deploymentUri": "/x"}, ["version.name", "letters, numbers"]),
        ({"name": "v1"}, ["version.deploymentUri"]),
        ({"name": "v1", "deploymentUri": "gs://bucket/m"}, ["version.deploymentUri", "gs://"]),
        ({"name": "v1", "deploymentUri": "/x", "framework": "PYTORCH"}, ["version.framework"]),
        ({"name": "v1", "deploymentUri": "/x", "bogus": 1}, ['Unknown name "bogus"']),
        (
            {
                "name": "v1",
                "deploymentUri": "/x",
                "requestLoggingConfig": {"samplingPercentage": 2},
            },
            ["requestLoggingConfig", "samplingPercentage"],
        ),
        (
            {
                "name": "v1",
                "deploymentUri": "/x",
                "requestLoggingConfig": {"samplingPercentage": 1},
            },
            ["requestLoggingConfig", "bigqueryTableName"],
        ),
        (
            {"name": "v1", "deploymentUri": "/x", "autoScaling": {}, "manualScaling": {}},
            ["not both"],
        ),
        ({"name": "v1", "deploymentUri": "/x", "manualScaling": {"nodes": -1}}, ["nodes"]),
        ({"name": "v1", "deploymentUri": "/x", "packageUris": "a.tar.gz"}, ["packageUris"]),
    ],
)
def test_create_version_400(srv, body, needles):
    check(
        httpx.post(srv.url + BASE + "/echo/versions", json=body), 400, "INVALID_ARGUMENT", *needles
    )


def test_not_found_and_conflicts(srv, tmp_path: Path):
    url = srv.url + BASE
    check(httpx.post(url + "/ghost/versions", json={"name": "v1", "deploymentUri": "/x"}),
          404, "NOT_FOUND", "ghost")  # fmt: skip
    check(httpx.get(url + "/ghost"), 404, "NOT_FOUND", "ghost")
    check(httpx.get(url + "/echo/versions/v9"), 404, "NOT_FOUND", "v9")
    check(httpx.delete(url + "/echo/versions/v9"), 404, "NOT_FOUND", "v9")
    check(httpx.post(url + "/echo/versions/v9:setDefault"), 404, "NOT_FOUND", "v9")
    check(httpx.get(srv.url + "/v1/projects/p/operations/nope"), 404, "NOT_FOUND", "nope")
    check(httpx.post(url + "/echo/versions", json={"name": "v1", "deploymentUri": str(tmp_path)}),
          409, "ALREADY_EXISTS", "v1")  # fmt: skip
    r = httpx.put(url + "/echo")
    check(r, 405, "UNIMPLEMENTED")
    assert r.headers["allow"] == "DELETE, GET, HEAD, PATCH"


def test_patch_errors(srv):
    url = srv.url + BASE + "/echo/versions/v1"
    check(httpx.patch(url, json={"description": "x"}), 400, "INVALID_ARGUMENT", "updateMask")
    check(httpx.patch(url + "?updateMask=deploymentUri", json={}), 400, "INVALID_ARGUMENT",
          "deploymentUri cannot be updated")  # fmt: skip
    check(httpx.patch(url + "?updateMask=requestLoggingConfig",
                      json={"requestLoggingConfig": {"bigqueryTableName": "a b"}}),
          400, "INVALID_ARGUMENT", "bigqueryTableName")  # fmt: skip
    before = httpx.get(url).json()
    r = httpx.patch(url + "?updateMask=description", json={"description": "x", "etag": "stale"})
    check(r, 409, "ABORTED", "etag")
    assert httpx.get(url).json() == before  # nothing changed, etag included
    r = httpx.patch(url + "?update_mask=description", json={"description": "y", **before})
    assert r.status_code == 200 and r.json()["done"] is True
    after = httpx.get(url).json()
    assert after["description"] == "y" and after["etag"] != before["etag"]


def test_default_version_and_model_deletion_rules(srv):
    url = srv.url + BASE
    assert httpx.post(url, json={"name": "solo"}).status_code == 200
    check(httpx.post(url, json={"name": "solo"}), 409, "ALREADY_EXISTS", "solo")
    r = httpx.post(url + "/solo/versions", json={"name": "a", "deploymentUri": "/nope"})
    assert r.status_code == 200
    check(httpx.delete(url + "/solo"), 400, "FAILED_PRECONDITION", "versions")
    assert httpx.get(url + "/solo").json()["defaultVersion"]["name"].endswith("/a")
    assert httpx.delete(url + "/solo/versions/a").status_code == 200  # the only one: allowed
    assert "defaultVersion" not in httpx.get(url + "/solo").json()
    op = httpx.delete(url + "/solo").json()
    assert op["done"] and op["response"]["@type"].endswith("protobuf.Empty")
    got = httpx.get(srv.url + "/v1/projects/p/operations/" + op["name"].rsplit("/", 1)[1])
    assert got.json() == op
