"""The numeric fast path takes only provably regular bodies; everything else falls back."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from predictor_runtime import fastparse
from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.errors import InvalidInstanceError
from predictor_runtime.loader import LoadedModel

pytestmark = pytest.mark.skipif(not fastparse.available(), reason="pysimdjson not installed")


def big(instances: list) -> bytes:
    """A body padded past MIN_BYTES with a regular prefix of rows."""
    return orjson.dumps({"instances": instances})


def test_regular_body_becomes_the_same_array_as_the_general_path():
    x = np.random.default_rng(0).normal(size=(500, 30))
    body = big(x.tolist())
    out = fastparse.numeric_instances(body)
    assert out is not None and out.shape == (500, 30) and out.dtype == np.float64
    assert np.array_equal(out, np.asarray(orjson.loads(body)["instances"]))
    out32 = fastparse.numeric_instances(body, np.float32)
    assert out32 is not None and out32.dtype == np.float32
    assert np.array_equal(out32, x.astype(np.float32))


ROWS = [[float(i), float(i + 1), float(i + 2)] for i in range(400)]


@pytest.mark.parametrize(
    "body",
    [
        big([*ROWS, [1.0, 2.0], [3.0, 4.0, 5.0, 6.0]]),  # ragged, same total as regular
        big([*ROWS[:-1], [[1.0], [2.0], [3.0]]]),  # deeper nesting in one row
        big([*ROWS, [1.0, None, 2.0]]),  # null (missing value)
        big([*ROWS, [1.0, "a", 2.0]]),  # a string
        big([*ROWS, [1.0, True, 2.0]]),  # a boolean
        big([*ROWS, 7.0]),  # a scalar row
        orjson.dumps({"instances": ROWS, "signature_name": "x"}),  # other keys
        orjson.dumps({"instances": ROWS})[:-1] + b', "instances": []}',  # duplicate key
        orjson.dumps(ROWS),  # not an object
        orjson.dumps({"instances": ROWS}).replace(b"1.0,", b"NaN,", 1),  # NaN literal
        orjson.dumps({"instances": ROWS[:3]}),  # small: the general path is as fast
        orjson.dumps({"instances": [*ROWS, [1e400, 1.0, 2.0]]}).replace(b"null", b"1e400"),
    ],
)
def test_irregular_bodies_fall_back(body):
    assert fastparse.numeric_instances(body) is None


class Model:
    numeric_instances = True

    def predict(self, instances, **kwargs):
        return [list(map(float, row)) for row in np.asarray(instances, dtype=np.float64)]


def test_dispatcher_uses_the_fast_path_and_keeps_the_general_errors():
    loaded = LoadedModel.wrap(Model(), "custom", "/nowhere")
    d = Dispatcher(loaded)
    instances, kwargs = d.parse(big(ROWS))
    assert isinstance(instances, np.ndarray) and kwargs == {}
    assert d.predict(instances)[5] == ROWS[5]
    instances, kwargs = d.parse(big([*ROWS, [1.0, 2.0]]))  # ragged: general path, a list
    assert isinstance(instances, list)
    with pytest.raises(ValueError):
        np.asarray(instances, dtype=np.float64)


def test_sklearn_style_errors_are_unchanged_for_irregular_bodies():
    from predictor_runtime.codecs import to_array

    d = Dispatcher(LoadedModel.wrap(Model(), "custom", "/nowhere"))
    instances, _ = d.parse(big([*ROWS, [1.0, "a", 2.0]]))
    with pytest.raises(InvalidInstanceError, match="instance 400"):
        to_array(instances, n_features=3)
