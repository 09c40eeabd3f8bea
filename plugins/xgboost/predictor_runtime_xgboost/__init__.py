"""XGBoost framework adapter for predictor-runtime.

Registered through the ``predictor_runtime`` entry-point group. This module is imported at
plugin discovery, so it imports neither XGBoost nor joblib or numpy: they are imported
when a model is loaded. :func:`detect_framework` claims a ``model.joblib`` / ``model.pkl``
whose pickle stream starts with an ``xgboost`` class, by reading a few opcodes of it.
"""

from __future__ import annotations

from typing import Any

from predictor_runtime import Registrar, hookimpl

from ._detect import PICKLE_FILES, claims_directory

__all__ = ["MODEL_FILES", "NATIVE_FILES", "XGBoostFramework", "register_frameworks"]

NATIVE_FILES: tuple[str, ...] = ("model.bst", "model.json", "model.ubj")
MODEL_FILES: tuple[str, ...] = NATIVE_FILES + PICKLE_FILES


class XGBoostFramework:
    """An XGBoost model: ``model.bst`` / ``model.json`` / ``model.ubj`` (native format) or a
    ``model.joblib`` / ``model.pkl`` holding a ``Booster`` or an XGBoost scikit-learn
    wrapper (``XGBClassifier``, ``XGBRegressor``...).

    ``predict`` returns the Booster's own output (probabilities for ``binary:logistic``,
    also for a pickled ``XGBClassifier``), as AI Platform does. ``NaN`` and ``null`` mean
    missing. Request keys other than ``instances`` are ignored.

    ``model_files`` lists only the native files: joblib/pickle files are claimed by
    content (:func:`detect_framework`), since ``model.joblib`` alone usually means
    scikit-learn.
    """

    name = "xgboost"
    api_name = "XGBOOST"
    model_files: tuple[str, ...] = NATIVE_FILES
    decode_b64 = False
    nan_as_null = True
    batching = True
    #: regular numeric bodies are parsed straight into a float32 array (core fastparse)
    numeric_instances = "float32"

    @classmethod
    def from_path(cls, model_dir: str) -> Any:
        """Load the one model file of ``model_dir`` (native format, joblib or pickle)."""
        from ._predictor import load

        return load(model_dir)

    @classmethod
    def from_model(cls, model: Any, *, model_dir: str, model_file: str) -> Any:
        """Serve an already unpickled XGBoost object (used by the sklearn adapter's hand-off
        of compressed joblib files, which :func:`detect_framework` cannot peek into)."""
        from ._predictor import from_object

        return from_object(model, model_dir=model_dir, model_file=model_file)

    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        raise NotImplementedError("XGBoostFramework.from_path returns the loaded predictor")


@hookimpl
def register_frameworks(register: Registrar) -> None:
    register(XGBoostFramework)


@hookimpl
def detect_framework(model_dir: str) -> str | None:
    """``"xgboost"`` when the directory's one joblib/pickle file holds an XGBoost model."""
    return XGBoostFramework.name if claims_directory(model_dir) else None
