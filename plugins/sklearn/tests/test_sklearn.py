"""The sklearn adapter: tiny real models trained into tmp dirs, served through the dispatcher
and the CLI, compared with the estimator's own predictions on the same input."""

from __future__ import annotations

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
from predictor_runtime_sklearn import SklearnFramework
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from predictor_runtime.dispatcher import Dispatcher
from predictor_runtime.errors import (
    FrameworkNotFoundError,
    InvalidInstanceError,
    InvalidRequestError,
    ModelLoadError,
)
from predictor_runtime.loader import load_model
from predictor_runtime.testing import run_cli as cli

# -- helpers and fixtures ---------------------------------------------------------------


def save(model: Any, directory: Path, name: str = "model.joblib") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    if name.endswith(".pkl"):
        (directory / name).write_bytes(pickle.dumps(model))
    else:
        joblib.dump(model, directory / name)
    return str(directory)


def serve(model_dir: str, instances: list[Any], **extra: Any) -> list[Any]:
    """Predictions for ``instances`` through load_model + Dispatcher.predict_body."""
    dispatcher = Dispatcher(load_model(model_dir))
    body = orjson.dumps({"instances": instances, **extra})
    return orjson.loads(dispatcher.predict_body(body))["predictions"]


def handle(model_dir: str, instances: list[Any], **kwargs: Any) -> tuple[int, str]:
    """(status, error message) of a failing request."""
    dispatcher = Dispatcher(load_model(model_dir), **kwargs)
    status, body = dispatcher.handle(orjson.dumps({"instances": instances}))
    return status, orjson.loads(body).get("error", "")


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory, iris: Any) -> str:
    X, y = iris
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    return save(model, tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A pipeline: ColumnTransformer over numeric and string columns, saved as model.pkl."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "income": rng.normal(50_000, 10_000, n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    y = ((frame["age"] > 40) ^ (frame["color"] == "red")).astype(int)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(frame, y)
    return save(model, tmp_path_factory.mktemp("mixed"), "model.pkl")


MIXED_ROWS = [
    {"age": 25.0, "income": 40_000.0, "color": "red"},
    {"age": 61.0, "income": 72_500.5, "color": "blue"},
    {"age": 44.0, "income": 51_000.0, "color": "purple"},  # unseen category: ignored
]


# -- predictions equal the framework's own ------------------------------------------------


def test_numeric_instances_match_model_predict(iris_dir: str, iris: Any) -> None:
    X = iris[0][::7]
    expected = joblib.load(Path(iris_dir, "model.joblib")).predict(X)
    assert serve(iris_dir, X.tolist()) == expected.tolist()


def test_from_path_returns_a_framework_instance(iris_dir: str) -> None:
    model = load_model(iris_dir)
    assert model.framework == "sklearn"
    assert isinstance(model.predictor, SklearnFramework)
    assert model.decode_b64 is False
    assert model.batching is True


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(np.array(["setosa", "versicolor", "virginica"]), id="strings"),
        pytest.param(np.array([False, True, True]), id="bools"),
        pytest.param(np.array([10, -3, 7]), id="ints"),
    ],
)
def test_class_labels_of_any_dtype_are_json_safe(
    tmp_path: Path, iris: Any, labels: np.ndarray
) -> None:
    X, y = iris
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, labels[y])
    d = save(model, tmp_path)
    got = serve(d, X[::10].tolist())
    assert got == model.predict(X[::10]).tolist()
    assert {type(v) for v in got} == {type(labels[0].item())}


def test_regressor_saved_as_plain_pickle(tmp_path: Path) -> None:
    X, y = load_digits(return_X_y=True)
    model = Ridge(alpha=1.0).fit(X, y)
    d = save(model, tmp_path, "model.pkl")
    assert serve(d, X[:5].tolist()) == model.predict(X[:5]).tolist()


def test_named_inputs_to_column_transformer_pipeline(mixed_dir: str) -> None:
    model = pickle.loads(Path(mixed_dir, "model.pkl").read_bytes())
    expected = model.predict(pd.DataFrame(MIXED_ROWS))
    assert serve(mixed_dir, MIXED_ROWS) == expected.tolist()
    # Key order in the request does not matter.
    reordered = [dict(reversed(list(r.items()))) for r in MIXED_ROWS]
    assert serve(mixed_dir, reordered) == expected.tolist()


