"""``--allow-paths`` (one helper for every protocol) and what HTTP errors may reveal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import HERE, start_live_server

from predictor_runtime.server.context import ServerOptionsView
from predictor_runtime.server.http import HttpError
from predictor_runtime.server.paths import check_allowed, local_path

VERSIONS = "/v1/projects/p/models/echo/versions"


def test_check_allowed_resolves_symlinks_first(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "m").mkdir(parents=True)
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    assert check_allowed(str(allowed / "m"), (str(allowed),)) == (allowed / "m").resolve()
    assert check_allowed("file://" + str(allowed), (str(allowed),)) == allowed.resolve()
    assert check_allowed(str(outside), ()) == outside.resolve()  # no confinement
    for refused in (outside, allowed / "link", allowed / "link" / "x", allowed / ".." / "outside"):
        with pytest.raises(HttpError) as info:
            check_allowed(str(refused), (str(allowed),), field="task.url")
        err = info.value
        assert err.status == 400 and err.google_status == "INVALID_ARGUMENT"
        assert "--allow-paths" in err.message and "task.url" in err.message
        assert str(tmp_path) not in err.message  # neither the path nor the allowed folders
    with pytest.raises(HttpError, match="--jobs-root"):
        check_allowed(str(outside), (str(allowed),), "--jobs-root")


def test_check_source_urls_and_paths(tmp_path: Path) -> None:
    from predictor_runtime.server.paths import check_source

    assert check_source("https://x.example/a", (), True) == "https://x.example/a"
    with pytest.raises(HttpError, match="--no-fetch-urls"):
        check_source("HTTP://x.example/a", (), False, field="task.url")
    with pytest.raises(HttpError, match="expected a local path"):
        check_source("gs://bucket/a", (), True)
    assert check_source(str(tmp_path), (str(tmp_path),), False) == tmp_path.resolve()
    with pytest.raises(HttpError, match="--allow-paths"):
        check_source("/etc/passwd", (str(tmp_path),), True)


def test_local_path() -> None:
    assert local_path("file:///a/b") == "/a/b"
    assert local_path("file://localhost/a/b") == "/a/b"
    assert local_path("/a/b") == "/a/b" and local_path("rel/x") == "rel/x"


def wait_version(url: str, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        v = httpx.get(f"{url}{VERSIONS}/{name}").json()
        if v["state"] != "CREATING" or time.monotonic() > deadline:
            return v  # type: ignore[no-any-return]
        time.sleep(0.05)


@pytest.fixture
def confined(tmp_path: Path) -> Any:
    allowed = tmp_path / "allowed"
    (allowed / "model").mkdir(parents=True)
    (allowed / "pkg").mkdir()
    (allowed / "pkg" / "echo_predictor.py").write_text((HERE / "echo_predictor.py").read_text())
    outside = tmp_path / "outside"
    (outside / "model").mkdir(parents=True)
    (outside / "secret-name.txt").write_text("x")
    (allowed / "escape").symlink_to(outside / "model")
    opts = ServerOptionsView(allow_paths=(str(allowed),))
    srv = start_live_server(state_dir=tmp_path / "state", options=opts)
    try:
        yield srv, allowed, outside
    finally:
        srv.stop()


def test_allow_paths_confines_deployment_and_package_uris(confined: Any) -> None:
    srv, allowed, outside = confined
    good = {
        "deploymentUri": "file://" + str(allowed / "model"),
        "predictionClass": "echo_predictor.EchoPredictor",
        "packageUris": ["file://" + str(allowed / "pkg")],
    }
    bad_cases = [
        ("version.deploymentUri", {**good, "deploymentUri": str(outside / "model")}),
        ("version.deploymentUri", {**good, "deploymentUri": str(allowed / "escape")}),
        ("version.packageUris[0]", {**good, "packageUris": [str(outside)]}),
    ]
    for i, (field, body) in enumerate(bad_cases):
        r = httpx.post(srv.url + VERSIONS, json={"name": f"bad{i}", **body})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["status"] == "INVALID_ARGUMENT" and "--allow-paths" in err["message"]
        assert field in err["message"] and "secret-name" not in r.text
    # file:// packageUris are accepted (they used to fail with "does not exist")
    r = httpx.post(srv.url + VERSIONS, json={"name": "ok", **good})
    assert r.status_code == 200, r.text
    v = wait_version(srv.url, "ok")
    assert v["state"] == "READY", v
    out = httpx.post(srv.url + "/v1/models/echo/versions/ok:predict", json={"instances": ["z"]})
    assert out.json()["predictions"][0]["id"] == "z"


def test_http_errors_never_list_folder_contents(live_factory: Any, tmp_path: Path) -> None:
    srv = live_factory(state_dir=tmp_path / "state")
    folder = tmp_path / "private"
    folder.mkdir()
    for name in ("id_rsa", "notes.txt", "tax-2025.pdf"):
        (folder / name).write_text("x")
    r = httpx.post(srv.url + VERSIONS, json={"name": "v9", "deploymentUri": str(folder)})
    assert r.status_code == 200
    v = wait_version(srv.url, "v9")
    assert v["state"] == "FAILED"
    message = v["errorMessage"]
    assert "No model file found" in message and "3 file(s)" in message
    for name in ("id_rsa", "notes.txt", "tax-2025"):
        assert name not in message
