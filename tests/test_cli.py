"""The command line from the outside: ``python -m predictor_runtime`` in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ECHO_PREDICTOR, run_cli

KWARGS_PREDICTOR = """
import math

class KwPredictor:
    def predict(self, instances, **kwargs):
        out = []
        for inst in instances:
            if isinstance(inst, bytes):
                out.append({"len": len(inst), "kwargs": kwargs})
            elif isinstance(inst, list):
                out.append([None if isinstance(v, float) and math.isnan(v) else v for v in inst])
            else:
                out.append({"value": inst, "kwargs": kwargs})
        return out

    @classmethod
    def from_path(cls, model_dir):
        return cls()
"""


@pytest.fixture
def custom_args(write_module: Callable[[str, str], Path], model_dir: Path) -> list[str]:
    code = write_module("kw_predictor", KWARGS_PREDICTOR)
    write_module("echo_predictor", ECHO_PREDICTOR)
    return [
        "--model-dir", str(model_dir), "--prediction-class", "kw_predictor.KwPredictor",
        "--package", str(code), "--state-dir", str(model_dir.parent / "state"),
    ]  # fmt: skip


def predict(args: list[str], *extra: str, stdin: str | None = None):
    proc = run_cli("predict", *args, *extra, stdin=stdin)
    return proc, (json.loads(proc.stdout) if proc.returncode == 0 else None)


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_json_instances_file(custom_args: list[str], tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('\ufeff[1, 2]\n[3, NaN]\n"text"\n')
    proc, out = predict(custom_args, "--json-instances", str(f))
    assert proc.returncode == 0, proc.stderr
    assert out == {"predictions": [[1, 2], [3, None], {"value": "text", "kwargs": {}}]}


def test_json_request_keeps_kwargs_and_decodes_b64(custom_args: list[str]) -> None:
    body = '{"instances": [{"b64": "aGVsbG8="}], "mode": "fast"}'
    proc, out = predict(custom_args, "--json-request", "-", "--signature-name", "sig", stdin=body)
    assert proc.returncode == 0, proc.stderr
    assert out == {"predictions": [{"len": 5, "kwargs": {"mode": "fast", "signature_name": "sig"}}]}


def test_text_instances_from_stdin(custom_args: list[str]) -> None:
    proc, out = predict(custom_args, "--text-instances", "-", stdin="a,b\nc d\n")
    assert proc.returncode == 0, proc.stderr
    assert out == {"predictions": [{"value": "a,b", "kwargs": {}}, {"value": "c d", "kwargs": {}}]}


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[1]\n\n[2]\n", ["line 2: empty lines are not allowed"]),
        ("[1]\n[2,\n", ["line 2: invalid JSON"]),
        ("", ["no valid instance was found"]),
    ],
)
def test_bad_instance_files(
    custom_args: list[str], tmp_path: Path, content: str, fragments: list[str]
) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    proc, _ = predict(custom_args, "--json-instances", str(f))
    assert_one_line_error(proc, *fragments)


def test_bad_request_body(custom_args: list[str]) -> None:
    proc, _ = predict(custom_args, "--json-request", "-", stdin='{"instance": [1]}')
    assert_one_line_error(proc, 'missing "instances" attribute')


def test_missing_model_dir(tmp_path: Path) -> None:
    proc = run_cli("predict", "--model-dir", str(tmp_path / "nope"), "--json-request", "-",
                   stdin='{"instances": [1]}')  # fmt: skip
    assert_one_line_error(proc, "does not exist")


def test_unknown_prediction_class(custom_args: list[str], tmp_path: Path) -> None:
    args = list(custom_args)
    args[args.index("kw_predictor.KwPredictor")] = "kw_predictor.Nope"
    proc, _ = predict(args, "--json-request", "-", stdin='{"instances": [1]}')
    assert_one_line_error(proc, "'kw_predictor.Nope' cannot be found")


def test_nothing_to_detect(model_dir: Path) -> None:
    proc = run_cli("predict", "--model-dir", str(model_dir), "--json-request", "-",
                   stdin='{"instances": [1]}')  # fmt: skip
    assert_one_line_error(proc, "No model file found", "--framework")


def test_bad_flags_are_one_line() -> None:
    proc = run_cli("predict", "--model-dir", "x")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "--json-instances" in proc.stderr


def test_debug_shows_traceback(model_dir: Path) -> None:
    proc = run_cli("--debug", "predict", "--model-dir", str(model_dir), "--json-request", "-",
                   stdin='{"instances": [1]}')  # fmt: skip
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_plugins_lists_custom() -> None:
    proc = run_cli("plugins")
    assert proc.returncode == 0
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:2] == ["FRAMEWORK", "API"]
    assert any(r.startswith("custom") and "predictor-runtime" in r for r in rows)
    data = json.loads(run_cli("plugins", "--json").stdout)
    custom = next(r for r in data if r["framework"] == "custom")
    assert custom["plugin"] == "predictor_runtime.default_plugins.custom"


def test_bundled_example_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from predictor_runtime.examples.iris import train as iris_train

    model = iris_train.train(tmp_path / "iris")
    package = Path(iris_train.__file__).parent
    instances = tmp_path / "in.jsonl"
    instances.write_text("[5.1, 3.5, 1.4, 0.2]\n[6.7, 3.0, 5.2, 2.3]\n")
    proc = run_cli("predict", "--model-dir", str(model), "--prediction-class",
                   "predictor.IrisPredictor", "--package", str(package), "--state-dir",
                   str(tmp_path / "state"), "--json-instances", str(instances))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"predictions": ["setosa", "virginica"]}
