"""The loaded scikit-learn model: instances -> 2-D array or DataFrame -> ``model.predict``.

Imported only when a model is loaded (it imports numpy, joblib and, for named inputs,
pandas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from predictor_runtime.codecs import records_to_columns, to_array
from predictor_runtime.errors import (
    InvalidInstanceError,
    InvalidRequestError,
    ModelLoadError,
    describe,
)
from predictor_runtime.modelfiles import load_error, load_pickle

from . import MODEL_FILES, SklearnFramework


def _load_error(model_dir: str, detail: str) -> ModelLoadError:
    return load_error("sklearn", model_dir, detail)


def find_model_file(model_dir: str) -> Path:
    """The one model file of ``model_dir``; none or both is an error naming what was found."""
    present = [Path(model_dir, name) for name in MODEL_FILES if Path(model_dir, name).is_file()]
    if len(present) > 1:
        names = " and ".join(p.name for p in present)
        raise _load_error(
            model_dir, f"found both {names}; keep exactly one model file in the directory"
        )
    if not present:
        raise _load_error(model_dir, f"no model file: expected {' or '.join(MODEL_FILES)}")
    return present[0]


def is_xgboost_model(obj: Any) -> bool:
    """Whether the top-level object is an XGBoost ``Booster`` or scikit-learn wrapper."""
    module = type(obj).__module__
    return module == "xgboost" or module.startswith("xgboost.")


def _hand_off_to_xgboost(obj: Any, model_dir: str, path: Path) -> Any:
    from predictor_runtime.plugins import framework_registry

    info = framework_registry().frameworks.get("xgboost")
    from_model = getattr(info.cls, "from_model", None) if info is not None else None
    if from_model is None:
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise _load_error(
            model_dir,
            f"{path.name} holds an XGBoost model ({kind}), which the xgboost framework "
            "serves, but no xgboost framework is registered (install "
            "predictor-runtime-xgboost, or unblock it in PREDICTOR_RUNTIME_BLOCK_PLUGINS)",
        )
    return from_model(obj, model_dir=model_dir, model_file=path.name)


def load(model_dir: str) -> Any:
    """The ``from_path`` of the sklearn framework."""
    path = find_model_file(model_dir)
    model = load_pickle(path, model_dir, "sklearn")
    if is_xgboost_model(model):
        return _hand_off_to_xgboost(model, model_dir, path)
    if not callable(getattr(model, "predict", None)):
        raise _load_error(
            model_dir,
            f"{path.name} holds {describe(model)}, not a scikit-learn estimator or "
            "pipeline (it has no predict method)",
        )
    return SklearnPredictor(model, model_dir=model_dir, model_file=path.name)


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool | int | float):
        return "number"
    return "scalar"


class SklearnPredictor(SklearnFramework):
    """A loaded estimator; ``predict`` is the hot path."""

    def __init__(self, model: Any, *, model_dir: str, model_file: str) -> None:
        self.model = model
        self.model_dir = model_dir
        self.model_file = model_file
        n_features = getattr(model, "n_features_in_", None)
        self.n_features: int | None = int(n_features) if n_features is not None else None
        names = getattr(model, "feature_names_in_", None)
        self.feature_names: list[str] | None = (
            [str(n) for n in names] if names is not None else None
        )
        self._predict = model.predict

    def predict(self, instances: list[Any], *, probabilities: bool = False, **kwargs: Any) -> Any:
        """``model.predict`` (or ``predict_proba`` with ``probabilities=True``) per instance.

        Other keyword arguments (``signature_name``, unknown request keys) are ignored.
        """
        X = self.batch(instances)
        if probabilities is False:
            return self._predict(X)
        if probabilities is not True:
            raise InvalidRequestError(
                f'"probabilities" must be true or false, got {describe(probabilities)}'
            )
        predict_proba = getattr(self.model, "predict_proba", None)
        if predict_proba is None:
            raise InvalidRequestError(
                f'"probabilities" was requested but this model '
                f"({type(self.model).__name__}) has no predict_proba"
            )
        return predict_proba(X)

    # -- instances -> model input ---------------------------------------------------

    def tensor_metadata(self) -> dict[str, Any]:
        """V2 model metadata: one ``[-1, n_features]`` input, one ``predict`` output."""
        from predictor_runtime.tensors import datatype_of

        classes = getattr(self.model, "classes_", None)
        out_type = datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
        return {
            "inputs": [
                {"name": "input_0", "datatype": "FP64", "shape": [-1, self.n_features or -1]}
            ],
            "outputs": [{"name": "predict", "datatype": out_type, "shape": [-1]}],
        }

    def batch(self, instances: Any) -> Any:
        """Lists of numbers -> 2-D float64 array; objects -> DataFrame (named inputs).

        A numeric 2-D array (a V2 tensor) is used as it is: float32 and float64 without a
        copy, integers and booleans converted to float64.
        """
        if isinstance(instances, np.ndarray) and instances.dtype.kind in "biuf":
            X = array_batch(instances, self.n_features)
            if self.feature_names is not None:
                import pandas as pd

                return pd.DataFrame(X, columns=self.feature_names, copy=False)
            return X
        if isinstance(instances[0], dict):
            return self._named(instances)
        try:
            X = to_array(instances, dtype=np.float64, n_features=self.n_features)
        except InvalidInstanceError as exc:
            if self.feature_names is not None and "expected a number" in exc.problem:
                shown = self.feature_names[:8]
                more = ", ..." if len(self.feature_names) > 8 else ""
                raise InvalidInstanceError(
                    exc.index,
                    f"{exc.problem}; for non-numeric inputs send objects keyed by the model's "
                    f"feature names ({', '.join(shown)}{more})",
                ) from None
            raise
        if self.feature_names is not None:
            import pandas as pd

            return pd.DataFrame(X, columns=self.feature_names, copy=False)
        return X

    def _named(self, instances: list[Any]) -> Any:
        if self.feature_names is None:
            keys = sorted(instances[0])[:8]
            width = f"{self.n_features} " if self.n_features is not None else ""
            raise InvalidInstanceError(
                0,
                f"got an object with keys {keys}, but this model was fitted without feature "
                f"names, so it takes lists of {width}numbers (fit it on a pandas DataFrame "
                "to accept named inputs)",
            )
        import pandas as pd

        columns = records_to_columns(instances, required=self.feature_names)
        frame = pd.DataFrame(columns, columns=self.feature_names)
        for name, dtype in frame.dtypes.items():
            if dtype.kind == "O":  # mixed values; pure strings are "str" or object dtype
                _check_column(str(name), columns[str(name)])
        return frame


def array_batch(arr: np.ndarray, n_features: int | None) -> np.ndarray:
    """A numeric array as a 2-D float batch (no copy for float arrays), checked for width."""
    if arr.ndim == 1 and n_features == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise InvalidInstanceError(0, f"expected a 2-D batch [rows, features], got {arr.ndim}-D")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInstanceError(0, f"expected {n_features} features, got {arr.shape[1]}")
    return arr if arr.dtype.kind == "f" and arr.itemsize >= 4 else arr.astype(np.float64)


def _check_column(name: str, values: list[Any]) -> None:
    """A named input must not mix strings and numbers, nor hold lists or objects."""
    kinds = [_kind(v) for v in values]
    for i, kind in enumerate(kinds):
        if kind == "scalar":
            raise InvalidInstanceError(
                i, f"input {name!r}: expected a number or a string, got {describe(values[i])}"
            )
    strings = kinds.count("string")
    numbers = kinds.count("number")
    if not strings or not numbers:
        return
    odd = "string" if strings < numbers else "number"
    if strings == numbers:
        odd = "string" if kinds[0] == "number" else "number"
    expected = "number" if odd == "string" else "string"
    i = kinds.index(odd)
    raise InvalidInstanceError(
        i,
        f"input {name!r}: expected a {expected} (as in the other instances), got "
        f"{describe(values[i])}",
    )
