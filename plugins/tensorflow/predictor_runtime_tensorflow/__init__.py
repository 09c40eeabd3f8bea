"""predictor-runtime plugin: the ``tensorflow`` framework (TensorFlow SavedModels).

Registered through the ``predictor_runtime`` entry-point group. Importing this module
does not import TensorFlow; loading a model does.
"""

from __future__ import annotations

import predictor_runtime
from predictor_runtime import Registrar

from .framework import BYTES_SUFFIX, DEFAULT_SIGNATURE, TensorFlowFramework

__all__ = ["BYTES_SUFFIX", "DEFAULT_SIGNATURE", "TensorFlowFramework", "register_frameworks"]


@predictor_runtime.hookimpl
def register_frameworks(register: Registrar) -> None:
    register(TensorFlowFramework)
