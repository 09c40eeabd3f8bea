"""scikit-learn framework adapter for predictor-runtime.

Registered through the ``predictor_runtime`` entry-point group. This module is imported at
plugin discovery, so it imports neither scikit-learn nor joblib, pandas or numpy: they are
imported by :meth:`SklearnFramework.from_path`, when a model is actually loaded.
"""

from __future__ import annotations

from typing import Any

from predictor_runtime import Registrar, hookimpl

__all__ = ["MODEL_FILES", "SklearnFramework", "register_frameworks"]

MODEL_FILES: tuple[str, ...] = ("model.joblib", "model.pkl")


class SklearnFramework:
    """A scikit-learn estimator or pipeline saved as ``model.joblib`` or ``model.pkl``.

    :meth:`from_path` returns a loaded predictor (a subclass instance) whose ``predict``
    batches the instances into a 2-D float64 array (or a pandas DataFrame for named
    inputs when the model was fitted with feature names) and returns ``model.predict``.
    A request key ``"probabilities": true`` returns ``model.predict_proba`` instead.
    Every other request key (``signature_name``...) is ignored.
    """

    name = "sklearn"
    api_name = "SCIKIT_LEARN"
    model_files: tuple[str, ...] = MODEL_FILES
    decode_b64 = False
    nan_as_null = True
    batching = True
    #: regular numeric bodies are parsed straight into a float64 array (core fastparse)
    numeric_instances = "float64"

    @classmethod
    def from_path(cls, model_dir: str) -> Any:
        """Load ``model.joblib`` / ``model.pkl`` from ``model_dir``.

        A file whose top-level object is an XGBoost model (``Booster``, ``XGBClassifier``...)
        is handed to the ``xgboost`` framework, so it answers with the Booster's own output
        however it was found (see the README).
        """
        from ._predictor import load

        return load(model_dir)

    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        raise NotImplementedError("SklearnFramework.from_path returns the loaded predictor")


@hookimpl
def register_frameworks(register: Registrar) -> None:
    register(SklearnFramework)
