"""The xgboost adapter: tiny real models trained into tmp dirs, served through the dispatcher
and the CLI, compared with the Booster's own predictions on the same input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from predictor_runtime_xgboost import XGBoostFramework, detect_framework
from predictor_runtime_xgboost._dense import DensePredict
from predictor_runtime_xgboost._detect import top_level_class
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.errors import FrameworkNotFoundError, InvalidInstanceError, ModelLoadError
from predictor_runtime.loader import load_model
from predictor_runtime.testing import run_cli as cli

# -- helpers and fixtures ---------------------------------------------------------------


def serve_body(model_dir: str, body: bytes, **kwargs: Any) -> list[Any]:
    dispatcher = Dispatcher(load_model(model_dir), **kwargs)
    return orjson.loads(dispatcher.predict_body(body))["predictions"]


def serve(model_dir: str, instances: Any, **extra: Any) -> list[Any]:
    """Predictions through load_model + Dispatcher.predict_body; NaN sent as the literal."""
    body = json.dumps({"instances": instances, **extra}).encode()
    return serve_body(model_dir, body)


def handle(model_dir: str, instances: list[Any], **kwargs: Any) -> tuple[int, str]:
    dispatcher = Dispatcher(load_model(model_dir), **kwargs)
    status, body = dispatcher.handle(orjson.dumps({"instances": instances}))
    return status, orjson.loads(body).get("error", "")


def native(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """The Booster's own output through a DMatrix (what AI Platform calls)."""
    data = np.asarray(X, dtype=np.float32)
    return booster.predict(xgb.DMatrix(data, missing=np.nan, feature_names=booster.feature_names))


def as_f32(predictions: list[Any]) -> np.ndarray:
    """JSON predictions back to float32 (orjson writes float32 values exactly)."""
    return np.array(predictions, dtype=np.float64).astype(np.float32)


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # NaN as the literal
    return str(path)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def booster(cancer: Any) -> xgb.Booster:
    X, y = cancer
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=5)


@pytest.fixture(scope="module")
def json_dir(tmp_path_factory: pytest.TempPathFactory, booster: xgb.Booster) -> str:
    d = tmp_path_factory.mktemp("json")
    (d / "model.json").write_bytes(booster.save_raw("json"))
    return str(d)


@pytest.fixture(scope="module")
def iris_clf_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A multi-class XGBClassifier saved with joblib (uncompressed): found by content."""
    X, y = load_iris(return_X_y=True)
    clf = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(X, y)
    d = tmp_path_factory.mktemp("iris_clf")
    joblib.dump(clf, d / "model.joblib")
    return str(d)


def sample(X: np.ndarray) -> np.ndarray:
    return X[::40]


# -- predictions equal the Booster's own ------------------------------------------------


@pytest.mark.parametrize("name", ["model.json", "model.ubj", "model.bst"])
def test_native_formats_match_booster_output(
    tmp_path: Path, booster: xgb.Booster, cancer: Any, name: str
) -> None:
    fmt = (
        "json" if name.endswith(".json") else "ubj"
    )  # model.bst: UBJSON under the AI Platform name
    (tmp_path / name).write_bytes(booster.save_raw(fmt))
    X = sample(cancer[0])
    got = serve(str(tmp_path), X.tolist())
    np.testing.assert_array_equal(as_f32(got), native(booster, X))
    model = load_model(tmp_path)
    assert model.framework == "xgboost"
    assert isinstance(model.predictor, XGBoostFramework)
    assert model.decode_b64 is False


def test_inplace_predict_equals_dmatrix_predict(json_dir: str, cancer: Any) -> None:
    """The adapter's choice (inplace_predict) gives exactly DMatrix + predict, NaNs included."""
    predictor = load_model(json_dir).predictor
    X = cancer[0][:50].copy()
    X[::3, ::4] = np.nan
    ours = predictor.predict(X.tolist())
    np.testing.assert_array_equal(ours, native(predictor.booster, X))


