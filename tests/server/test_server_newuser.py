"""What a new user tripped on: etags across restarts, serve --signature-name, --version,
--json-request errors, an api key with Google's client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from test_server_management_restart import BASE, ECHO, wait_op, wait_state


def test_etags_survive_a_restart_and_change_only_with_content(
    cli_server: Any, echo_model: Any, tmp_path: Path
) -> None:
    model_dir, pkg = echo_model()
    state = tmp_path / "state"
    args = ["--state-dir", str(state), "--model-dir", str(model_dir), "--package", str(pkg), *ECHO]
    srv = cli_server(args)
    url = srv.url
    assert httpx.post(url + BASE, json={"name": "kept"}).status_code == 200
    body = {"name": "v1", "deploymentUri": str(model_dir), "packageUris": [str(pkg)]}
    body["predictionClass"] = ECHO[1]
    op = wait_op(url, httpx.post(url + BASE + "/kept/versions", json=body).json())
    assert op["response"]["state"] == "READY"
    read = {
        path: httpx.get(url + path).json()["etag"]
        for path in (BASE + "/kept", BASE + "/kept/versions/v1", BASE + "/default/versions/v1")
    }
    assert srv.stop(signal.SIGTERM) == 0

    srv = cli_server(args)
    url = srv.url
    assert wait_state(url, BASE + "/kept/versions/v1")["state"] == "READY"
    for path, etag in read.items():
        assert httpx.get(url + path).json()["etag"] == etag, path
    # a PATCH with the etag read before the restart succeeds, and changes the etag
    patch = {"description": "after restart", "etag": read[BASE + "/kept/versions/v1"]}
    r = httpx.patch(url + BASE + "/kept/versions/v1?updateMask=description", json=patch)
    assert r.status_code == 200, r.text
    new = httpx.get(url + BASE + "/kept/versions/v1").json()["etag"]
    assert new != read[BASE + "/kept/versions/v1"]
    stale = httpx.patch(url + BASE + "/kept/versions/v1?updateMask=description", json=patch)
    assert stale.status_code == 409


def test_serve_signature_name_is_the_default_of_requests(cli_server: Any, echo_model: Any) -> None:
    model_dir, pkg = echo_model()
    srv = cli_server(
        ["--model-dir", str(model_dir), "--package", str(pkg), *ECHO, "--signature-name", "sig"]
    )
    url = srv.url + "/v1/models/default:predict"
    assert httpx.post(url, json={"instances": [1]}).json()["predictions"][0]["kw"] == {
        "signature_name": "sig"
    }
    given = {"instances": [1], "signature_name": "other"}
    assert httpx.post(url, json=given).json()["predictions"][0]["kw"] == {"signature_name": "other"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "predictor_runtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_version_flag() -> None:
    from importlib.metadata import version

    out = run("--version")
    assert (
        out.returncode == 0
        and out.stdout.strip() == f"predictor-runtime {version('predictor-runtime')}"
    )


def test_bad_json_request_file_is_named(echo_model: Any, tmp_path: Path) -> None:
    model_dir, pkg = echo_model()
    bad = tmp_path / "body.json"
    bad.write_text('{"instances": [1, }')
    out = run(
        "predict", "--model-dir", str(model_dir), "--package", str(pkg), *ECHO,
        "--json-request", str(bad),
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: {bad}: Invalid JSON in request body")
    bad.write_bytes(b'{"instances": ["\xff"]}')
    out = run(
        "predict", "--model-dir", str(model_dir), "--package", str(pkg), *ECHO,
        "--json-request", str(bad),
    )  # fmt: skip
    assert out.returncode == 1 and f"{bad}: not UTF-8 text" in out.stderr


def test_google_client_with_api_key_basic_auth(live_factory: Any) -> None:
    import httplib2
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    from predictor_runtime.server.context import ServerOptionsView

    srv = live_factory(options=ServerOptionsView(api_key="k3y"))
    endpoint = {"api_endpoint": srv.url}
    http = httplib2.Http()
    http.add_credentials("k3y", "")
    ml = build("ml", "v1", client_options=endpoint, static_discovery=True, http=http)
    body = {"instances": [2]}
    plain = httplib2.Http()
    try:
        out = ml.projects().predict(name="projects/p/models/echo", body=body).execute()
        assert out["predictions"][0]["id"] == 2
        anonymous = build("ml", "v1", client_options=endpoint, static_discovery=True, http=plain)
        try:
            anonymous.projects().models().list(parent="projects/p").execute()
        except HttpError as exc:
            assert exc.resp.status == 401
            assert json.loads(exc.content)["error"]["status"] == "UNAUTHENTICATED"
        else:
            raise AssertionError("no key, yet the request passed")
    finally:
        http.close()
        plain.close()
