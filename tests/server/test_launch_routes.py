"""Launch routes from the outside, on a ``serve`` subprocess: shapes and errors (SPEC 7)."""

from __future__ import annotations

import json
import pickle
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import start_cli_server
from launch_helpers import launch_model, sse_events, wait_for, wait_task

pytestmark = pytest.mark.slow
MODELS = "/v1/projects/p/models"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("launch")
    allowed = root / "allowed"
    allowed.mkdir()
    args = [
        *launch_model(root),
        "--model-name", "echo",
        "--state-dir", str(root / "state"),
        "--allow-paths", str(allowed),
        "--max-pending-tasks", "3",
    ]  # fmt: skip
    srv = start_cli_server(args, cwd=root)
    srv.root = root  # type: ignore[attr-defined]
    srv.allowed = allowed  # type: ignore[attr-defined]
    client = httpx.Client(base_url=srv.url, timeout=30)
    try:
        yield srv, client
    finally:
        client.close()
        srv.close()  # kills it (and any workers), joins its output readers


def google_error(r: httpx.Response, code: int, status: str, *words: str) -> str:
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert (err["code"], err["status"]) == (code, status)
    for word in words:
        assert word in err["message"], err["message"]
    return err["message"]


def create_model(client: httpx.Client, root: Path, name: str, labels: dict[str, str], **config):
    model_dir = root / f"model-{name}"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    assert client.post(MODELS, json={"name": name, "labels": labels}).status_code == 200
    body = {
        "name": "v1",
        "deploymentUri": str(model_dir),
        "predictionClass": "launch_predictor.LaunchPredictor",
        "packageUris": [str(root / "pkg")],
    }
    assert client.post(f"{MODELS}/{name}/versions", json=body).status_code == 200


def test_model_endpoints(server):
    srv, client = server
    r = client.get("/v1/model-endpoints")
    assert r.status_code == 200
    (ep,) = [e for e in r.json()["model_endpoints"] if e["name"] == "echo"]
    assert ep["id"] == "echo" and ep["bundle_name"] == "v1" and ep["status"] == "READY"
    assert ep["endpoint_type"] == "streaming"  # the predictor has predict_stream
    assert ep["post_inference_hooks"] == ["callback"] and ep["default_callback_url"] is None
    assert ep["metadata"] == {}
    for key in ("destination", "created_by", "created_at", "last_updated_at"):
        assert ep[key]  # required by Launch's GetModelEndpointV1Response
    assert client.get("/v1/model-endpoints", params={"name": "echo"}).json()["model_endpoints"]
    assert client.get("/v1/model-endpoints", params={"name": "x"}).json() == {"model_endpoints": []}
    one = client.get("/v1/model-endpoints/echo").json()
    assert one["id"] == "echo" and one["num_queued_items"] == 0
    google_error(client.get("/v1/model-endpoints/nope"), 404, "NOT_FOUND", "nope")
    # the model label endpoint_type wins; while the version loads the status says so
    create_model(client, srv.root, "typed", {"endpoint_type": "sync"}, load_seconds=0.5)
    ep = client.get("/v1/model-endpoints/typed").json()
    assert ep["endpoint_type"] == "sync" and ep["metadata"] == {"endpoint_type": "sync"}
    assert ep["status"] == "UPDATE_PENDING"
    wait_for(lambda: client.get("/v1/model-endpoints/typed").json()["status"] == "READY")


def test_sync_task_success_and_failure(server):
    _, client = server
    r = client.post("/v1/sync-tasks?model_endpoint_id=echo", json={"args": {"instances": ["a"]}})
    assert r.status_code == 200
    assert r.json() == {
        "status": "SUCCESS",
        "result": {"result": {"predictions": [{"id": "a", "kw": {}}]}},
        "traceback": None,
        "status_code": 200,
    }
    body = {"args": {"instances": ["a", "boom"], "flag": 1}}
    r = client.post("/v1/sync-tasks?model_endpoint_id=echo", json=body)
    assert r.status_code == 200  # Launch's client raises on any non-2xx
    out = r.json()
    assert out["status"] == "FAILURE" and out["result"] is None and out["status_code"] == 400
    assert "Prediction failed: ValueError: boom" in out["traceback"]
    assert "launch_predictor.py" in out["traceback"]  # the predictor's own traceback
    r = client.post(
        "/v1/sync-tasks?model_endpoint_id=echo",
        json={"args": {"instances": [1]}, "return_pickled": True},
    )
    url = r.json()["result"]["result_url"]
    assert url.startswith(str(client.base_url).rstrip("/"))
    assert pickle.loads(httpx.get(url).content) == {"predictions": [{"id": 1, "kw": {}}]}


