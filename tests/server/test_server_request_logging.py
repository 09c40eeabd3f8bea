"""requestLoggingConfig: sampled predict requests land in an SQLite table, off the request path."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import start_live_server

from predictor_runtime.server.request_log import LOG_FILE, RequestLogger

VERSION = "/v1/projects/p/models/echo/versions/v1"
TABLE = "proj.dataset.preds"


@pytest.fixture
def srv(tmp_path: Path) -> Any:
    server = start_live_server(state_dir=tmp_path / "state")
    try:
        yield server
    finally:
        server.stop()


def set_logging(srv: Any, rate: float, table: str = TABLE) -> None:
    config = {"samplingPercentage": rate, "bigqueryTableName": table}
    r = httpx.patch(srv.url + VERSION + "?updateMask=requestLoggingConfig",
                    json={"requestLoggingConfig": config})  # fmt: skip
    assert r.status_code == 200, r.text
    assert httpx.get(srv.url + VERSION).json()["requestLoggingConfig"] == config


def rows(srv: Any, tmp_path: Path, table: str = TABLE) -> list[tuple[Any, ...]]:
    assert srv.app.state.request_logger.flush(10)
    with sqlite3.connect(tmp_path / "state" / LOG_FILE) as db:
        try:
            return db.execute(
                f"SELECT model, model_version, time, raw_data, raw_prediction, groundtruth "
                f'FROM "{table}" ORDER BY rowid'
            ).fetchall()
        except sqlite3.OperationalError:  # no table: nothing was ever logged
            return []


def test_every_request_at_1_and_none_at_0(srv, tmp_path):
    url = srv.url + "/v1/models/echo:predict"
    set_logging(srv, 1.0)  # takes effect on the next request
    bodies = [orjson.dumps({"instances": [f"r{i}"]}) for i in range(25)]
    client = httpx.Client()
    answers = [client.post(url, content=b).content for b in bodies]
    got = rows(srv, tmp_path)
    assert len(got) == 25
    assert [r[3].encode() for r in got] == bodies  # the request body as it came
    assert [r[4].encode() for r in got] == answers  # the response body as it went
    assert {(r[0], r[1], r[5]) for r in got} == {("echo", "v1", None)}
    assert all(r[2].endswith("Z") for r in got)

    set_logging(srv, 0.0)
    for b in bodies:
        assert client.post(url, content=b).status_code == 200
    assert len(rows(srv, tmp_path)) == 25

    set_logging(srv, 0.5, "proj.dataset.half")
    for _ in range(200):
        client.post(url, content=bodies[0])
    client.close()
    assert 50 < len(rows(srv, tmp_path, "proj.dataset.half")) < 150


def test_what_the_queue_cannot_hold_is_counted(srv, tmp_path):
    state = srv.app.state
    real = state.request_logger
    # a logger whose writer never runs, with room for one row
    stuck = RequestLogger(tmp_path / "stuck", max_queue=1, on_drop=srv.app.metrics.log_dropped)
    stuck._thread = threading.Thread(target=lambda: None)  # "started": log() won't start one
    state.request_logger = stuck
    try:
        set_logging(srv, 1.0)
        for i in range(5):
            r = httpx.post(srv.url + "/v1/models/echo:predict", json={"instances": [i]})
            assert r.status_code == 200  # logging never fails a prediction
    finally:
        state.request_logger = real
    assert stuck.dropped == 4
    text = httpx.get(srv.url + "/metrics").text
    assert f'predictor_request_log_dropped_total{{table="{TABLE}"}} 4.0' in text
