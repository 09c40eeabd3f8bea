"""Dense predictions through XGBoost's C API, with the call's configuration built once.

``Booster.inplace_predict`` is a thin wrapper over the C function
``XGBoosterPredictFromDense``, but on every call it re-checks the input's type against
pandas, Arrow, polars, cuDF and lists, JSON-encodes the same configuration again and
builds the output through two array-interface round trips. For one model call of 16 rows
on the benchmark model (100 trees, depth 6) that wrapper costs about as much as the C
function itself (``benchmarks/README.md``, "XGBoost's call without its Python wrapper").

:class:`DensePredict` makes exactly the call the wrapper makes for a C-contiguous float32
or float64 numpy array (same configuration: all trees, ``missing=NaN``, values not margins,
no strict shape) and copies XGBoost's thread-local output buffer into a new array of the
shape XGBoost reports, which is what ``inplace_predict`` returns. Anything else, and any
error, goes to ``inplace_predict`` itself, so its errors and messages are XGBoost's own.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

_TYPESTR = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f8"}


class DensePredict:
    """``booster.inplace_predict(X, missing=NaN, validate_features=False)``, leaner.

    Falls back to the wrapper for the whole object's life when this XGBoost build does not
    expose the C function (``available`` is then False).
    """

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self._fallback: Callable[..., Any] = booster.inplace_predict
        self._function: Any = None
        try:
            from xgboost import core

            function = core._LIB.XGBoosterPredictFromDense
        except (ImportError, AttributeError):
            return
        function.restype = ctypes.c_int
        self._function = function
        self._config = json.dumps(
            {
                "type": 0,
                "training": False,
                "iteration_begin": 0,
                "iteration_end": 0,
                "missing": math.nan,
                "strict_shape": False,
                "cache_id": 0,
            }
        ).encode()

    @property
    def available(self) -> bool:
        """Whether calls go straight to the C function."""
        return self._function is not None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        typestr = _TYPESTR.get(X.dtype)
        if (
            self._function is None
            or typestr is None
            or X.ndim != 2
            or not X.flags.c_contiguous
            or X.shape[0] == 0
        ):
            return self._wrapped(X)
        rows, cols = X.shape
        interface = (
            f'{{"data":[{X.ctypes.data},true],"shape":[{rows},{cols}],'
            f'"strides":null,"typestr":"{typestr}","version":3}}'
        ).encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        result = ctypes.POINTER(ctypes.c_float)()
        status = self._function(
            self.booster.handle,
            interface,
            self._config,
            None,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(result),
        )
        if status != 0:  # XGBoost's own error and message
            return self._wrapped(X)
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        out: np.ndarray = np.empty(out_shape, dtype=np.float32)
        ctypes.memmove(out.ctypes.data, result, out.nbytes)
        return out

    def _wrapped(self, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._fallback(X, missing=np.nan, validate_features=False)
        return out
