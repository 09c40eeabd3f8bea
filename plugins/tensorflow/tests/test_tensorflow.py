"""The tensorflow framework plugin, end to end on tiny real SavedModels.

The models are built once per module (tf.Module + tf.function signatures, no training) and
served through the same paths users take: ``load_model`` + ``Dispatcher`` and the CLI in a
subprocess. Expected values come from calling the original tf.functions directly.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.errors import ModelLoadError
from predictor_runtime.loader import load_model
from predictor_runtime.testing import run_cli

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None,
        reason="TensorFlow is not installed (pip install 'predictor-runtime-tensorflow[cpu]')",
    ),
    # TensorFlow, Keras and absl emit Deprecation/Future/UserWarnings from their own code on
    # import and while saving/loading (e.g. about numpy or protobuf APIs they call); they
    # are not ours to fix. The suite runs with filterwarnings=error, so only warnings raised
    # from those packages' modules are ignored here; warnings from predictor_runtime and
    # from this plugin still fail the tests.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tensorflow.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:absl.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:tensorflow.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:tensorflow.*"),
]

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# -- models ----------------------------------------------------------------------------------


def _build_models(root: Path) -> dict[str, Any]:
    """Save four tiny SavedModels under ``root``; return their dirs and the tf.Modules."""
    import tensorflow as tf

    class Single(tf.Module):
        """One float input ``x`` [None, 3] -> one output [None, 2]."""

        def __init__(self) -> None:
            self.w = tf.Variable([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25]])
            self.b = tf.Variable([0.1, -0.2])

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return tf.matmul(x, self.w) + self.b

    class Multi(tf.Module):
        """Inputs ``a`` float [None, 2] and ``b`` int64 [None]; three outputs."""

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="a"),
                tf.TensorSpec([None], tf.int64, name="b"),
            ]
        )
        def serve(self, a, b):
            bf = tf.cast(b, tf.float32)
            return {
                "total": tf.reduce_sum(a, axis=1) + bf,
                "scaled": a * bf[:, None],
                "label": tf.strings.join(["b=", tf.strings.as_string(b)]),
            }

    class TwoSigs(tf.Module):
        """Two signatures, ``add`` and ``mul``, and no ``serving_default``."""

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def add(self, x):
            return {"y": x + 10.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def mul(self, x):
            return {"y": x * 10.0}

    class Strings(tf.Module):
        """``serving_default``: bytes in, bytes/text/int out; ``parse``: text -> number."""

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            length = tf.strings.length(image_bytes)
            return {
                "length": length,
                "echo_bytes": image_bytes,
                "size": tf.where(length > 2, "long", "short"),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def parse(self, text):
            return {"number": tf.strings.to_number(text)}

    modules = {"single": Single(), "multi": Multi(), "two_sigs": TwoSigs(), "strings": Strings()}
    signatures = {
        "single": {"serving_default": modules["single"].serve},
        "multi": {"serving_default": modules["multi"].serve},
        "two_sigs": {"add": modules["two_sigs"].add, "mul": modules["two_sigs"].mul},
        "strings": {
            "serving_default": modules["strings"].serve,
            "parse": modules["strings"].parse,
        },
    }
    dirs = {}
    for name, module in modules.items():
        path = root / name
        tf.saved_model.save(module, str(path), signatures=signatures[name])
        dirs[name] = str(path)
    empty = root / "no_signatures"
    tf.saved_model.save(tf.Module(), str(empty))
    dirs["no_signatures"] = str(empty)
    return {"dirs": dirs, "modules": modules, "tf": tf}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _build_models(tmp_path_factory.mktemp("tf_models"))


@pytest.fixture(scope="module")
def dispatchers(models: dict[str, Any]) -> dict[str, Dispatcher]:
    return {
        name: Dispatcher(load_model(path))
        for name, path in models["dirs"].items()
        if name != "no_signatures"
    }


def _post(dispatcher: Dispatcher, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, out = dispatcher.handle(orjson.dumps(body))
    return status, json.loads(out)


def _ok(dispatcher: Dispatcher, body: dict[str, Any]) -> dict[str, Any]:
    status, out = _post(dispatcher, body)
    assert status == 200, out
    return out


def _error(dispatcher: Dispatcher, body: dict[str, Any], status: int = 400) -> str:
    got_status, out = _post(dispatcher, body)
    assert got_status == status, out
    assert set(out) == {"error"}
    return out["error"]


# -- loading and registration ----------------------------------------------------------------


def test_plugins_command_lists_tensorflow_without_importing_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "predictor_runtime", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    ).stdout
    rows = {r["framework"]: r for r in json.loads(out)}
    row = rows["tensorflow"]
    assert row["api_name"] == "TENSORFLOW"
    assert row["distribution"].startswith("predictor-runtime-tensorflow ")
    assert "saved_model.pb" in row["model_files"]
    code = (
        "import sys; from predictor_runtime.plugins import framework_registry; "
        "assert 'tensorflow' in framework_registry().frameworks; "
        "assert 'tensorflow' not in sys.modules, 'plugin discovery imported tensorflow'"
    )
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True)


def test_auto_detected_and_by_api_name(models: dict[str, Any]) -> None:
    from predictor_runtime_tensorflow import TensorFlowFramework

    model = load_model(models["dirs"]["single"])
    assert model.framework == "tensorflow"
    assert isinstance(model.predictor, TensorFlowFramework)
    assert model.decode_b64 is True
    assert load_model(models["dirs"]["single"], framework="TENSORFLOW").framework == "tensorflow"


def test_model_without_signatures_fails_to_load(models: dict[str, Any]) -> None:
    with pytest.raises(ModelLoadError, match="has no signatures"):
        load_model(models["dirs"]["no_signatures"])


def test_corrupt_saved_model_fails_to_load(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match=r"Failed to load model: .*tensorflow model"):
        load_model(tmp_path)


# -- predictions -----------------------------------------------------------------------------

ROWS = [[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0], [0.0, 0.0, 0.0]]


def test_single_input_bare_values_and_named_objects(models, dispatchers) -> None:
    tf = models["tf"]
    expected = models["modules"]["single"].serve(tf.constant(ROWS, tf.float32)).numpy()
    bare = _ok(dispatchers["single"], {"instances": ROWS})
    np.testing.assert_allclose(bare["predictions"], expected, rtol=1e-6)
    named = _ok(dispatchers["single"], {"instances": [{"x": r} for r in ROWS]})
    assert named == bare
    # unknown request keys are ignored, never passed into TensorFlow
    extra = _ok(dispatchers["single"], {"instances": ROWS, "parameters": {"k": 1}})
    assert extra == bare


def test_multi_input_multi_output(models, dispatchers) -> None:
    tf = models["tf"]
    instances = [{"a": [1.0, 2.0], "b": 3}, {"a": [0.5, -1.5], "b": -2}]
    raw = models["modules"]["multi"].serve(
        tf.constant([i["a"] for i in instances], tf.float32),
        tf.constant([i["b"] for i in instances], tf.int64),
    )
    out = _ok(dispatchers["multi"], {"instances": instances})
    preds = out["predictions"]
    assert [sorted(p) for p in preds] == [["label", "scaled", "total"]] * 2
    for i, p in enumerate(preds):
        assert p["label"] == raw["label"].numpy()[i].decode()  # text, not b64
        np.testing.assert_allclose(p["total"], raw["total"].numpy()[i], rtol=1e-6)
        np.testing.assert_allclose(p["scaled"], raw["scaled"].numpy()[i], rtol=1e-6)
    assert preds[1]["label"] == "b=-2"


def test_micro_batches_keep_order_and_error_index(models) -> None:
    dispatcher = Dispatcher(load_model(models["dirs"]["multi"]), max_batch_size=2)
    instances = [{"a": [float(i), 0.0], "b": i} for i in range(5)]
    out = _ok(dispatcher, {"instances": instances})
    assert [p["total"] for p in out["predictions"]] == [0.0, 2.0, 4.0, 6.0, 8.0]
    instances[3] = {"a": [1.0, 2.0]}
    assert "instance 3: missing input(s) ['b']" in _error(dispatcher, {"instances": instances})


def test_signature_choice(models, dispatchers) -> None:
    two = dispatchers["two_sigs"]
    message = _error(two, {"instances": [1.0]})
    assert "none is 'serving_default'" in message
    assert "'add', 'mul'" in message
    assert "signature_name" in message
    for name, want in (("add", [11.0, 12.5]), ("mul", [10.0, 25.0])):
        out = _ok(two, {"instances": [1.0, 2.5], "signature_name": name})
        assert out["predictions"] == want  # one output: bare values
    message = _error(two, {"instances": [1.0], "signature_name": "serving_default"})
    assert message == (
        "No signature found for signature key 'serving_default'. Available signatures: 'add', 'mul'"
    )
    # several signatures including serving_default: that one is the default
    out = _ok(dispatchers["strings"], {"instances": ["abc"]})
    assert out["predictions"][0]["size"] == "long"


def test_b64_string_input_and_bytes_output(models, dispatchers) -> None:
    tf = models["tf"]
    blobs = [b"\xff\x00\xfe binary", b"ab"]
    instances = [{"image_bytes": {"b64": base64.b64encode(b).decode()}} for b in blobs]
    raw = models["modules"]["strings"].serve(tf.constant(blobs))
    out = _ok(dispatchers["strings"], {"instances": instances})
    assert out["predictions"] == [
        {
            "echo_bytes": {"b64": base64.b64encode(raw["echo_bytes"].numpy()[i]).decode()},
            "length": int(raw["length"].numpy()[i]),
            "size": raw["size"].numpy()[i].decode(),
        }
        for i in range(2)
    ]
    assert out["predictions"][1] == {"echo_bytes": {"b64": "YWI="}, "length": 2, "size": "short"}
    # bare b64 values for the single input, and plain text for a string input
    bare = _ok(dispatchers["strings"], {"instances": [i["image_bytes"] for i in instances]})
    assert bare == out
    text = _ok(dispatchers["strings"], {"instances": ["ab"]})
    assert text["predictions"] == [out["predictions"][1]]


def test_graph_execution_error(dispatchers) -> None:
    body = {"instances": ["1.5", "abc"], "signature_name": "parse"}
    message = _error(dispatchers["strings"], body)
    assert message.startswith(
        "Prediction failed: Exception during running the graph: InvalidArgumentError: "
    )
    assert "could not correctly convert string: abc" in message
    assert "File " not in message  # no Python stack from TensorFlow
    out = _ok(dispatchers["strings"], {"instances": ["1.5"], "signature_name": "parse"})
    assert out == {"predictions": [1.5]}


@pytest.mark.parametrize(
    ("model", "instances", "expected"),
    [
        (
            "multi",
            [{"a": [1.0, 2.0], "b": 1}, {"a": [1.0, 2.0], "b": 1, "c": 0}],
            "Invalid inputs: instance 1: unexpected input(s) ['c'] (expected exactly ['a', 'b'])",
        ),
        (
            "multi",
            [{"a": [1.0, 2.0], "b": 1}, {"a": [1.0, 2.0]}],
            "Invalid inputs: instance 1: missing input(s) ['b'] (expected exactly ['a', 'b'])",
        ),
        ("multi", [[1.0, 2.0]], "instance 0: expected an object of named inputs"),
        (
            "single",
            [{"y": [1, 2, 3]}],
            "instance 0: missing input(s) ['x']; unexpected input(s) ['y']",
        ),
        (
            "single",
            [[1, 2, 3], [1, 2]],
            "instance 1: input 'x': expected float32 numbers of shape [3] per instance, "
            "got shape [2]",
        ),
        ("single", [[1, 2, 3], [1, "a", 3]], "instance 1: input 'x': expected float32 numbers"),
        ("single", [[1, 2, 3], {"x": [1, 2, 3]}], "instance 1: expected a bare value"),
        (
            "multi",
            [{"a": [1.0, 2.0], "b": 1}, {"a": [1.0, 2.0], "b": 1.5}],
            "instance 1: input 'b': expected one int64 integer per instance, got float 1.5",
        ),
        (
            "strings",
            ["ok", 3],
            "instance 1: input 'image_bytes': expected one string per instance "
            '(text, or bytes as {"b64": ...}), got int 3',
        ),
    ],
)
def test_invalid_instances(dispatchers, model: str, instances: list[Any], expected: str) -> None:
    assert expected in _error(dispatchers[model], {"instances": instances})


def test_invalid_b64_is_reported_by_the_core(dispatchers) -> None:
    instances = [{"image_bytes": {"b64": "YWI="}}, {"image_bytes": {"b64": "not base64!"}}]
    message = _error(dispatchers["strings"], {"instances": instances})
    assert message.startswith("Invalid inputs: instance 1: invalid base64")


def test_signature_name_must_be_a_string(dispatchers) -> None:
    message = _error(dispatchers["two_sigs"], {"instances": [1.0], "signature_name": 3})
    assert message == '"signature_name" must be a string, got int 3'


# -- command line ----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("predict", *args, env=ENV)


def test_cli_predict(models, dispatchers, tmp_path: Path) -> None:
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    done = _cli("--model-dir", models["dirs"]["single"], "--json-instances", str(single))
    assert done.returncode == 0, done.stderr
    _, expected = _post(dispatchers["single"], {"instances": ROWS})
    assert json.loads(done.stdout) == expected

    values = tmp_path / "values.jsonl"
    values.write_text("1.0\n2.5\n")
    two = models["dirs"]["two_sigs"]
    done = _cli("--model-dir", two, "--json-instances", str(values), "--signature-name", "mul")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"predictions": [10.0, 25.0]}

    done = _cli("--model-dir", two, "--json-instances", str(values))
    assert done.returncode != 0
    assert "none is 'serving_default'" in done.stderr
    assert "Traceback" not in done.stderr
