"""Two ``serve`` processes, standing in for two machines, sharing one real PostgreSQL.

Each has its own ``--state-dir``; the database (``--state-url``) is their only link.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from predictor_runtime.server.store import mask_url

ECHO = ["--prediction-class", "echo_predictor.EchoPredictor"]
BASE = "/v1/projects/p/models"
SECRET = "s3cret-pw"
DEAD = f"postgresql://someone:{SECRET}@127.0.0.1:1/db"


def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Poll ``condition()`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


def test_a_version_created_on_one_process_serves_on_the_other(
    cli_server, echo_model, tmp_path: Path, pg_url: str
):
    model_dir, pkg = echo_model(load_seconds=1.0)
    url = with_password(pg_url)
    common = ["--model-dir", str(model_dir), "--package", str(pkg), *ECHO]
    # the flag wins over the environment variable
    a = cli_server(
        ["--state-dir", str(tmp_path / "a"), "--state-url", url, "--model-name", "only_a", *common],
        env=dict(os.environ, PREDICTOR_RUNTIME_STATE_URL=DEAD),
    )
    # B reads the URL from the environment
    b = cli_server(
        ["--state-dir", str(tmp_path / "b"), "--model-name", "only_b", *common],
        env=dict(os.environ, PREDICTOR_RUNTIME_STATE_URL=url),
    )
    assert httpx.get(b.url + "/readyz").status_code == 200
    assert f"Shared state: {mask_url(url)}" in b.banner

    assert httpx.post(a.url + BASE, json={"name": "shared"}).status_code == 200
    body = {
        "name": "v1",
        "deploymentUri": str(model_dir),
        "predictionClass": "echo_predictor.EchoPredictor",
        "packageUris": [str(pkg)],
        "requestLoggingConfig": {"samplingPercentage": 1.0, "bigqueryTableName": "p.logs.t"},
    }
    started = time.monotonic()
    op = httpx.post(a.url + BASE + "/shared/versions", json=body).json()
    assert op["done"] is False
    # B starts loading it by itself (notified; /readyz does not sync), well within 2 s
    wait_for(lambda: httpx.get(b.url + "/readyz").status_code == 503, 2.0, "B to start loading")
    assert time.monotonic() - started < 2.0

    def a_done() -> bool:
        return httpx.get(f"{a.url}/v1/{op['name']}").json()["done"]

    wait_for(a_done, 30, "the create operation")
    wait_for(lambda: httpx.get(b.url + "/readyz").status_code == 200, 30, "B to load it")
    r = httpx.post(b.url + BASE + "/shared:predict", json={"instances": ["on-b"]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["id"] == "on-b"
    b_version = httpx.get(b.url + BASE + "/shared/versions/v1").json()
    assert b_version["state"] == "READY" and b_version["isDefault"] is True

    # a patch through B reaches A; a stale etag is refused whichever process checks it
    etag = b_version["etag"]
    patch = "/shared/versions/v1?updateMask=description"
    r = httpx.patch(b.url + BASE + patch, json={"description": "from b", "etag": etag})
    assert r.status_code == 200, r.text
    r = httpx.patch(a.url + BASE + patch, json={"description": "stale", "etag": etag})
    assert r.status_code == 409, r.text
    assert httpx.get(a.url + BASE + "/shared/versions/v1").json()["description"] == "from b"

    # command-line models stay local to their process; API models are shared
    def names(srv: Any) -> list[str]:
        return sorted(
            m["name"].rsplit("/", 1)[1] for m in httpx.get(srv.url + BASE).json()["models"]
        )

    assert names(a) == ["only_a", "shared"]
    assert names(b) == ["only_b", "shared"]
    assert (
        httpx.post(b.url + "/v1/models/only_a:predict", json={"instances": [1]}).status_code == 404
    )

    # request logs of B's predictions land in a table of the same database
    def logged() -> int:
        with psycopg.connect(pg_url) as conn:
            try:
                return conn.execute('SELECT count(*) FROM "p.logs.t"').fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return 0

    wait_for(lambda: logged() >= 1, 10, "the request log row")

    # a deletion through A stops B serving the version
    assert httpx.delete(a.url + BASE + "/shared/versions/v1").status_code == 200
    gone = lambda: httpx.post(b.url + BASE + "/shared/versions/v1:predict", json={"instances": [1]})  # noqa: E731
    wait_for(lambda: gone().status_code == 404, 2.0, "B to drop the deleted version")

    for srv in (a, b):
        assert srv.stop() == 0
        assert SECRET not in srv.output()


def test_unreachable_database_exits_with_one_masked_line(tmp_path: Path):
    cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0",
           "--state-dir", str(tmp_path / "s")]  # fmt: skip
    env = dict(os.environ, PREDICTOR_RUNTIME_STATE_URL=DEAD)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot reach the state database ")
    assert mask_url(DEAD) in lines[0] and SECRET not in proc.stderr + proc.stdout


def test_a_bad_scheme_is_refused(tmp_path: Path):
    cmd = [sys.executable, "-m", "predictor_runtime", "serve", "--port", "0",
           "--state-url", f"mysql://u:{SECRET}@h/db"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert "--state-url must be a PostgreSQL URL" in proc.stderr
    assert SECRET not in proc.stderr


def test_database_outage_answers_503_and_predictions_go_on(cli_server, echo_model, tmp_path):
    from predictor_runtime.testing_postgres import TempPostgres

    model_dir, pkg = echo_model()
    with TempPostgres() as pg:
        url = with_password(pg.url())
        srv = cli_server(["--state-dir", str(tmp_path / "s"), "--state-url", url,
                          "--model-dir", str(model_dir), "--package", str(pkg), *ECHO])  # fmt: skip
        assert httpx.post(srv.url + BASE, json={"name": "m"}).status_code == 200
        pg.pause()
        r = httpx.post(srv.url + "/v1/models/default:predict", json={"instances": ["x"]})
        assert r.status_code == 200, r.text
        r = httpx.post(srv.url + BASE, json={"name": "other"})
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["status"] == "UNAVAILABLE" and "retry" in error["message"]
        assert SECRET not in r.text and "postgres:***@" in r.text
        pg.resume()

        def recovered() -> bool:
            return httpx.post(srv.url + BASE, json={"name": "other"}).status_code == 200

        wait_for(recovered, 15, "the store to reconnect")
        names = {m["name"] for m in httpx.get(srv.url + BASE).json()["models"]}
        assert names == {
            "projects/p/models/default",
            "projects/p/models/m",
            "projects/p/models/other",
        }
        assert srv.stop() == 0
        assert SECRET not in srv.output()