def _wrapper(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return booster.inplace_predict(X, missing=np.nan, validate_features=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_call_equals_inplace_predict(booster: xgb.Booster, cancer: Any, dtype: Any) -> None:
    """The C-API call returns exactly what the wrapper returns: values, dtype, shape."""
    dense = DensePredict(booster)
    assert dense.available
    X = cancer[0][:37].astype(dtype)
    X[::4, ::3] = np.nan
    for rows in (X[:1], X):
        got, expected = dense(np.ascontiguousarray(rows)), _wrapper(booster, rows)
        assert got.dtype == expected.dtype == np.float32
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_dense_call_keeps_multi_output_shapes() -> None:
    """Several classes (softprob) and several targets come back as [rows, k], as from XGBoost."""
    X, y = load_iris(return_X_y=True)
    softprob = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
        xgb.DMatrix(X, label=y),
        num_boost_round=3,
    )
    Y = np.stack([X[:, 0] + X[:, 1], X[:, 2] * 2], axis=1)
    targets = xgb.XGBRegressor(n_estimators=3, max_depth=2, n_jobs=1).fit(X, Y).get_booster()
    for model, width in ((softprob, 3), (targets, 2)):
        got = DensePredict(model)(X[:9].astype(np.float32))
        assert got.shape == (9, width)
        np.testing.assert_array_equal(got, _wrapper(model, X[:9].astype(np.float32)))


def test_dense_call_hands_other_inputs_to_the_wrapper(booster: xgb.Booster, cancer: Any) -> None:
    """Strided and integer arrays, and XGBoost's own errors, go through inplace_predict."""
    dense = DensePredict(booster)
    wide = np.repeat(cancer[0][:5].astype(np.float32), 2, axis=1)
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(dense(strided), _wrapper(booster, strided))
    ints = cancer[0][:5].astype(np.int32)
    np.testing.assert_array_equal(dense(ints), _wrapper(booster, ints))
    with pytest.raises(xgb.core.XGBoostError, match="Number of columns in data must equal"):
        dense(np.zeros((2, 3), dtype=np.float32))


def test_joblib_xgbclassifier_gives_booster_probabilities(iris_clf_dir: str) -> None:
    X, _ = load_iris(return_X_y=True)
    clf = joblib.load(Path(iris_clf_dir, "model.joblib"))
    assert detect_framework(iris_clf_dir) == "xgboost"
    got = serve(iris_clf_dir, sample(X).tolist())
    expected = native(clf.get_booster(), sample(X))
    assert expected.shape == (len(sample(X)), 3)  # multi:softprob: one row per instance
    np.testing.assert_array_equal(as_f32(got), expected)
    np.testing.assert_allclose(as_f32(got), clf.predict_proba(sample(X)), rtol=1e-6)


def test_pickled_regressor(tmp_path: Path) -> None:
    X, y = load_digits(return_X_y=True)
    reg = xgb.XGBRegressor(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(reg))
    got = serve(str(tmp_path), X[:5].tolist())
    np.testing.assert_array_equal(as_f32(got), native(reg.get_booster(), X[:5]))


def test_pickled_booster_with_framework_enum(
    tmp_path: Path, booster: xgb.Booster, cancer: Any
) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(booster, protocol=2))
    X = sample(cancer[0])
    model = load_model(tmp_path, framework="XGBOOST")
    got = orjson.loads(Dispatcher(model).predict_body(orjson.dumps({"instances": X.tolist()})))
    np.testing.assert_array_equal(as_f32(got["predictions"]), native(booster, X))


def test_compressed_joblib_is_handed_off_by_the_sklearn_adapter(
    tmp_path: Path, cancer: Any
) -> None:
    """detect_framework cannot peek into a compressed joblib file; the sklearn adapter loads
    it, sees an XGBoost model and hands it to this adapter: still the Booster's output."""
    X, y = cancer
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(X, y)
    joblib.dump(clf, tmp_path / "model.joblib", compress=3)
    assert detect_framework(str(tmp_path)) is None
    model = load_model(tmp_path)
    assert isinstance(model.predictor, XGBoostFramework)
    got = serve(str(tmp_path), sample(X).tolist())
    expected = native(clf.get_booster(), sample(X))
    assert expected.ndim == 1  # binary:logistic: P(class 1), not labels
    np.testing.assert_array_equal(as_f32(got), expected)


