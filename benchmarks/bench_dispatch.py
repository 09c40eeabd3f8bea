"""Dispatcher overhead: parse + batch + serialize against the bare standard-library path.

Run: ``python -m pytest benchmarks/bench_dispatch.py --benchmark-only``

Each group (one per request size) holds two cases measured in the same run:

- ``baseline``: ``json.loads`` + ``numpy.asarray`` + ``json.dumps`` of the same data;
- ``dispatcher``: ``Dispatcher.predict_body`` (parse, instances check, array batching with
  a feature-count check, micro-batching at the default 4,096 rows, strict JSON out) around
  a predictor that returns its input array, so the model itself costs nothing.

The ratio dispatcher/baseline is the runtime's own overhead relative to the bare path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from predictor_runtime.codecs import to_array
from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.loader import LoadedModel

N_FEATURES = 30
SIZES = [1, 100, 1_000, 10_000]


class ArrayEcho:
    """Batches numeric instances like a tabular adapter does, then returns them."""

    decode_b64 = False

    def predict(self, instances, **kwargs):
        return to_array(instances, n_features=N_FEATURES)


def request_body(rows: int) -> bytes:
    data = np.random.default_rng(rows).normal(size=(rows, N_FEATURES))
    return json.dumps({"instances": data.tolist()}).encode()


def baseline(body: bytes) -> str:
    payload = json.loads(body)
    arr = np.asarray(payload["instances"], dtype=np.float64)
    return json.dumps({"predictions": arr.tolist()})


@pytest.mark.parametrize("rows", SIZES)
def test_baseline(benchmark, rows: int) -> None:
    benchmark.group = f"{rows} rows"
    body = request_body(rows)
    out = benchmark(baseline, body)
    assert len(json.loads(out)["predictions"]) == rows


@pytest.mark.parametrize("rows", SIZES)
def test_dispatcher(benchmark, rows: int) -> None:
    benchmark.group = f"{rows} rows"
    body = request_body(rows)
    dispatcher = Dispatcher(LoadedModel.wrap(ArrayEcho(), "custom", "/"))
    out = benchmark(dispatcher.predict_body, body)
    assert json.loads(out) == json.loads(baseline(body))


# -- parse to array (issue: large requests) ------------------------------------------------
# Groups "parse N rows": today's general path (orjson + numpy.asarray, the ``raw`` baseline)
# against the numeric fast path (pysimdjson into a typed buffer), same body, same run.

PARSE_SIZES = [1_000, 10_000]


def orjson_asarray(body: bytes) -> np.ndarray:
    import orjson

    return np.asarray(orjson.loads(body)["instances"], dtype=np.float64)


@pytest.mark.parametrize("rows", PARSE_SIZES)
def test_raw(benchmark, rows: int) -> None:
    benchmark.group = f"parse {rows} rows"
    body = request_body(rows)
    assert benchmark(orjson_asarray, body).shape == (rows, N_FEATURES)


@pytest.mark.parametrize("rows", PARSE_SIZES)
def test_fastparse(benchmark, rows: int) -> None:
    from predictor_runtime import fastparse

    benchmark.group = f"parse {rows} rows"
    body = request_body(rows)
    out = benchmark(fastparse.numeric_instances, body)
    assert out is not None and np.array_equal(out, orjson_asarray(body))
