"""Open Inference Protocol V2 on the wire: request bodies -> numpy tensors -> response bodies.

Both encodings of a tensor are supported, in requests and in responses:

- JSON: ``{"name", "shape", "datatype", "data"}`` with ``data`` flat or nested (row-major);
- Triton's binary tensor data extension: the body is a JSON header of
  ``Inference-Header-Content-Length`` bytes followed by the raw tensors, in input order,
  each input saying its size in ``parameters.binary_data_size``. Numeric tensors become
  :func:`numpy.frombuffer` views of the request bytes (little-endian, no copy and no JSON
  parse of numbers); ``BYTES`` elements are each a 4-byte little-endian length then the
  bytes. Outputs are binary when the requested output says ``parameters.binary_data``,
  else when the request says ``parameters.binary_data_output``.

Every problem is an :class:`~predictor_runtime.errors.InvalidRequestError` (400) naming the
tensor and saying what was expected and what came. numpy and orjson only.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .. import codecs
from ..errors import InvalidRequestError, PayloadTooLargeError, describe
from ..lazy import lazy_numpy
from ..tensors import DTYPES, datatype_of, numpy_dtype

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

#: request ``parameters`` the protocol itself uses (never passed to the predictor).
RESERVED_PARAMETERS = frozenset(
    {
        "binary_data_output",
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "headers",
        "content_type",
    }
)
_LEN = struct.Struct("<I")


@dataclass
class Tensor:
    """One decoded input tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """One entry of the request's ``outputs``: a name and whether to answer it in binary."""

    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """A decoded ``.../infer`` request."""

    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    @property
    def binary_output(self) -> bool:
        """The request-level ``binary_data_output`` parameter (default False)."""
        return self.parameters.get("binary_data_output") is True

    def predictor_kwargs(self) -> dict[str, Any]:
        """Request parameters other than the protocol's own: keyword arguments of predict."""
        return {k: v for k, v in self.parameters.items() if k not in RESERVED_PARAMETERS}


# -- requests ---------------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what} must be an object, got {describe(value)}")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidRequestError(
            f"input {name!r}: shape must be a list of non-negative integers, got {describe(value)}"
        )
    return tuple(value)


def decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """A ``Content-Encoding: gzip`` or ``deflate`` body (tritonclient's
    ``request_compression_algorithm``), inflated to at most ``limit`` bytes (else 413)."""
    name = encoding.decode("latin-1").strip().lower()
    if name not in ("gzip", "deflate"):
        raise InvalidRequestError(
            f"unsupported Content-Encoding {name!r}; send identity, gzip or deflate"
        )
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequestError(f"the body is not valid {name} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(limit)
    return out


def parse_request(body: bytes, header_length: bytes | None = None) -> InferRequest:
    """Decode an infer request body (JSON, or JSON header + binary tensors).

    :param header_length: the ``Inference-Header-Content-Length`` header, if sent.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length must be an integer between 0 and the body "
                f"size ({len(body)}), got {header_length.decode('latin-1')!r}"
            )
        header: bytes | memoryview = memoryview(body)[:n]
        offset = n
    else:
        header, offset = body, len(body)
    raw_header = bytes(header) if isinstance(header, memoryview) else header
    payload = _fast_payload(raw_header)
    if payload is None:
        payload = codecs.parse_json(raw_header)
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            f'Invalid V2 request: expected an object {{"inputs": [...]}}, got {describe(payload)}'
        )
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequestError(
            f'Invalid V2 request: "inputs" must be a non-empty list, got {describe(inputs)}'
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError(f'"id" must be a string, got {describe(request_id)}')
    parameters = _object(payload.get("parameters"), '"parameters"')
    tensors: list[Tensor] = []
    seen: set[str] = set()
    for i, spec in enumerate(inputs):
        tensor, offset = _input(spec, i, body, offset)
        if tensor.name in seen:
            raise InvalidRequestError(f"input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        tensors.append(tensor)
    if offset != len(body):
        raise InvalidRequestError(
            f"the body has {len(body) - offset} bytes of binary data after the JSON header that "
            "no input claims (binary_data_size of the inputs do not add up)"
        )
    outputs = None
    if "outputs" in payload:
        outputs = _requested_outputs(payload["outputs"])
    return InferRequest(tensors, request_id, parameters, outputs)


_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


def _fast_payload(body: bytes) -> dict[str, Any] | None:
    """The request parsed by simdjson, floating-point ``data`` arrays straight into float64
    buffers (no Python float per number), or None to take the general path.

    Only flat arrays of plain numbers take the buffer; nested, ``null``, or anything odd
    keeps the general parse, so its errors stay as they are.
    """
    from .. import fastparse

    if not fastparse.available() or len(body) < fastparse.MIN_BYTES:
        return None
    import simdjson

    parser = fastparse._parser()
    doc = inputs = item = data = None
    try:
        doc = parser.parse(body)
        if not isinstance(doc, simdjson.Object):
            return None
        payload: dict[str, Any] = {}
        for key in doc.keys():  # noqa: SIM118 (a simdjson Object)
            if key != "inputs":
                payload[key] = _plain(doc[key])
                continue
            inputs = doc[key]
            if not isinstance(inputs, simdjson.Array):
                return None
            decoded = []
            for item in inputs:
                if not isinstance(item, simdjson.Object):
                    return None
                spec = {k: _plain(item[k]) for k in item.keys() if k != "data"}  # noqa: SIM118
                if "data" in item:
                    data = item["data"]
                    flat = None
                    if (
                        spec.get("datatype") in _FLOAT_TYPES
                        and isinstance(data, simdjson.Array)
                        and len(data)
                        and not isinstance(data[0], simdjson.Array)
                    ):
                        try:
                            flat = np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
                        except (TypeError, ValueError):
                            flat = None
                    spec["data"] = flat if flat is not None else _plain(data)
                    data = None
                decoded.append(spec)
                item = None
            payload["inputs"] = decoded
            inputs = None
        return payload
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError):
        # RuntimeError: simdjson's DEPTH_ERROR/BIGINT_ERROR, or a RecursionError: the
        # general parser answers (with its nesting limit)
        return None
    finally:  # the parser is reused only once no proxy refers to its document
        del doc, inputs, item, data


def _plain(value: Any) -> Any:
    """A simdjson proxy (object or array) as plain Python values."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "as_list"):
        return value.as_list()
    return value


def _requested_outputs(value: Any) -> list[RequestedOutput]:
    if not isinstance(value, list):
        raise InvalidRequestError(f'"outputs" must be a list, got {describe(value)}')
    out = []
    for spec in value:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequestError(
                f'each of "outputs" must be an object with a "name", got {describe(spec)}'
            )
        params = _object(spec.get("parameters"), f"output {spec['name']!r}: parameters")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidRequestError(
                f"output {spec['name']!r}: binary_data must be true or false, got {describe(binary)}"
            )
        out.append(RequestedOutput(spec["name"], binary))
    return out


def _input(spec: Any, index: int, body: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise InvalidRequestError(f"inputs[{index}] must be an object, got {describe(spec)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f'inputs[{index}] needs a "name" string, got {describe(name)}')
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InvalidRequestError(
            f"input {name!r}: unsupported datatype {describe(datatype)}; expected one of "
            f"{', '.join(DTYPES)}"
        )
    dtype = numpy_dtype(datatype)
    shape = _shape(spec.get("shape"), name)
    params = _object(spec.get("parameters"), f"input {name!r}: parameters")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequestError(
                f"input {name!r}: binary_data_size must be a non-negative integer, got "
                f"{describe(size)}"
            )
        if "data" in spec:
            raise InvalidRequestError(f"input {name!r} has both binary_data_size and data")
        if offset + size > len(body):
            raise InvalidRequestError(
                f"input {name!r}: binary_data_size is {size} bytes but only "
                f"{len(body) - offset} bytes of binary data are left in the body"
            )
        array = _from_binary(name, datatype, dtype, shape, count, body, offset, size)
        return Tensor(name, datatype, shape, array, params), offset + size
    if "data" not in spec:
        raise InvalidRequestError(f'input {name!r} has neither "data" nor binary_data_size')
    array = _from_json(name, datatype, dtype, shape, count, spec["data"])
    return Tensor(name, datatype, shape, array, params), offset


def _from_binary(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    count: int,
    body: bytes,
    offset: int,
    size: int,
) -> np.ndarray:
    if datatype == "BYTES":
        return _bytes_elements(name, body, offset, size, count).reshape(shape)
    expected = count * dtype.itemsize
    if size != expected:
        raise InvalidRequestError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {expected} bytes of "
            f"binary data, got binary_data_size {size}"
        )
    # a read-only view of the request bytes: no copy, no parse
    return np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)


def _bytes_elements(name: str, body: bytes, offset: int, size: int, count: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos, end = offset, offset + size
    for i in range(count):
        if pos + 4 > end:
            raise InvalidRequestError(
                f"input {name!r}: BYTES data ends after {i} of {count} elements"
            )
        (n,) = _LEN.unpack_from(body, pos)
        pos += 4
        if pos + n > end:
            raise InvalidRequestError(
                f"input {name!r}: BYTES element {i} says {n} bytes but only {end - pos} are left"
            )
        out[i] = body[pos : pos + n]
        pos += n
    if pos != end:
        raise InvalidRequestError(
            f"input {name!r}: {end - pos} bytes left over after its {count} BYTES elements"
        )
    return out


_KINDS = {"b": "boolean", "i": "integer", "u": "integer", "f": "number"}


def _from_json(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, data: Any
) -> np.ndarray:
    if isinstance(data, np.ndarray):  # floats straight from the bytes (_fast_payload)
        if data.size != count:
            raise InvalidRequestError(
                f"input {name!r}: shape {list(shape)} needs {count} values, data has {data.size}"
            )
        return data.astype(dtype, copy=False).reshape(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = np.array(data, dtype=object).reshape(-1) if data else np.empty(0, dtype=object)
        for i, v in enumerate(flat):
            if isinstance(v, str):
                flat[i] = v.encode()
            elif not isinstance(v, bytes):
                raise InvalidRequestError(
                    f"input {name!r}: BYTES element {i} must be a string, got {describe(v)}"
                )
        arr = flat
    else:
        try:
            arr = np.asarray(data)
        except ValueError:
            raise InvalidRequestError(
                f"input {name!r}: data is ragged (nested lists of different lengths)"
            ) from None
        arr = _cast(name, datatype, dtype, arr, data)
    if arr.size != count:
        raise InvalidRequestError(
            f"input {name!r}: shape {list(shape)} needs {count} values, data has {arr.size}"
        )
    return arr.reshape(shape)


def _leaves(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    out: list[Any] = []
    for v in value:
        out.extend(_leaves(v))
    return out


def _cast(name: str, datatype: str, dtype: np.dtype[Any], arr: np.ndarray, data: Any) -> np.ndarray:
    """JSON values -> ``dtype``, refusing values of the wrong kind instead of coercing them.

    ``null`` is accepted in floating-point tensors and means NaN.
    """
    kind, want = arr.dtype.kind, dtype.kind
    ok = kind == "b" if want == "b" else kind in "iu" if want in "iu" else kind in "iuf"
    if not ok and want == "f" and kind == "O":
        flat = arr.reshape(-1).tolist()
        if all(_fits("f", v) for v in flat):
            values = [np.nan if v is None else v for v in flat]
            return np.array(values, dtype=dtype).reshape(arr.shape)
    if not ok and want in "iu" and kind in "Of" and all(_fits(want, v) for v in _leaves(data)):
        try:  # Python ints beyond int64 (UINT64's upper half)
            return np.array(data, dtype=dtype)
        except OverflowError:
            raise InvalidRequestError(
                f"input {name!r}: values out of range for {datatype}"
            ) from None
    if not ok:
        flat = _leaves(data)
        bad = next((i for i, v in enumerate(flat) if not _fits(want, v)), 0)
        raise InvalidRequestError(
            f"input {name!r}: datatype {datatype} needs {_KINDS[want]}s, element {bad} is "
            f"{describe(flat[bad] if flat else None)}"
        )
    if want in "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidRequestError(
                f"input {name!r}: values out of range for {datatype} [{info.min}, {info.max}]"
            )
    return arr.astype(dtype, copy=False)


def _fits(kind: str, value: Any) -> bool:
    if kind == "b":
        return isinstance(value, bool)
    if kind in "iu":
        return isinstance(value, int) and not isinstance(value, bool)
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# -- responses --------------------------------------------------------------------------


def _bytes_payload(arr: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for v in arr.reshape(-1).tolist():
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def _json_data(name: str, arr: np.ndarray) -> Any:
    flat = arr.reshape(-1)
    if arr.dtype.kind in "USO":
        out = []
        for v in flat.tolist():
            if isinstance(v, bytes):
                try:
                    v = v.decode()
                except UnicodeDecodeError:
                    raise InvalidRequestError(
                        f"output {name!r} holds bytes that are not UTF-8 text; request it with "
                        'parameters {"binary_data": true}'
                    ) from None
            elif not isinstance(v, str):
                v = str(v)
            out.append(v)
        return out
    if arr.dtype == np.float16:
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[tuple[str, np.ndarray, bool]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it.

    :param outputs: ``(name, array, binary)`` per output tensor.
    """
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr, binary in outputs:
        datatype = datatype_of(arr.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            if datatype == "BYTES":
                blob = _bytes_payload(arr)
            else:
                blob = np.ascontiguousarray(arr, dtype=numpy_dtype(datatype)).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(name, arr)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = entries
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