def test_numeric_lists_to_model_fitted_with_feature_names(tmp_path: Path) -> None:
    """A DataFrame-fitted model gets a DataFrame: no 'X does not have valid feature names'
    warning (warnings are errors here), and named inputs work too."""
    data = load_breast_cancer(as_frame=True)
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)
    model.fit(data.data, data.target)
    d = save(model, tmp_path)
    rows = data.data.iloc[:20]
    expected = model.predict(rows).tolist()
    assert serve(d, rows.to_numpy().tolist()) == expected
    assert serve(d, rows.to_dict(orient="records")) == expected


def test_probabilities_opt_in(iris_dir: str, iris: Any) -> None:
    X = iris[0][:4]
    model = joblib.load(Path(iris_dir, "model.joblib"))
    got = serve(iris_dir, X.tolist(), probabilities=True)
    assert got == model.predict_proba(X).tolist()
    assert serve(iris_dir, X.tolist(), probabilities=False) == model.predict(X).tolist()


def test_probabilities_errors(iris_dir: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match='"probabilities" must be true or false'):
        Dispatcher(load_model(iris_dir)).predict_body(
            b'{"instances": [[1,2,3,4]], "probabilities": "yes"}'
        )
    X, y = load_digits(return_X_y=True)
    d = save(Ridge().fit(X[:50], y[:50]), tmp_path)
    with pytest.raises(InvalidRequestError, match="Ridge.*no predict_proba"):
        serve(d, X[:1].tolist(), probabilities=True)


def test_request_keys_are_consumed_not_passed_to_the_model(iris_dir: str, iris: Any) -> None:
    X = iris[0][:3]
    expected = joblib.load(Path(iris_dir, "model.joblib")).predict(X).tolist()
    got = serve(iris_dir, X.tolist(), signature_name="serving_default", whatever={"a": 1})
    assert got == expected


def test_b64_objects_are_left_as_is(mixed_dir: str) -> None:
    """decode_b64 is off for sklearn: a {"b64": ...} value reaches the model as an object,
    which is an error naming the instance and input rather than silently decoded bytes."""
    rows = [dict(MIXED_ROWS[0]), dict(MIXED_ROWS[1], color={"b64": "cmVk"})]
    status, message = handle(mixed_dir, rows)
    assert status == 400
    assert "instance 1" in message
    assert "'color'" in message


def test_micro_batches_keep_order_and_instance_numbers(iris_dir: str, iris: Any) -> None:
    X = iris[0][::5]
    expected = joblib.load(Path(iris_dir, "model.joblib")).predict(X).tolist()
    dispatcher = Dispatcher(load_model(iris_dir), max_batch_size=4)
    got = orjson.loads(dispatcher.predict_body(orjson.dumps({"instances": X.tolist()})))
    assert got["predictions"] == expected
    rows = X[:8].tolist()
    rows[6] = [1.0, 2.0, "abc", 4.0]
    status, message = handle(iris_dir, rows, max_batch_size=4)
    assert status == 400
    assert "instance 6" in message


# -- bad instances: 400 errors naming the instance ----------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([[1.0, 2.0, 3.0]] * 2, "instance 0: expected 4 features, got 3", id="count"),
        pytest.param(
            [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0]],
            "instance 1: expected 4 features, got 3",
            id="ragged",
        ),
        pytest.param(
            [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, "abc", 4]],
            "instance 2: feature 2: expected a number (or null), got str 'abc'",
            id="non-numeric",
        ),
        pytest.param(
            [{"sepal": 1.0}],
            "instance 0: got an object with keys ['sepal'], but this model was fitted "
            "without feature names, so it takes lists of 4 numbers",
            id="object-to-unnamed-model",
        ),
        pytest.param([[1, 2, 3, 4], "text"], "instance 1: expected a list of numbers", id="str"),
    ],
)
def test_bad_numeric_instances(iris_dir: str, rows: list[Any], expected: str) -> None:
    status, message = handle(iris_dir, rows)
    assert status == 400
    assert expected in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda r: {k: v for k, v in r.items() if k != "income"},
            "instance 1: missing input(s) ['income']",
            id="missing",
        ),
        pytest.param(
            lambda r: {**r, "height": 1.8},
            "instance 1: unexpected input(s) ['height']",
            id="unknown",
        ),
        pytest.param(
            lambda r: {**r, "age": "old"},
            "instance 1: input 'age': expected a number (as in the other instances), got str 'old'",
            id="string-in-numeric-column",
        ),
        pytest.param(
            lambda r: {**r, "age": [1, 2]},
            "instance 1: input 'age': expected a number or a string, got list [1, 2]",
            id="nested",
        ),
    ],
)
def test_bad_named_instances(mixed_dir: str, change: Any, expected: str) -> None:
    rows = [MIXED_ROWS[0], change(MIXED_ROWS[1]), MIXED_ROWS[2]]
    status, message = handle(mixed_dir, rows)
    assert status == 400
    assert expected in message