def test_hand_off_without_the_xgboost_framework_is_a_clear_error(
    tmp_path: Path, cancer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor_runtime import plugins

    X, y = cancer
    clf = xgb.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(X, y)
    joblib.dump(clf, tmp_path / "model.joblib", compress=3)
    monkeypatch.setenv(plugins.BLOCK_ENV, "xgboost")
    plugins.reset()
    try:
        with pytest.raises(
            ModelLoadError,
            match=r"holds an XGBoost model .*XGBClassifier.*"
            r"no xgboost framework is registered",
        ):
            load_model(tmp_path)
    finally:
        monkeypatch.delenv(plugins.BLOCK_ENV)
        plugins.reset()


def test_sklearn_pipeline_around_xgboost_stays_sklearn(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    pipe = Pipeline(
        [("scale", StandardScaler()), ("xgb", xgb.XGBClassifier(n_estimators=2, n_jobs=1))]
    ).fit(X, y)
    joblib.dump(pipe, tmp_path / "model.joblib")
    assert detect_framework(str(tmp_path)) is None
    assert serve(str(tmp_path), X[:4].tolist()) == pipe.predict(X[:4]).tolist()


def test_nan_and_null_mean_missing(json_dir: str, booster: xgb.Booster, cancer: Any) -> None:
    X = cancer[0][:6].copy()
    X[0, 0] = X[1, 5] = X[2, :] = X[4, 29] = np.nan
    expected = native(booster, X)
    assert len(set(expected.tolist())) > 1
    rows_nan = X.tolist()  # json.dumps writes the NaN literal
    rows_null = [[None if np.isnan(v) else v for v in row] for row in rows_nan]
    np.testing.assert_array_equal(as_f32(serve(json_dir, rows_nan)), expected)
    np.testing.assert_array_equal(as_f32(serve(json_dir, rows_null)), expected)


def test_named_inputs_by_feature_name(tmp_path: Path, cancer: Any) -> None:
    data = load_breast_cancer(as_frame=True)
    clf = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(data.data, data.target)
    (tmp_path / "model.ubj").write_bytes(clf.get_booster().save_raw("ubj"))
    rows = data.data.iloc[:5]
    records = rows.to_dict(orient="records")
    records[1]["mean radius"] = None
    expected = native(clf.get_booster(), pd.DataFrame(records).to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(as_f32(serve(str(tmp_path), records)), expected)
    # Lists still work, in the model's feature order.
    np.testing.assert_array_equal(
        as_f32(serve(str(tmp_path), rows.to_numpy().tolist())), native(clf.get_booster(), rows)
    )
    status, message = handle(str(tmp_path), [records[0], {**records[2], "color": 1}])
    assert status == 400
    assert "instance 1: unexpected input(s) ['color']" in message
    bad = {**records[2], "mean texture": "high"}
    status, message = handle(str(tmp_path), [records[0], records[1], bad])
    assert "instance 2: input 'mean texture': expected a number (or null), got str 'high'" in (
        message
    )


def test_request_keys_are_ignored(json_dir: str, booster: xgb.Booster, cancer: Any) -> None:
    X = sample(cancer[0])
    got = serve(json_dir, X.tolist(), signature_name="serving_default", probabilities=True)
    np.testing.assert_array_equal(as_f32(got), native(booster, X))


# -- bad instances ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([[1.0] * 29] * 2, "instance 0: expected 30 features, got 29", id="count"),
        pytest.param(
            [[1.0] * 30, [1.0] * 30, [1.0] * 31],
            "instance 2: expected 30 features, got 31",
            id="ragged",
        ),
        pytest.param(
            [[1.0] * 30, [1.0] * 29 + ["x"]],
            "instance 1: feature 29: expected a number (or null), got str 'x'",
            id="non-numeric",
        ),
        pytest.param(
            [{"a": 1.0}],
            "instance 0: got an object with keys ['a'], but this model has no feature names",
            id="object-to-unnamed-model",
        ),
    ],
)
def test_bad_instances(json_dir: str, rows: list[Any], expected: str) -> None:
    status, message = handle(json_dir, rows)
    assert status == 400
    assert expected in message


def test_bad_instance_index_is_shifted_in_micro_batches(json_dir: str) -> None:
    rows: list[Any] = [[0.5] * 30 for _ in range(7)]
    rows[5] = [0.5] * 29
    status, message = handle(json_dir, rows, max_batch_size=2)
    assert (status, "instance 5: expected 30 features, got 29" in message) == (400, True)
    with pytest.raises(InvalidInstanceError):
        load_model(json_dir).predictor.predict(rows)


# -- loading ------------------------------------------------------------------------------


def test_two_model_files_is_an_error_naming_both(tmp_path: Path, booster: xgb.Booster) -> None:
    (tmp_path / "model.json").write_bytes(booster.save_raw("json"))
    (tmp_path / "model.ubj").write_bytes(booster.save_raw("ubj"))
    with pytest.raises(
        ModelLoadError, match=r"more than one model file \(model\.json, model\.ubj\)"
    ):
        load_model(tmp_path, framework="xgboost")
    with pytest.raises(FrameworkNotFoundError, match=r"model\.json.*model\.ubj.*--framework"):
        load_model(tmp_path)


def test_native_file_beside_an_xgboost_joblib_is_ambiguous(
    tmp_path: Path, booster: xgb.Booster
) -> None:
    (tmp_path / "model.bst").write_bytes(booster.save_raw("ubj"))
    joblib.dump(booster, tmp_path / "model.joblib")
    assert detect_framework(str(tmp_path)) == "xgboost"
    with pytest.raises(ModelLoadError, match=r"model\.bst, model\.joblib"):
        load_model(tmp_path)


def test_sklearn_joblib_beside_model_json_is_not_a_candidate(
    tmp_path: Path, booster: xgb.Booster, cancer: Any
) -> None:
    X, y = cancer
    (tmp_path / "model.json").write_bytes(booster.save_raw("json"))
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(X, y), tmp_path / "model.joblib")
    model = load_model(tmp_path, framework="xgboost")
    assert np.allclose(as_f32(Dispatcher(model).predict(X[:3].tolist())), native(booster, X[:3]))
    (tmp_path / "model.json").unlink()
    with pytest.raises(ModelLoadError, match=r"holds a sklearn\..*not an XGBoost model"):
        load_model(tmp_path, framework="xgboost")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        pytest.param(
            "model.json",
            b'{"learner": ',
            "model.json is not a valid XGBoost model",
            id="truncated-json",
        ),
        pytest.param(
            "model.ubj", b"{L\x00\x00", "model.ubj is not a valid XGBoost model", id="truncated-ubj"
        ),
        pytest.param(
            "model.bst",
            b"binf\x00\x00legacy",
            "is not an XGBoost JSON or UBJSON model",
            id="legacy-binary",
        ),
        pytest.param("model.bst", b"", "model.bst is empty", id="empty"),
        pytest.param(
            "model.pkl", b"\x80\x04garbage", "model.pkl cannot be unpickled", id="bad-pickle"
        ),
    ],
)
def test_corrupt_model_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        load_model(tmp_path, framework="xgboost")
    assert expected in str(info.value)
    assert str(tmp_path) in str(info.value)
    assert "Stack trace" not in str(info.value)


