"""Open Inference Protocol V2 tensors with Triton's binary data extension, both ways.

Request: a JSON header (``inputs`` with ``parameters.binary_data_size``, outputs asked as
``binary_data``) followed by the raw tensor bytes; ``Inference-Header-Content-Length``
says where the JSON ends. The answer is read the same way, or as plain JSON ``data``
when the server sends no binary part. numpy is imported only here, when ``infer`` runs.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import ApiError

if TYPE_CHECKING:
    import numpy as np

HEADER_LENGTH = "inference-header-content-length"

_DTYPES = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_DATATYPES = {v: k for k, v in _DTYPES.items()}


def datatype(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array (``BYTES`` for strings, bytes and objects)."""
    kind = array.dtype.kind
    if kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _DATATYPES[array.dtype.name]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no V2 datatype") from None


def _bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES elements, each as a 4-byte little-endian length then its bytes (C order)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def encode_request(
    inputs: Mapping[str, Any], outputs: Sequence[str] | None, parameters: Mapping[str, Any]
) -> tuple[bytes, int]:
    """``(body, json_header_length)`` of a binary infer request."""
    import numpy as np

    header_inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value in inputs.items():
        array = np.asarray(value)
        dt = datatype(array)
        if dt == "BYTES":
            raw = _bytes_tensor(array)
        else:  # the binary extension is little-endian
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header_inputs.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": dt,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        blobs.append(raw)
    header: dict[str, Any] = {"inputs": header_inputs}
    if outputs is not None:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    header["parameters"] = {**parameters, "binary_data_output": True}
    head = orjson.dumps(header)
    return head + b"".join(blobs), len(head)


def _from_bytes(raw: memoryview, dt: str, shape: list[int]) -> np.ndarray:
    import numpy as np

    if dt == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(bytes(raw[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    try:
        dtype = np.dtype(_DTYPES[dt]).newbyteorder("<")
    except KeyError:
        raise ApiError(200, f"the server answered an unknown datatype {dt!r}") from None
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_json(data: Any, dt: str, shape: list[int]) -> np.ndarray:
    import numpy as np

    if dt == "BYTES":
        flat = np.array(data, dtype=object).reshape(-1)
        out = np.empty(len(flat), dtype=object)
        out[:] = list(flat)
        return out.reshape(shape)
    return np.asarray(data, dtype=_DTYPES.get(dt)).reshape(shape)


def decode_response(content: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """The ``outputs`` of an infer answer as named numpy arrays."""
    if header_length is not None:
        n = int(header_length)
        header = orjson.loads(content[:n])
        binary = memoryview(content)[n:]
    else:
        header = orjson.loads(content)
        binary = memoryview(b"")
    result: dict[str, np.ndarray] = {}
    pos = 0
    for out in header.get("outputs") or []:
        name, dt, shape = out["name"], out["datatype"], list(out["shape"])
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            result[name] = _from_bytes(binary[pos : pos + size], dt, shape)
            pos += size
        else:
            result[name] = _from_json(out.get("data"), dt, shape)
    return result
