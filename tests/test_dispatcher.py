"""``predictor_runtime.dispatcher``: one request end to end, micro-batching, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from predictor_runtime.dispatcher import Dispatcher, concat
from predictor_runtime.errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    PredictionFailedError,
)
from predictor_runtime.loader import LoadedModel


class Recorder:
    """Echoes instances (as an array when numeric) and records every call."""

    batching = True
    decode_b64 = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, Any]]] = []

    def predict(self, instances, **kwargs):
        self.calls.append((len(instances), kwargs))
        if kwargs.get("as_array"):
            return np.asarray(instances, dtype=float) * 2
        return list(instances)


def make(predictor: Any, **options: Any) -> Dispatcher:
    return Dispatcher(LoadedModel.wrap(predictor, "custom", "/m"), **options)


def body(instances: Any, **kwargs: Any) -> bytes:
    return json.dumps({"instances": instances, **kwargs}).encode()


def test_round_trip_with_kwargs() -> None:
    rec = Recorder()
    status, out = make(rec).handle(body([[1, 2], [3, 4]], flag=True))
    assert status == 200
    assert json.loads(out) == {"predictions": [[1, 2], [3, 4]]}
    assert rec.calls == [(2, {"flag": True})]


def test_micro_batches_preserve_order() -> None:
    rec = Recorder()
    rows = [[i, i + 0.5] for i in range(10)]
    out = make(rec, max_batch_size=4).predict_body(body(rows, as_array=True))
    assert json.loads(out)["predictions"] == (np.asarray(rows) * 2).tolist()
    assert [n for n, _ in rec.calls] == [4, 4, 2]


def test_micro_batch_error_index_is_request_relative() -> None:
    class Strict(Recorder):
        def predict(self, instances, **kwargs):
            for i, inst in enumerate(instances):
                if inst < 0:
                    raise InvalidInstanceError(i, f"expected a non-negative number, got {inst}")
            return instances

    status, out = make(Strict(), max_batch_size=3).handle(body([1, 2, 3, 4, -5, 6]))
    assert status == 400
    assert json.loads(out) == {
        "error": "Invalid inputs: instance 4: expected a non-negative number, got -5"
    }


def test_batching_false_gets_whole_request_and_any_output() -> None:
    class Summary(Recorder):
        batching = False

        def predict(self, instances, **kwargs):
            self.calls.append((len(instances), kwargs))
            return {"mean": [sum(instances) / len(instances)]}

    rec = Summary()
    out = make(rec, max_batch_size=2).predict_body(body([1, 2, 3, 6]))
    assert json.loads(out) == {"predictions": [{"mean": 3.0}]}
    assert rec.calls == [(4, {})]


def test_wrong_prediction_count() -> None:
    class Short(Recorder):
        def predict(self, instances, **kwargs):
            return instances[:-1]

    with pytest.raises(InvalidOutputError, match="returned 2 predictions for 3 instances"):
        make(Short()).predict_body(body([1, 2, 3]))


def test_predictor_exception_is_prediction_failed() -> None:
    class Boom(Recorder):
        def predict(self, instances, **kwargs):
            raise ZeroDivisionError("division by zero")

    status, out = make(Boom()).handle(body([1]))
    assert status == 400
    assert json.loads(out) == {"error": "Prediction failed: ZeroDivisionError: division by zero"}
    with pytest.raises(PredictionFailedError):
        make(Boom()).predict([1])


def test_predict_without_kwargs() -> None:
    class NoKw:
        def predict(self, instances):
            return instances

    dispatcher = make(NoKw())
    assert json.loads(dispatcher.predict_body(body([1])))["predictions"] == [1]
    with pytest.raises(InvalidRequestError, match="takes no keyword arguments.*extra keys: a, b"):
        dispatcher.predict_body(body([1], b=1, a=2))


@pytest.mark.parametrize(("rule", "decoded"), [("auto", True), ("always", True), ("never", False)])
def test_b64_rule_for_custom(rule: str, decoded: bool) -> None:
    rec = Recorder()
    enc = base64.b64encode(b"hello").decode()
    dispatcher = make(rec, decode_b64=rule)
    instances, _ = dispatcher.parse(body([{"img": {"b64": enc}}]))
    assert instances == [{"img": b"hello" if decoded else {"b64": enc}}]


def test_b64_auto_follows_framework() -> None:
    class Tabular(Recorder):
        decode_b64 = False

    enc = base64.b64encode(b"x").decode()
    instances, _ = make(Tabular()).parse(body([{"b64": enc}]))
    assert instances == [{"b64": enc}]


def test_invalid_b64_is_400_naming_instance() -> None:
    status, out = make(Recorder()).handle(body([{"b64": "aGk="}, {"b64": "%%%"}]))
    assert status == 400
    assert json.loads(out)["error"].startswith("Invalid inputs: instance 1: invalid base64")


def test_nan_request_and_null_response() -> None:
    status, out = make(Recorder()).handle(b'{"instances": [[NaN, 1.0]], "as_array": true}')
    assert status == 200
    assert out == b'{"predictions":[[null,2.0]]}'


def test_unserializable_output_is_an_error_not_a_crash() -> None:
    class Weird(Recorder):
        def predict(self, instances, **kwargs):
            return [object() for _ in instances]

    status, out = make(Weird()).handle(body([1]))
    assert status == 400
    assert json.loads(out)["error"].startswith("Prediction failed: the output of instance 0")


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        make(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="decode_b64"):
        make(Recorder(), decode_b64="sometimes")


def test_concat_mixed_parts() -> None:
    assert concat([np.array([1, 2]), np.array([3])]).tolist() == [1, 2, 3]
    assert concat([[1], np.array([2, 3])])[:1] == [1]
    assert len(concat([np.zeros((2, 3)), np.zeros((1, 2))])) == 3
