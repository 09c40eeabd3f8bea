"""Train the iris example into a model directory: ``model.joblib`` + ``preprocessor.pkl``.

Usage: ``python predictor_runtime/examples/iris/train.py MODEL_DIR``. Uses the iris
dataset that ships with scikit-learn, so no download is needed.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def train(model_dir: str | Path) -> Path:
    """Fit the preprocessor and a logistic regression; write both into ``model_dir``."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from preprocess import ZeroCenterer

    data = load_iris()
    preprocessor = ZeroCenterer().fit(data.data)
    model = LogisticRegression(max_iter=500).fit(preprocessor.preprocess(data.data), data.target)
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    with (out / "preprocessor.pkl").open("wb") as f:
        pickle.dump(preprocessor, f)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: train.py MODEL_DIR")
    print(train(sys.argv[1]))
