"""End-to-end cost of the sklearn adapter against the model's bare predict, same run.

Run: ``python -m pytest benchmarks/bench_sklearn.py -p no:cacheprovider --benchmark-only``.
Each group (1 row, 1,000 rows) holds:

- ``bare``: ``model.predict(X)`` on a prepared float64 array (the baseline);
- ``adapter``: the adapter's ``predict`` on the decoded instances (list -> array -> predict);
- ``dispatcher``: ``Dispatcher.predict_body(json_bytes)``: parse, batch, predict, serialize.

Model: RandomForestClassifier, 100 trees, depth 8, 30 features, synthetic data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pytest
from sklearn.ensemble import RandomForestClassifier

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.loader import load_model

N_FEATURES = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, N_FEATURES))
    y = (X[:, :5] @ rng.normal(size=5) + 0.5 * rng.normal(size=4000) > 0).astype(int)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y)
    model_dir: Path = tmp_path_factory.mktemp("rf")
    joblib.dump(model, model_dir / "model.joblib")
    loaded = load_model(model_dir)
    assert loaded.framework == "sklearn"
    return {"model": model, "loaded": loaded, "X": rng.normal(size=(1000, N_FEATURES))}


@pytest.mark.parametrize("rows", [1, 1000])
def test_bare_predict(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"sklearn RandomForest: {rows} row(s)"
    X = np.ascontiguousarray(setup["X"][:rows])
    benchmark(setup["model"].predict, X)


@pytest.mark.parametrize("rows", [1, 1000])
def test_adapter_predict(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"sklearn RandomForest: {rows} row(s)"
    instances = setup["X"][:rows].tolist()
    out = benchmark(setup["loaded"].predictor.predict, instances)
    assert np.array_equal(out, setup["model"].predict(setup["X"][:rows]))


@pytest.mark.parametrize("rows", [1, 1000])
def test_dispatcher_predict_body(benchmark: Any, setup: dict[str, Any], rows: int) -> None:
    benchmark.group = f"sklearn RandomForest: {rows} row(s)"
    body = orjson.dumps({"instances": setup["X"][:rows].tolist()})
    dispatcher = Dispatcher(setup["loaded"])
    out = benchmark(dispatcher.predict_body, body)
    expected = setup["model"].predict(setup["X"][:rows]).tolist()
    assert orjson.loads(out)["predictions"] == expected