def test_joblib_holding_a_sklearn_model_is_not_xgboost(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(X, y), tmp_path / "model.joblib")
    assert detect_framework(str(tmp_path)) is None
    with pytest.raises(
        ModelLoadError,
        match=r"holds a sklearn\..*RandomForestClassifier, not an "
        r"XGBoost model.*--framework sklearn",
    ):
        load_model(tmp_path, framework="xgboost")
    joblib.dump({"a": 1}, tmp_path / "model.joblib")
    with pytest.raises(ModelLoadError, match=r"holds a builtins\.dict, not an XGBoost model"):
        load_model(tmp_path, framework="xgboost")


# -- detect_framework: peeking at the pickle stream ----------------------------------------


def test_top_level_class_reads_pickle_opcodes(tmp_path: Path, booster: xgb.Booster) -> None:
    path = tmp_path / "model.pkl"
    for protocol in (2, 3, 4, 5):
        path.write_bytes(pickle.dumps(booster, protocol=protocol))
        assert top_level_class(path) == ("xgboost.core", "Booster")
    cases: list[tuple[bytes, Any]] = [
        (pickle.dumps({"model": booster}), None),  # a dict holding a model: not claimed
        (pickle.dumps([1, 2]), None),
        (pickle.dumps(booster, protocol=0), None),  # no PROTO opcode: not peeked
        (b"\x80\x05\x95 truncated", None),
        (b"", None),
    ]
    for content, expected in cases:
        path.write_bytes(content)
        assert top_level_class(path) == expected
    assert top_level_class(tmp_path / "missing.pkl") is None


