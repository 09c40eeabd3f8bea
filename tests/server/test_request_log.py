"""``predictor_runtime.server.request_log``: sampled request logs in SQLite, off the request path."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from predictor_runtime.server.request_log import RequestLogger, validate_logging_config

TABLE = "my-project.logs.predictions"


def rows(path: Path, table: str = TABLE) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            f'SELECT model, model_version, time, raw_data, raw_prediction, groundtruth FROM "{table}"'
        ).fetchall()


def test_every_request_at_rate_one(tmp_path: Path) -> None:
    log = RequestLogger(tmp_path)
    config = {"samplingPercentage": 1.0, "bigqueryTableName": TABLE}
    for i in range(50):
        assert log.log(
            config, "m", "v1", f'{{"instances": [{i}]}}'.encode(), b'{"predictions": [1]}'
        )
    log.close()
    got = rows(log.path)
    assert len(got) == 50
    model, version, time, raw, pred, truth = got[0]
    assert (model, version, truth) == ("m", "v1", None)
    assert time.endswith("Z") and "T" in time
    assert raw == '{"instances": [0]}' and pred == '{"predictions": [1]}'


def test_sampling_fraction(tmp_path: Path) -> None:
    log = RequestLogger(tmp_path, max_queue=100_000)
    config = {"samplingPercentage": 0.25, "bigqueryTableName": TABLE}
    logged = sum(log.log(config, "m", "v1", b"{}", b"{}") for _ in range(4000))
    log.close()
    assert 800 < logged < 1200
    assert len(rows(log.path)) == logged


def test_rate_zero_and_no_config(tmp_path: Path) -> None:
    log = RequestLogger(tmp_path)
    assert not log.log(None, "m", "v", b"", b"")
    assert not log.log({"samplingPercentage": 0.0, "bigqueryTableName": TABLE}, "m", "v", b"", b"")
    log.close()
    assert not log.path.exists() or log.written == 0


def test_full_queue_counts_drops_and_never_blocks(tmp_path: Path) -> None:
    dropped: list[str] = []
    log = RequestLogger(tmp_path, max_queue=5, on_drop=dropped.append)
    gate = threading.Event()
    original = log._write

    def slow_write(batch):
        gate.wait(5)
        original(batch)

    log._write = slow_write  # hold the writer so the queue fills up
    config = {"samplingPercentage": 1.0, "bigqueryTableName": TABLE}
    results = [log.log(config, "m", "v", b"{}", b"{}") for _ in range(20)]
    assert results.count(False) == log.dropped == len(dropped) > 0
    gate.set()
    log.close()
    assert log.written + log.dropped == 20


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "must be an object"),
        ({"samplingPercentage": 2, "bigqueryTableName": TABLE}, "from 0 to 1, got 2"),
        ({"samplingPercentage": 0.5}, "bigqueryTableName must look like"),
        ({"samplingPercentage": 0.5, "bigqueryTableName": 'a"; DROP'}, "must look like"),
        ({"samplingPercent": 0.5, "bigqueryTableName": TABLE}, "unknown field.*samplingPercent"),
    ],
)
def test_invalid_config(config: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_logging_config(config)


def test_valid_config_normalized() -> None:
    assert validate_logging_config({"samplingPercentage": 1, "bigqueryTableName": TABLE}) == {
        "samplingPercentage": 1.0,
        "bigqueryTableName": TABLE,
    }
