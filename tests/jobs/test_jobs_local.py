"""The local batch runner: shard plans, the shard writer, resume, and ``batch-predict``."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from predictor_runtime.jobs import JobCancelled, JobSpec, ModelRef, make_plan, run_job, run_plan
from predictor_runtime.jobs.shards import (
    STATE_DIR,
    OutputConflictError,
    Shard,
    iter_lines,
    plan_shards,
)
from predictor_runtime.testing import run_cli

LENGTHS = '''
import time


class Lengths:
    """TEXT-friendly predictor: the length of each string (or its JSON), optional delay."""

    def __init__(self, delay):
        self.delay = delay

    def predict(self, instances, **kwargs):
        if self.delay:
            time.sleep(self.delay)
        out = []
        for x in instances:
            if x == "boom":
                raise ValueError("boom row")
            out.append({"len": len(x) if isinstance(x, str) else len(str(x)), "kw": kwargs})
        return out

    @classmethod
    def from_path(cls, model_dir):
        import os

        path = os.path.join(model_dir, "delay")
        return cls(float(open(path).read()) if os.path.exists(path) else 0.0)
'''


@pytest.fixture
def lengths(tmp_path: Path) -> ModelRef:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "lengths.py").write_text(textwrap.dedent(LENGTHS))
    model = tmp_path / "model"
    model.mkdir()
    return ModelRef(str(model), prediction_class="lengths.Lengths", packages=[str(pkg)])


def results(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob("prediction.results-*")):
        rows.extend(json.loads(line) for line in f.read_text().splitlines())
    return rows


def error_stats(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob("prediction.errors_stats-*")):
        rows.extend(json.loads(line) for line in f.read_text().splitlines())
    return rows


def test_byte_range_shards_cover_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"i": i, "pad": "x" * (i % 37)}) for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    for n in (1, 2, 3, 7, 64, 499):
        shards = plan_shards([str(path)], n, min_bytes=1)
        assert shards[0].start == 0 and shards[-1].end == size
        got = [line.decode().rstrip("\n") for s in shards for _, line in iter_lines(s)]
        assert got == lines, n
    # a last line without a newline still belongs to its shard
    path.write_text("a\nb\nc")
    assert [x for _, x in iter_lines(Shard(0, str(path), 1, 5))] == [b"b\n", b"c"]


def test_job_writes_aip_layout_in_order_and_counts_bad_lines(tmp_path: Path, lengths) -> None:
    src = tmp_path / "in.jsonl"
    rows = [[i, i + 1] for i in range(300)]
    text = [json.dumps(r) for r in rows]
    text.insert(10, "{not json")  # malformed
    text.insert(20, '"boom"')  # the predictor raises for this row only
    text.insert(30, "")  # blank lines are skipped, not counted
    src.write_text("\n".join(text) + "\n")
    spec = JobSpec([str(src)], str(tmp_path / "out"), batch_size=16, kwargs={"k": 1})
    result = run_job(spec, model=lengths)
    out = tmp_path / "out"
    assert (result.predictions, result.errors) == (300, 2)
    assert sorted(p.name for p in out.iterdir()) == [
        "prediction.errors_stats-00000-of-00001",
        "prediction.results-00000-of-00001",
    ]
    got = results(out)
    assert [r["instance"] for r in got] == rows
    assert got[0]["prediction"] == {"len": len(str([0, 1])), "kw": {"k": 1}}
    stats = {e["error"].split(":")[0]: e for e in error_stats(out)}
    assert stats["Invalid JSON"]["count"] == 1
    assert stats["Prediction failed"]["count"] == 1
    assert "boom row" in next(e["error"] for e in error_stats(out) if "boom" in e["error"])
    assert str(src) in stats["Invalid JSON"]["first"]


def test_resume_skips_finished_shards_and_refuses_foreign_output(tmp_path: Path, lengths) -> None:
    inputs = []
    for k in range(3):
        p = tmp_path / f"in-{k}.txt"
        p.write_text("".join(f"row {k}-{i}\n" for i in range(40)))
        inputs.append(str(tmp_path / "in-*.txt"))
    spec = JobSpec(
        [str(tmp_path / "in-*.txt")], str(tmp_path / "out"), data_format="TEXT", batch_size=8
    )
    plan = make_plan(spec)
    assert len(plan.shards) == 3
    calls = {"n": 0}

    def stop_after_first_shard() -> bool:
        calls["n"] += 1
        return calls["n"] > 6  # 5 batches + the final flush of shard 0, then stop

    with pytest.raises(JobCancelled):
        run_plan(spec, plan, model=lengths, should_stop=stop_after_first_shard)
    out = tmp_path / "out"
    first = out / "prediction.results-00000-of-00003"
    assert first.is_file() and not (out / "prediction.results-00001-of-00003").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    stamp = first.stat().st_mtime_ns
    again = make_plan(spec)
    assert sorted(again.done) == [0]
    result = run_plan(spec, again, model=lengths)
    assert first.stat().st_mtime_ns == stamp
    assert result.predictions == 120 and result.resumed_shards == 1
    got = [r["instance"] for r in results(out)]
    assert got == [f"row {k}-{i}" for k in range(3) for i in range(40)]
    assert not (out / STATE_DIR).exists()
    with pytest.raises(OutputConflictError, match="already holds prediction files"):
        make_plan(spec)


def test_process_pool_matches_in_thread_run(tmp_path: Path, lengths) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps([i] * (1 + i % 5)) + "\n" for i in range(20_000)))
    one = run_job(JobSpec([str(src)], str(tmp_path / "one"), batch_size=256), model=lengths)
    two = run_job(
        JobSpec([str(src)], str(tmp_path / "two"), batch_size=256, workers=2), model=lengths
    )
    assert two.shards == 2 and one.predictions == two.predictions == 20_000
    assert results(tmp_path / "one") == results(tmp_path / "two")


def test_worker_load_failure_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("[1]\n" * 200_000)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="No model file found"):
        run_job(JobSpec([str(src)], str(tmp_path / "o"), workers=2), model=ModelRef(str(empty)))


def test_cli_text_input(tmp_path: Path, lengths) -> None:
    src = tmp_path / "words.txt"
    src.write_text("alpha\nbe\n\nsee\n")
    proc = run_cli(
        "batch-predict",
        "--model-dir", lengths.model_dir,
        "--prediction-class", "lengths.Lengths",
        "--package", lengths.packages[0],
        "--input", str(src),
        "--output", str(tmp_path / "out"),
        "--data-format", "TEXT",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("batch-predict: 3 predictions, 0 errors")
    assert proc.stderr == ""  # no progress bar off a terminal
    got = results(tmp_path / "out")
    assert [(r["instance"], r["prediction"]["len"]) for r in got] == [
        ("alpha", 5),
        ("be", 2),
        ("see", 3),
    ]


def test_cli_json_input_with_sklearn(tmp_path: Path) -> None:
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
    for k in range(2):
        with open(data / f"part-{k}.jsonl", "w") as fh:
            for i in range(150):
                fh.write(json.dumps(x[(i + k) % 150].tolist()) + "\n")
            fh.write("[1, 2]\n")  # wrong feature count: counted, not fatal
    out = tmp_path / "out"
    args = ["batch-predict", "--model-dir", str(model_dir), "--input", f"file://{data}/*.jsonl"]
    proc = run_cli(*args, "--output", str(out), "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    assert "300 predictions, 2 errors" in proc.stdout
    got = results(out)
    expected = clf.predict(x[[(i + k) % 150 for k in range(2) for i in range(150)]]).tolist()
    assert [r["prediction"] for r in got] == expected
    assert sum(e["count"] for e in error_stats(out)) == 2
    assert "expected 4 features, got 2" in error_stats(out)[0]["error"]
    # a second run into the same folder is refused, with one clear line
    again = run_cli(*args, "--output", str(out))
    assert again.returncode == 1
    assert again.stderr.startswith("error: output folder") and "Traceback" not in again.stderr
    missing = run_cli(*args[:-2], "--input", str(tmp_path / "nope*.jsonl"), "--output", str(out))
    assert missing.returncode == 1 and "matches no file" in missing.stderr
    assert os.listdir(out)
