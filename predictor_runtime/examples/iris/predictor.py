"""An AI Platform custom prediction routine, unchanged: it never imports predictor_runtime.

Serve it with::

    python -m predictor_runtime serve --model-dir MODEL_DIR \
        --prediction-class predictor.IrisPredictor --package path/to/examples/iris

Request: ``{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}``; add ``"probabilities": true``
to get class probabilities instead of names (every extra key arrives as a keyword).
"""

import os
import pickle

import joblib
import numpy as np

CLASS_NAMES = ["setosa", "versicolor", "virginica"]


class IrisPredictor:
    """Standardizes four measurements, then asks a scikit-learn classifier."""

    def __init__(self, model, preprocessor):
        self._model = model
        self._preprocessor = preprocessor

    def predict(self, instances, **kwargs):
        inputs = np.asarray(instances, dtype=np.float64)
        if inputs.ndim != 2 or inputs.shape[1] != 4:
            raise ValueError(
                f"each instance must be 4 numbers (sepal length, sepal width, petal length, "
                f"petal width); got an array of shape {inputs.shape}"
            )
        features = self._preprocessor.preprocess(inputs)
        if kwargs.get("probabilities"):
            return self._model.predict_proba(features).tolist()
        return [CLASS_NAMES[int(i)] for i in self._model.predict(features)]

    @classmethod
    def from_path(cls, model_dir):
        model = joblib.load(os.path.join(model_dir, "model.joblib"))
        with open(os.path.join(model_dir, "preprocessor.pkl"), "rb") as f:
            preprocessor = pickle.load(f)
        return cls(model, preprocessor)
