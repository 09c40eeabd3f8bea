"""One predict request end to end: parse -> decode -> (micro-)batch -> predict -> serialize.

The CLI and the HTTP server both go through :class:`Dispatcher`, so what works locally
works served. Errors are :class:`~predictor_runtime.errors.PredictorRuntimeError`
subclasses; :meth:`Dispatcher.handle` turns them into ``{"error": ...}`` bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from . import codecs, fastparse
from .errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    PredictionFailedError,
    PredictorRuntimeError,
)
from .lazy import lazy_numpy
from .loader import LoadedModel
from .tensors import TensorBatch

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

DecodeRule = Literal["auto", "always", "never"]
DEFAULT_MAX_BATCH_SIZE = 4096


class Dispatcher:
    """Runs predict requests against one loaded model.

    :param model: the loaded model.
    :param max_batch_size: requests with more instances are split into micro-batches of
        at most this many rows for the model call (unless the predictor opts out with
        ``batching = False``); results are concatenated in order.
    :param decode_b64: ``auto`` (the framework's rule: decoded for tensorflow and custom
        predictors, left as-is for sklearn and xgboost), ``always`` or ``never``.
    :param default_kwargs: request keys used when a request does not give them.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        decode_b64: DecodeRule = "auto",
        default_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if decode_b64 not in ("auto", "always", "never"):
            raise ValueError(f"decode_b64 must be auto, always or never, got {decode_b64!r}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.decode = model.decode_b64 if decode_b64 == "auto" else decode_b64 == "always"
        self._predict = getattr(model.predictor, "predict", None) or self._no_predict
        self.default_kwargs = dict(default_kwargs or {})
        tensors = getattr(model.predictor, "predict_tensors", None)
        self._predict_tensors = tensors if callable(tensors) else None
        self._numeric_dtype = model.numeric_dtype if fastparse.available() else None

    def _no_predict(self, instances: Sequence[Any], **kwargs: Any) -> Any:
        name = type(self.model.predictor).__name__
        raise PredictorRuntimeError(
            f"{name} has no predict method (a generative predictor: use the generative "
            "routes, /v1beta/models/{model}:generateContent...)",
            status=501,
        )

    def parse(self, body: bytes | str) -> tuple[Any, dict[str, Any]]:
        """Body -> ``(instances, kwargs)``, with b64 objects decoded if the rule says so.

        For predictors with ``numeric_instances`` a regular numeric body becomes a 2-D
        array straight from the bytes (:mod:`predictor_runtime.fastparse`).
        """
        if self._numeric_dtype is not None and isinstance(body, bytes):
            arr = fastparse.numeric_instances(body, self._numeric_dtype)
            if arr is not None:
                return arr, dict(self.default_kwargs)
        payload = codecs.parse_json(body, nan_as_null=self.model.nan_as_null)
        instances, kwargs = codecs.split_request(payload)
        if self.default_kwargs:
            kwargs = {**self.default_kwargs, **kwargs}
        if self.decode:
            instances = codecs.decode_b64(instances, body)
        return instances, kwargs

    def predict(self, instances: Sequence[Any], kwargs: dict[str, Any] | None = None) -> Any:
        """Predictions for ``instances``: one per instance (a list or an array).

        ``instances`` may also be a 2-D array (V2 tensors) or a
        :class:`~predictor_runtime.tensors.TensorBatch` of named tensors, which goes to the
        predictor's ``predict_tensors(inputs, **kwargs)``; a dict it returns comes back as
        a TensorBatch (one row per instance in every output). Large inputs are split into
        micro-batches of ``max_batch_size`` rows.
        """
        kwargs = kwargs or {}
        if kwargs and not self.model.accepts_kwargs:
            name = type(self.model.predictor).__name__
            msg = (
                f"{name}.predict takes no keyword arguments, but the request has extra "
                f"keys: {', '.join(sorted(kwargs))}"
            )
            raise InvalidRequestError(msg)
        n = len(instances)
        if not self.model.batching:
            return self._call(instances, kwargs, 0, check=False)
        if n <= self.max_batch_size:
            return self._call(instances, kwargs, 0)
        step = self.max_batch_size
        parts = [
            self._call(instances[start : start + step], kwargs, start)
            for start in range(0, n, step)
        ]
        return concat(parts)

    def _call(
        self, instances: Sequence[Any], kwargs: dict[str, Any], offset: int, *, check: bool = True
    ) -> Any:
        tensors = isinstance(instances, TensorBatch)
        try:
            if tensors:
                out = self._call_tensors(instances, kwargs)  # type: ignore[arg-type]
            else:
                out = self._predict(instances, **kwargs)
        except InvalidInstanceError as exc:
            raise exc.shifted(offset) from None
        except PredictorRuntimeError:
            raise
        except Exception as exc:
            raise PredictionFailedError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(out, dict):
            if tensors:
                try:
                    out = TensorBatch(out)
                except ValueError as exc:
                    raise InvalidOutputError(f"predict_tensors returned {exc}") from None
            else:
                out = codecs.rowify(out, len(instances) if check else None)
        if check:
            try:
                count = len(out)
            except TypeError:
                raise InvalidOutputError(
                    f"predict must return a list with one entry per instance, got "
                    f"{type(out).__name__}"
                ) from None
            if count != len(instances):
                raise InvalidOutputError(
                    f"predict returned {count} predictions for {len(instances)} instances "
                    "(set batching = False on the predictor class if that is intended)"
                )
        return out

    def _call_tensors(self, batch: TensorBatch, kwargs: dict[str, Any]) -> Any:
        if self._predict_tensors is None:
            name = type(self.model.predictor).__name__
            raise InvalidRequestError(f"{name} has no predict_tensors method for named tensors")
        return self._predict_tensors(batch.arrays, **kwargs)

    def predict_body(self, body: bytes | str) -> bytes:
        """A request body -> the success response body; raises on failure."""
        instances, kwargs = self.parse(body)
        return codecs.predictions_body(self.predict(instances, kwargs))

    def handle(self, body: bytes | str) -> tuple[int, bytes]:
        """A request body -> ``(HTTP status, response body)``; never raises."""
        try:
            return 200, self.predict_body(body)
        except PredictorRuntimeError as exc:
            return exc.status, codecs.error_body(exc.message)
        except Exception as exc:  # a bug in the runtime itself
            return 500, codecs.error_body(f"Internal error: {type(exc).__name__}: {exc}")


def concat(parts: list[Any]) -> Any:
    """Join per-batch prediction lists/arrays (or tensor batches) in order."""
    if all(isinstance(p, TensorBatch) for p in parts):
        return TensorBatch.concat(parts)
    if all(isinstance(p, np.ndarray) for p in parts):
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) == 1:
            return np.concatenate(parts)
    out: list[Any] = []
    for part in parts:
        out.extend(part)
    return out
