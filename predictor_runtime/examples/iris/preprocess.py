"""Preprocessing for the iris example: centre and scale features with training statistics.

As in AI Platform's custom prediction routine samples, the preprocessor is fitted at
training time, pickled beside the model, and applied inside ``predict``.
"""

from __future__ import annotations

import numpy as np


class ZeroCenterer:
    """Stores the training mean and spread of each feature and standardizes inputs."""

    def __init__(self) -> None:
        self.means: np.ndarray | None = None
        self.scales: np.ndarray | None = None

    def fit(self, data: np.ndarray) -> ZeroCenterer:
        self.means = data.mean(axis=0)
        self.scales = data.std(axis=0) + 1e-12
        return self

    def preprocess(self, data: np.ndarray) -> np.ndarray:
        return (data - self.means) / self.scales
