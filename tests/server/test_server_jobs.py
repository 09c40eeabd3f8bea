"""Batch prediction jobs driven by Google's own client (``projects().jobs()``) against
``serve`` subprocesses: results, bad lines, cancel, and kill -9 mid-job then restart."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

P = "projects/proj"


@pytest.fixture
def client() -> Any:
    """Build ``ml v1`` services for server URLs; all are closed at teardown."""
    made: list[tuple[Any, Any]] = []

    def make(url: str) -> Any:
        http = httplib2.Http(timeout=30)
        service = build(
            "ml", "v1", client_options={"api_endpoint": url}, static_discovery=True, http=http
        )
        made.append((service, http))
        return service

    try:
        yield make
    finally:
        for service, http in made:
            service.close()
            http.close()


def wait_state(jobs: Any, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get(name=f"{P}/jobs/{job_id}").execute()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def results(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob("prediction.results-*")):
        rows.extend(json.loads(line) for line in f.read_text().splitlines())
    return rows


def error_body(err: HttpError) -> dict[str, Any]:
    return json.loads(err.content)["error"]


def test_job_lifecycle_with_google_client(cli_server, client, tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    model_dir = tmp_path / "sk"
    model_dir.mkdir()
    clf = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    joblib.dump(clf, model_dir / "model.joblib")
    data = tmp_path / "data"
    data.mkdir()
    order = []
    for k in range(3):
        with open(data / f"part-{k}.jsonl", "w") as fh:
            for i in range(400):
                row = (i * 7 + k) % 150
                order.append(row)
                fh.write(json.dumps(x[row].tolist()) + "\n")
                if k == 1 and i == 100:
                    fh.write('[5.1, 3.5, "oops\n')  # malformed: counted, never fatal
    srv = cli_server(["--model-dir", str(model_dir), "--model-name", "iris", "--state-dir", "st"])
    ml = client(srv.url)
    jobs = ml.projects().jobs()
    out = tmp_path / "out"
    body = {
        "jobId": "score_1",
        "labels": {"team": "a"},
        "predictionInput": {
            "dataFormat": "JSON",
            "inputPaths": [f"file://{data}/part-*.jsonl"],
            "outputPath": str(out),
            "modelName": f"{P}/models/iris",
            "batchSize": "50",
            "region": "us-central1",
        },
    }
    created = jobs.create(parent=P, body=body).execute()
    assert created["jobId"] == "score_1" and created["state"] in {"QUEUED", "PREPARING", "RUNNING"}
    done = wait_state(jobs, "score_1", {"SUCCEEDED", "FAILED"})
    assert done["state"] == "SUCCEEDED", done
    assert done["predictionOutput"] == {
        "outputPath": str(out),
        "predictionCount": "1200",
        "errorCount": "1",
    }
    assert {"createTime", "startTime", "endTime"} <= set(done)
    got = results(out)
    assert [r["prediction"] for r in got] == clf.predict(x[order]).tolist()
    assert [r["instance"] for r in got] == x[order].tolist()
    assert sorted(p.name for p in out.iterdir()) == [
        f"prediction.{kind}-0000{i}-of-00003"
        for kind in ("errors_stats", "results")
        for i in range(3)
    ]
    errors = json.loads((out / "prediction.errors_stats-00001-of-00003").read_text())
    assert errors["count"] == 1 and errors["error"].startswith("Invalid JSON")
    # list, get, and errors in Google's envelope
    listed = jobs.list(parent=P).execute()["jobs"]
    assert [j["jobId"] for j in listed] == ["score_1"]
    with pytest.raises(HttpError) as exc:
        jobs.create(parent=P, body=body).execute()
    assert exc.value.resp.status == 409 and error_body(exc.value)["status"] == "ALREADY_EXISTS"
    with pytest.raises(HttpError) as exc:
        jobs.cancel(name=f"{P}/jobs/score_1", body={}).execute()
    assert error_body(exc.value)["status"] == "FAILED_PRECONDITION"
    with pytest.raises(HttpError) as exc:
        jobs.get(name=f"{P}/jobs/nope").execute()
    assert exc.value.resp.status == 404
    for field, change in [
        ("dataFormat", {"dataFormat": "TF_RECORD"}),
        ("inputPaths[0]", {"inputPaths": [str(tmp_path / "missing-*.jsonl")]}),
        ("modelName", {"modelName": f"{P}/models/unknown"}),
        ("batchSize", {"batchSize": "0"}),
    ]:
        bad = {**body, "jobId": "bad_1", "predictionInput": {**body["predictionInput"], **change}}
        with pytest.raises(HttpError) as exc:
            jobs.create(parent=P, body=bad).execute()
        err = error_body(exc.value)
        assert err["status"] == "INVALID_ARGUMENT" and f"predictionInput.{field}" in err["message"]
    # two workers (processes) produce the same files
    two = {**body, "jobId": "score_2"}
    two["predictionInput"] = {**body["predictionInput"], "outputPath": str(tmp_path / "out2")}
    two["predictionInput"]["maxWorkerCount"] = 2
    jobs.create(parent=P, body=two).execute()
    assert wait_state(jobs, "score_2", {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"
    assert results(tmp_path / "out2") == got


def slow_echo_server(cli_server: Any, echo_model: Any, delay: float, extra: list[str]) -> Any:
    model_dir, pkg = echo_model(delay=delay)
    args = ["--model-dir", str(model_dir), "--prediction-class", "echo_predictor.EchoPredictor"]
    return cli_server([*args, "--package", str(pkg), "--model-name", "echo", *extra])


def echo_inputs(tmp_path: Path, files: int, rows: int) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for k in range(files):
        (data / f"in-{k}.jsonl").write_text("".join(f"{k * rows + i}\n" for i in range(rows)))
    return data


def test_cancel_a_running_job(cli_server, client, echo_model, tmp_path: Path) -> None:
    allow = ["--allow-paths", str(tmp_path)]
    srv = slow_echo_server(cli_server, echo_model, 0.05, ["--state-dir", "st", *allow])
    jobs = client(srv.url).projects().jobs()
    data = echo_inputs(tmp_path, 1, 2000)
    out = tmp_path / "out"
    inp = {"dataFormat": "JSON", "inputPaths": [str(data / "*.jsonl")], "outputPath": str(out)}
    inp |= {"modelName": "echo", "batchSize": 10}
    secret = "/etc/not-for-jobs-xyz"
    for field, change in (
        ("outputPath", {"outputPath": secret}),
        ("inputPaths[0]", {"inputPaths": ["/etc/*.conf"]}),
    ):
        with pytest.raises(HttpError) as exc:
            jobs.create(
                parent=P, body={"jobId": "outside", "predictionInput": inp | change}
            ).execute()
        err = error_body(exc.value)
        assert exc.value.resp.status == 400 and err["status"] == "INVALID_ARGUMENT"
        assert field in err["message"] and "--allow-paths" in err["message"]
        assert "/etc" not in err["message"]
    jobs.create(parent=P, body={"jobId": "long", "predictionInput": inp}).execute()
    wait_state(jobs, "long", {"RUNNING"})
    assert jobs.cancel(name=f"{P}/jobs/long", body={}).execute() == {}
    job = wait_state(jobs, "long", {"CANCELLED", "SUCCEEDED", "FAILED"}, timeout=30)
    assert job["state"] == "CANCELLED" and "endTime" in job
    assert not list(out.glob("prediction.results-*"))  # its one shard never completed
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    # a queued job is cancelled at once
    jobs.create(
        parent=P,
        body={"jobId": "busy", "predictionInput": inp | {"outputPath": str(tmp_path / "o2")}},
    ).execute()
    jobs.create(
        parent=P,
        body={"jobId": "queued", "predictionInput": inp | {"outputPath": str(tmp_path / "o3")}},
    ).execute()
    jobs.cancel(name=f"{P}/jobs/queued", body={}).execute()
    assert jobs.get(name=f"{P}/jobs/queued").execute()["state"] == "CANCELLED"
    jobs.cancel(name=f"{P}/jobs/busy", body={}).execute()
    wait_state(jobs, "busy", {"CANCELLED"}, timeout=30)


def test_kill_9_mid_job_then_restart_duplicates_nothing(
    cli_server, client, echo_model, tmp_path
) -> None:
    state = ["--state-dir", str(tmp_path / "st")]
    srv = slow_echo_server(cli_server, echo_model, 0.1, state)
    jobs = client(srv.url).projects().jobs()
    files, rows = 4, 50
    data = echo_inputs(tmp_path, files, rows)
    out = tmp_path / "out"
    inp = {"dataFormat": "JSON", "inputPaths": [str(data / "in-*.jsonl")], "outputPath": str(out)}
    jobs.create(
        parent=P,
        body={"jobId": "crash", "predictionInput": inp | {"modelName": "echo", "batchSize": 10}},
    ).execute()
    deadline = time.monotonic() + 60
    while not list(out.glob("prediction.results-*")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("prediction.results-*")}
    assert 1 <= len(before) < files
    srv2 = slow_echo_server(cli_server, echo_model, 0.1, state)
    jobs = client(srv2.url).projects().jobs()
    job = wait_state(jobs, "crash", {"SUCCEEDED", "FAILED"}, timeout=60)
    assert job["state"] == "SUCCEEDED", job
    assert job["predictionOutput"]["predictionCount"] == str(files * rows)
    ids = [r["instance"] for r in results(out)]
    assert ids == list(range(files * rows))  # every instance exactly once, in order
    for name, stamp in before.items():  # finished shards were kept, not redone
        assert (out / name).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"prediction.{kind}-0000{i}-of-00004"
        for kind in ("errors_stats", "results")
        for i in range(4)
    )