def test_lists_to_a_model_with_string_inputs_suggest_objects(mixed_dir: str) -> None:
    status, message = handle(mixed_dir, [[25.0, 40_000.0, "red"]])
    assert status == 400
    assert "instance 0: feature 2: expected a number" in message
    assert "send objects keyed by the model's feature names (age, income, color)" in message


def test_instance_error_is_the_core_type(iris_dir: str) -> None:
    predictor = load_model(iris_dir).predictor
    with pytest.raises(InvalidInstanceError) as info:
        predictor.predict([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]])
    assert info.value.index == 1


# -- loading ------------------------------------------------------------------------------


def test_two_model_files_is_an_error_naming_both(tmp_path: Path, iris: Any) -> None:
    model = DecisionTreeClassifier(max_depth=2).fit(*iris)
    save(model, tmp_path, "model.joblib")
    save(model, tmp_path, "model.pkl")
    with pytest.raises(ModelLoadError, match=r"model\.joblib and model\.pkl"):
        load_model(tmp_path, framework="sklearn")
    # Without --framework the loader's auto-detection refuses too, listing both.
    with pytest.raises(FrameworkNotFoundError, match=r"model\.joblib.*model\.pkl.*--framework"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"this is not a pickle", "model.joblib cannot be unpickled", id="garbage"),
        pytest.param(b"", "model.joblib is empty", id="empty"),
        pytest.param(pickle.dumps(object())[:-3], "cannot be unpickled", id="truncated"),
        pytest.param(
            pickle.dumps({"weights": [1, 2]}),
            "model.joblib holds dict {'weights': [1, 2]}, not a scikit-learn estimator",
            id="wrong-object",
        ),
    ],
)
def test_unloadable_model_files(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "model.joblib").write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        load_model(tmp_path)
    assert expected in str(info.value)
    assert str(tmp_path) in str(info.value)


# -- command line -------------------------------------------------------------------------


def test_cli_predict_auto_detects_sklearn(iris_dir: str, iris: Any, tmp_path: Path) -> None:
    X = iris[0][::15]
    instances = tmp_path / "instances.jsonl"
    instances.write_text("\n".join(orjson.dumps(r).decode() for r in X.tolist()) + "\n")
    expected = joblib.load(Path(iris_dir, "model.joblib")).predict(X).tolist()
    for extra in ([], ["--framework", "sklearn"], ["--framework", "SCIKIT_LEARN"]):
        done = cli("predict", "--model-dir", iris_dir, "--json-instances", str(instances), *extra)
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout) == {"predictions": expected}


def test_cli_named_inputs_and_errors(mixed_dir: str, tmp_path: Path) -> None:
    model = pickle.loads(Path(mixed_dir, "model.pkl").read_bytes())
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(orjson.dumps(r).decode() for r in MIXED_ROWS))
    done = cli("predict", "--model-dir", mixed_dir, "--json-instances", str(good))
    assert done.returncode == 0, done.stderr
    expected = model.predict(pd.DataFrame(MIXED_ROWS)).tolist()
    assert orjson.loads(done.stdout)["predictions"] == expected

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"age": 1, "income": 2, "color": "red"}\n{"age": 1, "color": "red"}\n')
    done = cli("predict", "--model-dir", mixed_dir, "--json-instances", str(bad))
    assert done.returncode == 1
    assert "instance 1: missing input(s) ['income']" in done.stderr
    assert "Traceback" not in done.stderr


def test_plugins_command_lists_the_sklearn_distribution() -> None:
    done = cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["framework"]: r for r in orjson.loads(done.stdout)}
    assert rows["sklearn"]["api_name"] == "SCIKIT_LEARN"
    assert rows["sklearn"]["distribution"].startswith("predictor-runtime-sklearn ")
    assert rows["sklearn"]["model_files"] == ["model.joblib", "model.pkl"]


def test_discovery_does_not_import_the_framework() -> None:
    code = (
        "import sys, predictor_runtime\n"
        "from predictor_runtime.plugins import framework_registry\n"
        "assert 'sklearn' in framework_registry().frameworks\n"
        "print(sorted(m for m in ('sklearn', 'joblib', 'pandas', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