@pytest.mark.parametrize(
    ("query", "body", "field"),
    [
        ("", {"args": {"instances": [1]}}, "model_endpoint_id"),
        ("?model_endpoint_id=echo", {"args": {"instances": [1]}, "extra": 1}, "extra"),
        ("?model_endpoint_id=echo", {"args": {"instances": [1]}, "url": "/x"}, "args"),
        ("?model_endpoint_id=echo", {}, "url"),
        ("?model_endpoint_id=echo", {"args": [1]}, "args"),
        ("?model_endpoint_id=echo", {"args": {"x": 1}}, "args.instances"),
        ("?model_endpoint_id=echo", {"args": {"instances": [1]}, "return_pickled": "y"}, "return_pickled"),
        ("?model_endpoint_id=echo", {"args": {"instances": [1]}, "callback_url": "http://x/"}, "callback_url"),
        ("?model_endpoint_id=echo", {"args": {"instances": [1]}, "cloudpickle": "abc"}, "cloudpickle"),
    ],
)  # fmt: skip
def test_sync_task_422_names_the_field(server, query, body, field):
    _, client = server
    r = client.post("/v1/sync-tasks" + query, json=body)
    assert google_error(r, 422, "INVALID_ARGUMENT").startswith(field + ":")


def test_task_routes_errors(server):
    _, client = server
    r = client.post("/v1/sync-tasks?model_endpoint_id=echo", content=b"{not json")
    google_error(r, 422, "INVALID_ARGUMENT", "body")
    for route in ("sync-tasks", "async-tasks", "streaming-tasks"):
        r = client.post(f"/v1/{route}?model_endpoint_id=nope", json={"args": {"instances": [1]}})
        google_error(r, 404, "NOT_FOUND", "nope")
    google_error(client.get("/v1/async-tasks/nope"), 404, "NOT_FOUND", "nope")
    google_error(client.get("/v1/async-tasks/nope/result"), 404, "NOT_FOUND")
    bad_auth = [
        ({"kind": "digest"}, "callback_auth.kind"),
        ({"kind": "basic", "username": "u"}, "callback_auth.password"),
        ({"kind": "basic", "username": "u", "password": "p", "x": 1}, "callback_auth.x"),
        ({"kind": "mtls", "cert": "nope", "key": "nope"}, "callback_auth.cert"),
    ]
    for auth, field in bad_auth:
        body = {"args": {"instances": [1]}, "callback_url": "http://x/", "callback_auth": auth}
        r = client.post("/v1/async-tasks?model_endpoint_id=echo", json=body)
        assert google_error(r, 422, "INVALID_ARGUMENT").startswith(field + ":")
    body = {"args": {"instances": [1]}, "callback_url": "ftp://x/"}
    r = client.post("/v1/async-tasks?model_endpoint_id=echo", json=body)
    google_error(r, 422, "INVALID_ARGUMENT", "callback_url")


def test_async_task_lifecycle(server):
    _, client = server
    r = client.post(
        "/v1/async-tasks?model_endpoint_id=echo", json={"args": {"instances": [1, 2], "k": "v"}}
    )
    assert r.status_code == 200 and set(r.json()) == {"task_id"}
    done = wait_task(client, r.json()["task_id"])
    assert done == {
        "task_id": r.json()["task_id"],
        "status": "SUCCESS",
        "result": {"result": {"predictions": [{"id": 1, "kw": {"k": "v"}}, {"id": 2, "kw": {"k": "v"}}]}},
        "traceback": None,
        "status_code": 200,
    }  # fmt: skip
    r = client.post(
        "/v1/async-tasks?model_endpoint_id=echo", json={"args": {"instances": ["boom"]}}
    )
    failed = wait_task(client, r.json()["task_id"])
    assert failed["status"] == "FAILURE" and failed["status_code"] == 400
    assert "ValueError: boom" in failed["traceback"] and failed["result"] is None
    body = {"args": {"instances": [3]}, "return_pickled": True}
    r = client.post("/v1/async-tasks?model_endpoint_id=echo", json=body)
    done = wait_task(client, r.json()["task_id"])
    blob = client.get(done["result"]["result_url"])
    assert blob.headers["content-type"] == "application/octet-stream"
    assert pickle.loads(blob.content) == {"predictions": [{"id": 3, "kw": {}}]}


