"""Overhead of the tensorflow adapter against calling the signature directly.

Run: ``python -m pytest benchmarks/bench_tensorflow.py --benchmark-only``
(``benchmarks/`` is outside the default testpaths).

- ``raw``: the loaded signature called on ``tf.constant(instances)``, what one would write
  by hand (the floor);
- ``predict``: ``TensorFlowFramework.predict`` on a list of instances (conversion, checks,
  call, output conversion);
- ``body``: ``Dispatcher.predict_body`` on JSON bytes (parse + predict + serialize).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
import pytest

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.loader import load_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytestmark = [
    # see tests/test_tensorflow.py: warnings raised by TensorFlow's own modules
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tensorflow.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:tensorflow.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:tensorflow.*"),
]

FEATURES = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.normal(size=(FEATURES, 4)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="x")])
        def serve(self, x):
            return {"probs": tf.nn.softmax(tf.matmul(x, self.w)), "top": tf.argmax(x, axis=1)}

    path = tmp_path_factory.mktemp("bench_tf") / "model"
    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@pytest.fixture(scope="module")
def dispatcher(model_dir: str) -> Dispatcher:
    return Dispatcher(load_model(model_dir))


def _instances(n: int) -> list[list[float]]:
    return np.random.default_rng(1).normal(size=(n, FEATURES)).round(4).tolist()


@pytest.mark.parametrize("n", [1, 64])
def test_raw(benchmark: Any, dispatcher: Dispatcher, n: int) -> None:
    import tensorflow as tf

    fn = dispatcher.model.predictor.signatures["serving_default"].fn
    instances = _instances(n)
    benchmark.group = f"tensorflow n={n}"
    benchmark(lambda: fn(x=tf.constant(instances, tf.float32)))


@pytest.mark.parametrize("n", [1, 64])
def test_predict(benchmark: Any, dispatcher: Dispatcher, n: int) -> None:
    instances = _instances(n)
    benchmark.group = f"tensorflow n={n}"
    out = benchmark(dispatcher.model.predictor.predict, instances)
    assert len(out["probs"]) == n


@pytest.mark.parametrize("n", [1, 64])
def test_body(benchmark: Any, dispatcher: Dispatcher, n: int) -> None:
    body = orjson.dumps({"instances": _instances(n)})
    benchmark.group = f"tensorflow n={n}"
    out = benchmark(dispatcher.predict_body, body)
    assert len(orjson.loads(out)["predictions"]) == n
