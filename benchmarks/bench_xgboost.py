"""End-to-end cost of the xgboost adapter against the Booster's bare predict, same run.

Run: ``python -m pytest benchmarks/bench_xgboost.py -p no:cacheprovider --benchmark-only``.
Each group (1 row, 1,000 rows; 16 rows for the first two) holds:

- ``bare_inplace``: ``booster.inplace_predict(X)`` on a prepared float32 array (baseline);
- ``dense_call``: the adapter's :class:`DensePredict` on the same array (the C call
  ``inplace_predict`` makes, without its Python wrapper; also for 16 rows, a W1 batch);
- ``bare_dmatrix``: ``booster.predict(DMatrix(X))``, what AI Platform's runtime does;
- ``adapter``: the adapter's ``predict`` on the decoded instances (list -> array -> predict);
- ``dispatcher``: ``Dispatcher.predict_body(json_bytes)``: parse, batch, predict, serialize.

Model: binary:logistic, 100 trees, depth 6, 30 features, synthetic data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import xgboost as xgb
from predictor_runtime_xgboost._dense import DensePredict

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.loader import load_model

N_FEATURES = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, N_FEATURES))
    y = (X[:, :5] @ rng.normal(size=5) + 0.5 * rng.normal(size=4000) > 0).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 6}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=100)
    model_dir: Path = tmp_path_factory.mktemp("xgb")
    (model_dir / "model.ubj").write_bytes(booster.save_raw("ubj"))
    loaded = load_model(model_dir)
    assert loaded.framework == "xgboost"
    X_test = rng.normal(size=(1000, N_FEATURES))
    return {"booster": loaded.predictor.booster, "loaded": loaded, "X": X_test}


def expected(setup: dict[str, Any], rows: int) -> np.ndarray:
    X = setup["X"][:rows].astype(np.float32)
    return setup["booster"].predict(xgb.DMatrix(X, missing=np.nan))


@pytest.mark.parametrize("rows", [1, 16, 1000])
def test_bare_inplace(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"xgboost: {rows} row(s)"
    X = np.ascontiguousarray(setup["X"][:rows], dtype=np.float32)
    out = benchmark(setup["booster"].inplace_predict, X, missing=np.nan)
    assert np.array_equal(out, expected(setup, rows))


@pytest.mark.parametrize("rows", [1, 16, 1000])
def test_dense_call(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"xgboost: {rows} row(s)"
    X = np.ascontiguousarray(setup["X"][:rows], dtype=np.float32)
    out = benchmark(DensePredict(setup["booster"]), X)
    assert np.array_equal(out, expected(setup, rows))


@pytest.mark.parametrize("rows", [1, 1000])
def test_bare_dmatrix(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"xgboost: {rows} row(s)"
    X = np.ascontiguousarray(setup["X"][:rows], dtype=np.float32)
    booster = setup["booster"]
    benchmark(lambda: booster.predict(xgb.DMatrix(X, missing=np.nan)))


@pytest.mark.parametrize("rows", [1, 1000])
def test_adapter_predict(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"xgboost: {rows} row(s)"
    instances = setup["X"][:rows].tolist()
    out = benchmark(setup["loaded"].predictor.predict, instances)
    assert np.array_equal(out, expected(setup, rows))


@pytest.mark.parametrize("rows", [1, 1000])
def test_dispatcher_predict_body(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"xgboost: {rows} row(s)"
    body = orjson.dumps({"instances": setup["X"][:rows].tolist()})
    dispatcher = Dispatcher(setup["loaded"])
    out = benchmark(dispatcher.predict_body, body)
    got = np.array(orjson.loads(out)["predictions"]).astype(np.float32)
    assert np.array_equal(got, expected(setup, rows))


def test_bare_inplace_with_missing(benchmark: Any, setup: dict[str, Any]) -> None:
    benchmark.group = "xgboost: 1000 rows, NaN literal in the body"
    X = setup["X"].astype(np.float32)
    X[::10, 3] = np.nan
    benchmark(setup["booster"].inplace_predict, X, missing=np.nan)


def test_dispatcher_predict_body_nan_literal(benchmark: Any, setup: dict[str, Any]) -> None:
    """AI Platform documents ``NaN`` for missing XGBoost features; orjson rejects the
    literal, so the core parses such bodies with the standard library."""
    benchmark.group = "xgboost: 1000 rows, NaN literal in the body"
    X = setup["X"].copy()
    X[::10, 3] = np.nan
    body = json.dumps({"instances": X.tolist()}).encode()
    assert b"NaN" in body
    dispatcher = Dispatcher(setup["loaded"])
    out = benchmark(dispatcher.predict_body, body)
    got = np.array(orjson.loads(out)["predictions"]).astype(np.float32)
    want = setup["booster"].predict(xgb.DMatrix(X.astype(np.float32), missing=np.nan))
    assert np.array_equal(got, want)
