"""How V2 tensors meet predictors: inputs -> one pipeline call -> output tensors; metadata.

Inputs (the rule, also in the README):

1. A predictor with ``predict_tensors(inputs: dict[str, numpy.ndarray], **kwargs)`` (the
   TensorFlow framework, or a custom class that defines it) gets every input tensor by
   name, as a :class:`~predictor_runtime.tensors.TensorBatch` through the batcher (all
   tensors share their first, batch, dimension). It returns an array (one output) or a
   dict ``{output name: array}``.
2. Any other predictor takes exactly one input tensor, whatever its name, whose first
   dimension is the batch: framework predictors (sklearn, XGBoost, third-party plugins)
   get it as the array itself (a 2-D ``[rows, features]`` batch, no Python-level copy),
   custom prediction classes get ``array.tolist()`` as their ``instances`` list, as if it
   came as JSON (``BYTES`` elements are ``bytes``).

Request ``parameters`` other than the protocol's own (``binary_data_output``...) are the
predictor's keyword arguments, as the other top-level keys of a V1 body are.

Outputs: a dict / TensorBatch gives one tensor per name; a single array gets the name of
the model's one output in its metadata (``predict`` for sklearn and XGBoost), else
``output_0``; a list of per-instance objects (custom predictors) one tensor per key;
any other list becomes one tensor through :func:`numpy.asarray`. ``outputs`` in the
request selects and orders them.

Metadata: a predictor may define ``tensor_metadata() -> {"inputs": [...], "outputs": [...]}``
with ``{"name", "datatype", "shape"}`` entries (``-1`` for the batch dimension and any
other unknown one); without it the lists are empty.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..codecs import records_to_columns
from ..errors import InvalidInstanceError, InvalidOutputError, InvalidRequestError
from ..lazy import lazy_numpy
from ..pipeline import Pipeline
from ..tensors import TensorBatch
from .codec import InferRequest, RequestedOutput

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

DEFAULT_OUTPUT = "output_0"

_metadata_cache: weakref.WeakKeyDictionary[Pipeline, dict[str, Any]] = weakref.WeakKeyDictionary()


def tensor_metadata(pipeline: Pipeline) -> dict[str, Any]:
    """``{"platform", "inputs", "outputs"}`` of a loaded model (computed once, then cached)."""
    meta = _metadata_cache.get(pipeline)
    if meta is not None:
        return meta
    fn = getattr(pipeline.predictor, "tensor_metadata", None)
    try:
        raw: Any = fn() if callable(fn) else {}
    except Exception as exc:
        name = type(pipeline.predictor).__name__
        raise InvalidOutputError(
            f"{name}.tensor_metadata failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raw = {}
    meta = {
        "platform": pipeline.model.framework,
        "inputs": [dict(t) for t in raw.get("inputs") or []],
        "outputs": [dict(t) for t in raw.get("outputs") or []],
    }
    _metadata_cache[pipeline] = meta
    return meta


def _shape_fits(shape: Sequence[int], expected: Sequence[int]) -> bool:
    return len(shape) == len(expected) and all(
        e == -1 or e == s for s, e in zip(shape, expected, strict=True)
    )


def prepare(pipeline: Pipeline, request: InferRequest) -> tuple[Any, dict[str, Any]]:
    """The ``(instances, kwargs)`` of the pipeline call for ``request`` (see module doc)."""
    kwargs = request.predictor_kwargs()
    inputs = request.inputs
    meta = tensor_metadata(pipeline)
    declared = {t.get("name"): t for t in meta["inputs"]}
    for t in inputs:
        if t.array.ndim == 0:
            raise InvalidRequestError(
                f"input {t.name!r}: shape [] has no batch dimension; send shape [1] or more"
            )
        if t.array.shape[0] == 0:
            raise InvalidRequestError(f"input {t.name!r}: the batch dimension is 0 (no rows)")
    if pipeline.has("predict_tensors"):
        for t in inputs if "signature_name" not in kwargs else ():
            spec = declared.get(t.name)
            if spec is not None:
                _check(t.name, t.datatype, t.array.shape, spec)
        try:
            return TensorBatch({t.name: t.array for t in inputs}), kwargs
        except ValueError as exc:
            raise InvalidRequestError(f"inputs: {exc}") from None
    if len(inputs) != 1:
        names = ", ".join(repr(t.name) for t in inputs)
        raise InvalidRequestError(
            f"this model takes one input tensor (its rows are the instances); got {len(inputs)}: "
            f"{names}"
        )
    tensor = inputs[0]
    if len(meta["inputs"]) == 1:
        _check(tensor.name, tensor.datatype, tensor.array.shape, meta["inputs"][0])
    if pipeline.model.framework == "custom":
        return tensor.array.tolist(), kwargs
    return tensor.array, kwargs


def _check(name: str, datatype: str, shape: tuple[int, ...], spec: dict[str, Any]) -> None:
    expected = spec.get("shape")
    if isinstance(expected, list) and not _shape_fits(shape, expected):
        raise InvalidRequestError(
            f"input {name!r}: expected shape {expected} (-1: any size), got {list(shape)}"
        )
    want = spec.get("datatype")
    if isinstance(want, str) and (want == "BYTES") != (datatype == "BYTES"):
        raise InvalidRequestError(f"input {name!r}: expected datatype {want}, got {datatype}")


def shift_error(exc: InvalidInstanceError, request: InferRequest) -> InvalidRequestError:
    """An instance error of the model call, said in tensor terms (``row 3 of input 'x'``)."""
    name = request.inputs[0].name if len(request.inputs) == 1 else "the inputs"
    where = f"input {name!r}" if len(request.inputs) == 1 else name
    return InvalidRequestError(f"{where}: row {exc.index}: {exc.problem}")


def _named(out: Any, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    if isinstance(out, TensorBatch):
        return out.arrays
    if isinstance(out, dict):
        return {str(k): np.asarray(v) for k, v in out.items()}
    declared = meta["outputs"]
    default = declared[0]["name"] if len(declared) == 1 else DEFAULT_OUTPUT
    if isinstance(out, np.ndarray):
        return {default: out}
    if isinstance(out, list) and out and all(isinstance(r, dict) for r in out):
        try:
            columns = records_to_columns(out)
        except InvalidInstanceError as exc:
            raise InvalidOutputError(f"prediction {exc.index}: {exc.problem}") from None
        return {k: _array(k, v) for k, v in columns.items()}
    return {default: _array(default, out)}


def _array(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except ValueError:
        raise InvalidOutputError(
            f"output {name!r}: predictions are ragged and cannot form one tensor"
        ) from None
    if arr.dtype.kind == "O" and any(
        not isinstance(v, str | bytes) for v in arr.reshape(-1).tolist()
    ):
        raise InvalidOutputError(
            f"output {name!r}: predictions mix types or hold objects; a V2 tensor needs "
            "numbers, booleans or strings of one kind"
        )
    return arr


def outputs(
    out: Any, request: InferRequest, meta: dict[str, Any]
) -> list[tuple[str, np.ndarray, bool]]:
    """``(name, array, binary)`` of each output tensor to answer, in order."""
    named = _named(out, meta)
    requested: list[RequestedOutput]
    if request.outputs:
        requested = request.outputs
        unknown = [r.name for r in requested if r.name not in named]
        if unknown:
            raise InvalidRequestError(
                f"unknown output(s) {unknown}; this model's outputs are {sorted(named)}"
            )
    else:
        requested = [RequestedOutput(name) for name in named]
    default_binary = request.binary_output
    return [
        (r.name, named[r.name], default_binary if r.binary is None else r.binary) for r in requested
    ]