def test_url_inputs_and_allow_paths(server, tmp_path: Path):
    srv, client = server
    allowed: Path = srv.allowed
    (allowed / "body.json").write_text(json.dumps({"instances": ["j"], "k": 1}))
    (allowed / "rows.jsonl").write_text('"r1"\n\n"r2"\n')
    secret = tmp_path / "secret.json"
    secret.write_text('{"instances": ["TOP-SECRET"]}')
    (allowed / "link.json").symlink_to(secret)

    def sync(url: str) -> httpx.Response:
        return client.post("/v1/sync-tasks?model_endpoint_id=echo", json={"url": url})

    preds = sync(str(allowed / "body.json")).json()["result"]["result"]["predictions"]
    assert preds == [{"id": "j", "kw": {"k": 1}}]
    preds = sync((allowed / "rows.jsonl").as_uri()).json()["result"]["result"]["predictions"]
    assert [p["id"] for p in preds] == ["r1", "r2"]
    for refused in (str(secret), secret.as_uri(), str(allowed / "link.json")):
        msg = google_error(sync(refused), 400, "INVALID_ARGUMENT", "--allow-paths")
        assert "SECRET" not in msg and "secret" not in msg
    google_error(sync(str(allowed / "missing.json")), 400, "INVALID_ARGUMENT", "no such file")
    (allowed / "bad.jsonl").write_text('"ok"\n{broken\n')
    google_error(sync(str(allowed / "bad.jsonl")), 400, "INVALID_ARGUMENT", "line 2")

    # http(s) urls are fetched (a small file server started here)
    (tmp_path / "web.jsonl").write_text('"w1"\n"w2"\n')

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    web = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}/web.jsonl"
        r = client.post("/v1/async-tasks?model_endpoint_id=echo", json={"url": url})
        done = wait_task(client, r.json()["task_id"])
        assert [p["id"] for p in done["result"]["result"]["predictions"]] == ["w1", "w2"]
        missing = f"http://127.0.0.1:{web.server_address[1]}/nope.jsonl"
        google_error(sync(missing), 400, "INVALID_ARGUMENT", "HTTP 404")
    finally:
        web.shutdown()
        web.server_close()
        thread.join(5)


def test_full_queue_answers_429(server):
    srv, client = server
    # tasks of a model still loading stay PENDING: the 4th is over --max-pending-tasks 3
    create_model(client, srv.root, "slow", {}, load_seconds=60)
    ids = []
    for i in range(3):
        r = client.post("/v1/async-tasks?model_endpoint_id=slow", json={"args": {"instances": [i]}})
        assert r.status_code == 200, r.text
        ids.append(r.json()["task_id"])
    r = client.post("/v1/async-tasks?model_endpoint_id=slow", json={"args": {"instances": [9]}})
    google_error(r, 429, "RESOURCE_EXHAUSTED", "--max-pending-tasks 3")
    assert r.headers["retry-after"] == "1"
    assert client.get(f"/v1/async-tasks/{ids[0]}").json()["status"] == "PENDING"
    assert client.get("/v1/model-endpoints/slow").json()["num_queued_items"] == 3


def test_streaming_task_of_a_plain_predictor_is_one_event(server):
    srv, client = server
    assert client.post(MODELS, json={"name": "plain"}).status_code == 200
    body = {
        "name": "v1",
        "deploymentUri": str(srv.root / "model"),
        "predictionClass": "echo_predictor.EchoPredictor",
        "packageUris": [str(srv.root / "pkg")],
    }
    assert client.post(f"{MODELS}/plain/versions", json=body).status_code == 200
    wait_for(lambda: client.get("/v1/model-endpoints/plain").json()["status"] == "READY")
    assert client.get("/v1/model-endpoints/plain").json()["endpoint_type"] == "async"
    with client.stream(
        "POST", "/v1/streaming-tasks?model_endpoint_id=plain", json={"args": {"instances": ["z"]}}
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        events = list(sse_events(r))
    assert len(events) == 1
    assert events[0]["status"] == "SUCCESS" and events[0]["status_code"] == 200
    assert events[0]["result"]["result"]["predictions"][0]["id"] == "z"
