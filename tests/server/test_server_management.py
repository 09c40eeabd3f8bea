"""The models/versions/operations API driven by Google's own client (googleapiclient).

The ``ml v1`` discovery document ships inside google-api-python-client
(``static_discovery=True``), and passing ``http=`` skips credentials, so this runs offline
against an in-process server whose state lives in ``tmp_path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httplib2
import pytest
from conftest import start_live_server
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

P = "projects/proj"


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = start_live_server(state_dir=tmp_path / "state")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ml(server: Any) -> Any:
    http = httplib2.Http(timeout=30)
    service = build(
        "ml", "v1", client_options={"api_endpoint": server.url}, static_discovery=True, http=http
    )
    try:
        yield service
    finally:
        service.close()
        http.close()


def wait_done(ml: Any, op: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Poll an operation like a deployment script would."""
    deadline = time.monotonic() + timeout
    while not op.get("done"):
        assert time.monotonic() < deadline, op
        time.sleep(0.05)
        op = ml.projects().operations().get(name=op["name"]).execute()
    return op


def sklearn_model(tmp_path: Path) -> Path:
    """A tiny scikit-learn model trained on the bundled iris data, saved as model.joblib."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    out = tmp_path / "sk"
    out.mkdir()
    joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y), out / "model.joblib")
    return out


def status_of(err: HttpError) -> tuple[int, str]:
    import json

    body = json.loads(err.content)["error"]
    return err.resp.status, body["status"]


def test_full_lifecycle_with_google_client(ml, echo_model, tmp_path):
    # trained first: a slow training between two calls would outlast the server's
    # keep-alive timeout and close httplib2's pooled connection
    sk_dir = sklearn_model(tmp_path)
    models = ml.projects().models()
    versions = models.versions()
    # model
    created = models.create(
        parent=P, body={"name": "shop", "description": "d", "labels": {"team": "a"}}
    ).execute()
    assert created["name"] == f"{P}/models/shop" and created["labels"] == {"team": "a"}
    names = [m["name"] for m in models.list(parent=P).execute()["models"]]
    assert f"{P}/models/shop" in names and f"{P}/models/echo" in names
    with pytest.raises(HttpError) as exc:
        models.create(parent=P, body={"name": "shop"}).execute()
    assert status_of(exc.value) == (409, "ALREADY_EXISTS")

    # version 1: custom prediction routine, loaded in the background
    model_dir, pkg = echo_model(load_seconds=0.3)
    op = versions.create(
        parent=f"{P}/models/shop",
        body={
            "name": "v1",
            "deploymentUri": f"file://{model_dir}",
            "predictionClass": "echo_predictor.EchoPredictor",
            "packageUris": [str(pkg)],
            "runtimeVersion": "2.11",
            "pythonVersion": "3.7",
            "manualScaling": {"nodes": 1},
        },
    ).execute()
    assert op["name"].startswith(f"{P}/operations/") and op["done"] is False
    meta = op["metadata"]
    assert meta["@type"] == "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"
    assert meta["operationType"] == "CREATE_VERSION"
    assert meta["modelName"] == f"{P}/models/shop"
    assert meta["version"]["state"] == "CREATING" and "createTime" in meta
    v1 = versions.get(name=f"{P}/models/shop/versions/v1").execute()
    assert v1["state"] == "CREATING"
    done = wait_done(ml, op)
    assert "error" not in done and done["response"]["state"] == "READY"
    assert done["metadata"]["endTime"] >= done["metadata"]["startTime"]
    v1 = versions.get(name=f"{P}/models/shop/versions/v1").execute()
    assert v1["state"] == "READY" and v1["isDefault"] is True
    assert v1["manualScaling"] == {"nodes": 1} and v1["runtimeVersion"] == "2.11"
    assert v1["createTime"].endswith("Z")
    assert models.get(name=f"{P}/models/shop").execute()["defaultVersion"]["name"].endswith("/v1")

    # predict (default version and explicit version)
    out = ml.projects().predict(name=f"{P}/models/shop", body={"instances": ["a", "b"]}).execute()
    assert [p["id"] for p in out["predictions"]] == ["a", "b"]
    out = (
        ml.projects()
        .predict(name=f"{P}/models/shop/versions/v1", body={"instances": ["c"]})
        .execute()
    )
    assert out["predictions"][0]["id"] == "c"
    assert "lastUseTime" in versions.get(name=f"{P}/models/shop/versions/v1").execute()

    # version 2: scikit-learn, framework detected from the files
    op = versions.create(
        parent=f"{P}/models/shop",
        body={"name": "v2", "deploymentUri": str(sk_dir), "labels": {"k": "v"}},
    ).execute()
    done = wait_done(ml, op)
    assert done["response"]["framework"] == "SCIKIT_LEARN"
    assert done["response"]["isDefault"] is False
    out = (
        ml.projects()
        .predict(name=f"{P}/models/shop/versions/v2", body={"instances": [[6.8, 2.8, 4.8, 1.4]]})
        .execute()
    )
    assert out["predictions"] == [1]
    listed = versions.list(parent=f"{P}/models/shop").execute()["versions"]
    assert [(v["name"].rsplit("/", 1)[1], v["isDefault"]) for v in listed] == [
        ("v1", True),
        ("v2", False),
    ]

    # setDefault changes the default and the etags
    before = versions.get(name=f"{P}/models/shop/versions/v2").execute()
    after = versions.setDefault(name=f"{P}/models/shop/versions/v2", body={}).execute()
    assert after["isDefault"] is True and after["etag"] != before["etag"]
    assert models.get(name=f"{P}/models/shop").execute()["defaultVersion"]["name"].endswith("/v2")
    out = ml.projects().predict(name=f"{P}/models/shop", body={"instances": [[5, 3, 1, 0.2]]})
    assert out.execute()["predictions"] == [0]

    # patch with a stale etag: 409 ABORTED, nothing changes; then with the fresh one
    with pytest.raises(HttpError) as exc:
        versions.patch(
            name=f"{P}/models/shop/versions/v2",
            updateMask="description",
            body={"description": "stale", "etag": before["etag"]},
        ).execute()
    assert status_of(exc.value) == (409, "ABORTED")
    assert "etag" in str(exc.value)
    assert "description" not in versions.get(name=f"{P}/models/shop/versions/v2").execute()
    op = versions.patch(
        name=f"{P}/models/shop/versions/v2",
        updateMask="description,labels,autoScaling",
        body={"description": "fresh", "etag": after["etag"], "autoScaling": {"minNodes": 1}},
    ).execute()
    assert op["done"] is True and op["metadata"]["operationType"] == "UPDATE_VERSION"
    patched = versions.get(name=f"{P}/models/shop/versions/v2").execute()
    assert patched["description"] == "fresh" and patched["autoScaling"] == {"minNodes": 1}
    assert "labels" not in patched  # in the mask, absent from the body: cleared
    assert patched["etag"] != after["etag"]
    # the model: patch its description
    op = models.patch(
        name=f"{P}/models/shop", updateMask="description", body={"description": "new"}
    ).execute()
    assert op["done"] and models.get(name=f"{P}/models/shop").execute()["description"] == "new"

    # delete: the default cannot go while others exist, the model not while it has versions
    with pytest.raises(HttpError) as exc:
        versions.delete(name=f"{P}/models/shop/versions/v2").execute()
    assert status_of(exc.value) == (400, "FAILED_PRECONDITION")
    with pytest.raises(HttpError) as exc:
        models.delete(name=f"{P}/models/shop").execute()
    assert status_of(exc.value) == (400, "FAILED_PRECONDITION")
    op = versions.delete(name=f"{P}/models/shop/versions/v1").execute()
    assert op["done"] and op["metadata"]["operationType"] == "DELETE_VERSION"
    op = versions.delete(name=f"{P}/models/shop/versions/v2").execute()
    assert op["done"]
    with pytest.raises(HttpError) as exc:
        ml.projects().predict(name=f"{P}/models/shop", body={"instances": [1]}).execute()
    assert exc.value.resp.status == 404
    op = models.delete(name=f"{P}/models/shop").execute()
    assert op["done"] and op["metadata"]["operationType"] == "DELETE_MODEL"
    with pytest.raises(HttpError) as exc:
        models.get(name=f"{P}/models/shop").execute()
    assert status_of(exc.value) == (404, "NOT_FOUND")

    ops = ml.projects().operations().list(name=P).execute()["operations"]
    types = {o["metadata"]["operationType"] for o in ops}
    assert {"CREATE_VERSION", "DELETE_VERSION", "DELETE_MODEL", "UPDATE_VERSION"} <= types
    assert all(o["done"] for o in ops)


@pytest.mark.parametrize("missing", ["dir", "file"])
def test_failed_version_reports_the_loading_error(ml, tmp_path, missing):
    ml.projects().models().create(parent=P, body={"name": "broken"}).execute()
    if missing == "dir":
        uri, needle = str(tmp_path / "nope"), "does not exist"
    else:
        (tmp_path / "empty").mkdir()
        uri, needle = str(tmp_path / "empty"), "model file"
    versions = ml.projects().models().versions()
    op = versions.create(
        parent=f"{P}/models/broken", body={"name": "v1", "deploymentUri": uri}
    ).execute()
    done = wait_done(ml, op)
    assert done["error"]["message"] and "response" not in done
    assert done["metadata"]["version"]["state"] == "FAILED"
    v = versions.get(name=f"{P}/models/broken/versions/v1").execute()
    assert v["state"] == "FAILED"
    assert needle in v["errorMessage"].lower(), v["errorMessage"]
    assert v["errorMessage"] == done["error"]["message"]
    with pytest.raises(HttpError) as exc:
        ml.projects().predict(name=f"{P}/models/broken", body={"instances": [1]}).execute()
    assert exc.value.resp.status == 503
    assert "not ready" in exc.value.content.decode()
