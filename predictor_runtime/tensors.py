"""Named tensors that share a batch dimension: the tensors-in/tensors-out form of a request.

A :class:`TensorBatch` is what the V2 protocol (Open Inference Protocol) hands the
:class:`~predictor_runtime.pipeline.Pipeline` for predictors with a ``predict_tensors``
capability: ``{input name: array}``, every array with the same first (batch) dimension.
It behaves like an ``instances`` list where the batcher and the dispatcher need it to:
``len()`` is the number of rows, slicing ``[a:b]`` slices every array, and
:meth:`TensorBatch.concat` joins the batches of concurrent requests row-wise. A dict of
outputs returned by ``predict_tensors`` comes back as a TensorBatch too, so each merged
caller gets its own rows of every output.

numpy only: no framework import.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidOutputError
from .lazy import lazy_numpy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

#: Open Inference Protocol (V2) datatype -> numpy type string (little-endian, as the
#: binary tensor extension sends them). ``BYTES`` tensors are object arrays of ``bytes``.
DTYPES: dict[str, str] = {
    "BOOL": "?",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": "O",
}


@functools.cache
def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype (a key of :data:`DTYPES`)."""
    return np.dtype(DTYPES[datatype])


@functools.cache
def _by_kind_size() -> dict[tuple[str, int], str]:
    """(numpy dtype kind, item size) -> V2 datatype."""
    dtypes = {name: numpy_dtype(name) for name in DTYPES if name != "BYTES"}
    return {(dt.kind, dt.itemsize): name for name, dt in dtypes.items()}


def datatype_of(dtype: Any) -> str:
    """The V2 datatype of a numpy dtype (strings, bytes and objects are ``BYTES``).

    :raises InvalidOutputError: no V2 datatype fits (complex numbers, dates...).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "USO":
        return "BYTES"
    name = _by_kind_size().get((dtype.kind, dtype.itemsize))
    if name is None:
        raise InvalidOutputError(f"numpy dtype {dtype} has no V2 datatype")
    return name


class TensorBatch:
    """``{name: array}`` with a common first dimension (the rows of the batch).

    :param arrays: the tensors; each must have at least one dimension, and all the same
        length along the first one.
    :raises ValueError: a scalar tensor or differing batch sizes (the message names them).
    """

    __slots__ = ("_rows", "arrays")

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        if not arrays:
            raise ValueError("a tensor batch needs at least one tensor")
        self.arrays: dict[str, np.ndarray] = {}
        rows: int | None = None
        for name, value in arrays.items():
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.ndim == 0:
                raise ValueError(f"tensor {name!r} is a scalar; a batch dimension is needed")
            if rows is None:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                sizes = ", ".join(
                    f"{k}: {np.shape(v)[0] if np.ndim(v) else 'scalar'}" for k, v in arrays.items()
                )
                raise ValueError(f"tensors differ in their first (batch) dimension ({sizes})")
            self.arrays[str(name)] = arr
        self._rows = int(rows or 0)

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, index: slice) -> TensorBatch:
        if not isinstance(index, slice):
            raise TypeError("a TensorBatch is sliced by rows ([a:b]); use .arrays[name]")
        return TensorBatch({k: v[index] for k, v in self.arrays.items()})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.arrays.items())
        return f"TensorBatch({inner})"

    def signature(self) -> bytes:
        """Names, dtypes and per-row shapes: batches with equal signatures concatenate."""
        return repr([(k, v.dtype.str, v.shape[1:]) for k, v in self.arrays.items()]).encode()

    @classmethod
    def concat(cls, parts: Sequence[TensorBatch]) -> TensorBatch:
        """Join batches row-wise (same names, dtypes and per-row shapes required)."""
        first = parts[0]
        if len(parts) == 1:
            return first
        sig = first.signature()
        for p in parts[1:]:
            if p.signature() != sig:
                raise ValueError(f"cannot concatenate {first!r} and {p!r}")
        return cls({k: np.concatenate([p.arrays[k] for p in parts]) for k in first.arrays})


def batch_key(instances: Any) -> bytes:
    """What must be equal for two requests' instances to be merged into one array batch.

    Lists (JSON instances) merge with lists; a 2-D array only with arrays of the same dtype
    and row shape; a :class:`TensorBatch` only with batches of the same signature.
    """
    if isinstance(instances, np.ndarray):
        dtype: str = instances.dtype.str
        return b"array:" + dtype.encode() + repr(instances.shape[1:]).encode()
    if isinstance(instances, TensorBatch):
        return b"tensors:" + instances.signature()
    return b""


__all__ = ["DTYPES", "TensorBatch", "batch_key", "datatype_of", "numpy_dtype"]