def test_detect_needs_exactly_one_pickle(tmp_path: Path, booster: xgb.Booster) -> None:
    joblib.dump(booster, tmp_path / "model.joblib")
    assert detect_framework(str(tmp_path)) == "xgboost"
    joblib.dump(booster, tmp_path / "model.pkl")
    assert detect_framework(str(tmp_path)) is None  # the loader then lists both files
    with pytest.raises(FrameworkNotFoundError, match=r"model\.joblib.*model\.pkl"):
        load_model(tmp_path)


# -- command line -------------------------------------------------------------------------


def test_cli_predict_auto_detects_and_handles_nan(
    json_dir: str, iris_clf_dir: str, booster: xgb.Booster, cancer: Any, tmp_path: Path
) -> None:
    X = sample(cancer[0]).copy()
    X[0, 3] = np.nan
    rows: list[Any] = X.tolist()
    rows[1][7] = None
    instances = write_jsonl(tmp_path / "cancer.jsonl", rows)
    done = cli("predict", "--model-dir", json_dir, "--json-instances", instances)
    assert done.returncode == 0, done.stderr
    X[1, 7] = np.nan
    np.testing.assert_array_equal(
        as_f32(orjson.loads(done.stdout)["predictions"]), native(booster, X)
    )

    iris_X = sample(load_iris(return_X_y=True)[0])
    iris_rows = write_jsonl(tmp_path / "iris.jsonl", iris_X.tolist())
    clf = joblib.load(Path(iris_clf_dir, "model.joblib"))
    done = cli("predict", "--model-dir", iris_clf_dir, "--json-instances", iris_rows)
    assert done.returncode == 0, done.stderr
    got = as_f32(orjson.loads(done.stdout)["predictions"])
    np.testing.assert_array_equal(got, native(clf.get_booster(), iris_X))

    bad = write_jsonl(tmp_path / "bad.jsonl", [[1.0] * 30, [1.0] * 3])
    done = cli("predict", "--model-dir", json_dir, "--json-instances", bad)
    assert done.returncode == 1
    assert "instance 1: expected 30 features, got 3" in done.stderr


def test_plugins_command_lists_both_adapters() -> None:
    done = cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["framework"]: r for r in orjson.loads(done.stdout)}
    assert rows["xgboost"]["api_name"] == "XGBOOST"
    assert rows["xgboost"]["distribution"].startswith("predictor-runtime-xgboost ")
    assert rows["xgboost"]["model_files"] == ["model.bst", "model.json", "model.ubj"]
    assert rows["sklearn"]["distribution"].startswith("predictor-runtime-sklearn ")
    table = cli("plugins").stdout
    assert "predictor-runtime-xgboost" in table
    assert "predictor-runtime-sklearn" in table


def test_discovery_and_detection_do_not_import_xgboost(iris_clf_dir: str) -> None:
    code = (
        "import sys, predictor_runtime\n"
        "from predictor_runtime.plugins import framework_registry, plugin_manager\n"
        "assert 'xgboost' in framework_registry().frameworks\n"
        f"assert plugin_manager().hook.detect_framework(model_dir={iris_clf_dir!r}) == 'xgboost'\n"
        "print(sorted(m for m in ('xgboost', 'sklearn', 'joblib', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
