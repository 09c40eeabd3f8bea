"""predictor-runtime: pluggable predictor runtimes for custom prediction routines."""

from __future__ import annotations

from .errors import (
    InvalidInstanceError,
    InvalidRequestError,
    ModelLoadError,
    PredictionFailedError,
    PredictorRuntimeError,
    UserCodeError,
)
from .hookspecs import Registrar, hookimpl
from .predictor import FrameworkClass, Predictor, PredictorLike

__all__ = [
    "FrameworkClass",
    "InvalidInstanceError",
    "InvalidRequestError",
    "ModelLoadError",
    "PredictionFailedError",
    "Predictor",
    "PredictorLike",
    "PredictorRuntimeError",
    "Registrar",
    "UserCodeError",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("predictor-runtime")
        except PackageNotFoundError:
            return "0.0.0+unknown"
    raise AttributeError(f"module 'predictor_runtime' has no attribute {name!r}")
