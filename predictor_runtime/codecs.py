"""JSON <-> Python/numpy: the parse, decode, batch and serialize steps of the hot path.

- :func:`parse_json`: nesting depth checked first (:data:`MAX_JSON_DEPTH`), then orjson;
  the standard library only when the body uses the ``NaN`` / ``Infinity`` / ``-Infinity``
  literals that orjson rejects. Invalid UTF-8 and lone surrogates are refused.
- :func:`decode_b64`: ``{"b64": "..."}`` objects -> ``bytes``, at any depth.
- :func:`to_array`: numeric instances -> one 2-D array, errors naming the instance.
- :func:`records_to_columns`: object instances (named inputs) -> columns.
- :func:`dumps`: strict JSON (RFC 8259) out: numpy types, non-finite -> null,
  bytes -> ``{"b64": ...}``, integers of any size, a dict of batch outputs -> one object
  per instance; what JSON cannot hold is a prediction failure naming the instance.

Nothing here imports a machine-learning framework.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    PredictionFailedError,
    PredictorRuntimeError,
    describe,
)
from .lazy import lazy_numpy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

#: Deepest nesting of arrays and objects a request body may have (checked before any
#: parse). A batch of RGB images is 5 levels deep; 100 leaves room for any real tensor or
#: document while staying far below Python's recursion limit (1,000 frames, which the
#: standard library parser and recursive walks hit) and orjson's output limit (254).
MAX_JSON_DEPTH = 100
#: Bodies up to this size are counted byte-wise first.
_SMALL_BODY = 4096
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
#: Byte-replacement passes (each peels one or two levels) before the exact numpy count.
_QUICK_PASSES = 8
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_INT64 = (-(2**63), 2**64 - 1)


def exceeds_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of JSON text ``body`` nest deeper than ``limit``.

    Computed without parsing (nothing recurses) in C-speed byte operations: escapes and
    strings cut out, everything but brackets deleted, then innermost ``[]``/``{}`` pairs
    removed once per level (a few passes for real bodies; :func:`nesting_depth` finishes
    deeper ones). About 14% of orjson's parse time for a 100-row body, 3% for 1,000 rows;
    a small body with at most ``limit`` opening brackets costs one byte count. For text
    that is not JSON the answer is some guess; the parser then says what is wrong.
    """
    if len(body) <= _SMALL_BODY and body.count(b"[") + body.count(b"{") <= limit:
        return False
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    s = body.translate(None, _NOT_STRUCTURE)
    if b'"' in s:
        # dropping two adjacent quotes keeps every bracket's in-string parity, and leaves
        # only the (rare) strings that hold brackets to be cut out
        s = s.replace(b'""', b"")
        if b'"' in s:
            s = b"".join(s.split(b'"')[::2])
    brackets = s
    run, other = b"[" * (limit + 1), b"{" * (limit + 1)
    for _ in range(min(_QUICK_PASSES, limit // 2)):  # each pass peels one or two levels
        if run in s or other in s:  # that many openers in a row are nested
            return True
        t = s.replace(b"[]", b"").replace(b"{}", b"")
        if not t or len(t) == len(s):
            return False
        s = t
    return nesting_depth(brackets) > limit


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text ``body`` (0 for a scalar)."""
    if b"\\" in body:  # blank out escapes (same length, so positions hold)
        body = body.replace(b"\\\\", b"  ").replace(b'\\"', b"  ")
    arr = np.frombuffer(body, np.uint8)
    opens = np.flatnonzero((arr == 0x5B) | (arr == 0x7B))
    if not len(opens):
        return 0
    closes = np.flatnonzero((arr == 0x5D) | (arr == 0x7D))
    quotes = np.flatnonzero(arr == 0x22)
    if len(quotes):  # a bracket after an odd number of quotes is inside a string
        opens = opens[np.searchsorted(quotes, opens) % 2 == 0]
        closes = closes[np.searchsorted(quotes, closes) % 2 == 0]
        if not len(opens):
            return 0
    still_open = np.arange(1, len(opens) + 1) - np.searchsorted(closes, opens)
    return int(still_open.max())


def _depth_error(limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid JSON in request body: arrays and objects nest deeper than {limit} levels "
        "(the server's nesting limit)"
    )


def _nan_to_null(body: bytes | str) -> bytes | None:
    """``body`` with ``NaN`` literals outside strings replaced by ``null``, if that is safe.

    Safe means: no escaped quote (so splitting on ``"`` finds every string) and no
    ``Infinity`` literal (which ``null`` cannot stand for).
    """
    raw = body.encode() if isinstance(body, str) else body
    if b"NaN" not in raw or b"Infinity" in raw or b'\\"' in raw:
        return None
    parts = raw.split(b'"')
    parts[::2] = [p.replace(b"NaN", b"null") for p in parts[::2]]
    return b'"'.join(parts)


def parse_json(body: bytes | str, *, nan_as_null: bool = False) -> Any:
    """Parse a JSON document, accepting the ``NaN``/``Infinity`` literals.

    orjson parses first; it rejects those literals, so bodies that use them fall back to
    the standard library parser (several times slower). With ``nan_as_null`` (for
    frameworks where ``null`` and ``NaN`` both mean a missing value) ``NaN`` literals are
    rewritten to ``null`` and parsed with orjson instead.

    Nesting deeper than :data:`MAX_JSON_DEPTH` is refused before any parse; so are
    invalid UTF-8 and lone UTF-16 surrogates (``"\\ud800"`` without its pair), which no
    strict JSON writer can send back.

    :raises InvalidRequestError: the body is not JSON; the message says where.
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if exceeds_depth(raw):
        raise _depth_error(MAX_JSON_DEPTH)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as fast_error:
        if b"NaN" not in raw and b"Infinity" not in raw:
            raise InvalidRequestError(f"Invalid JSON in request body: {fast_error}") from None
        if nan_as_null and (fixed := _nan_to_null(raw)) is not None:
            try:
                return orjson.loads(fixed)
            except orjson.JSONDecodeError:
                pass
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"Invalid JSON in request body: not valid UTF-8 at byte {exc.start}"
            ) from None
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequestError(f"Invalid JSON in request body: {exc}") from fast_error
        if _SURROGATE_ESCAPE.search(raw):
            _check_surrogates(parsed)
        return parsed


def _check_surrogates(value: Any) -> None:
    """Refuse strings holding lone surrogates (only called on the standard-library path)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            "Invalid JSON in request body: a string holds a lone UTF-16 surrogate "
            "(a \\ud800-\\udfff escape without its pair), which is not valid Unicode"
        ) from None


def split_request(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """Check a parsed predict body; return ``(instances, kwargs)``.

    ``kwargs`` holds every top-level key other than ``instances``.
    """
    if not isinstance(payload, dict):
        msg = (
            'Invalid JSON request: expected an object {"instances": [...]}, '
            f"got {describe(payload)}"
        )
        raise InvalidRequestError(msg)
    if "instances" not in payload:
        keys = ", ".join(sorted(payload)) or "none"
        msg = f'Invalid JSON request: missing "instances" attribute (keys found: {keys})'
        raise InvalidRequestError(msg)
    instances = payload["instances"]
    if not isinstance(instances, list):
        msg = f'Invalid JSON request: "instances" must be a list, got {describe(instances)}'
        raise InvalidRequestError(msg)
    if not instances:
        raise InvalidRequestError('Invalid JSON request: "instances" must not be empty')
    kwargs = {k: v for k, v in payload.items() if k != "instances"}
    return instances, kwargs


def _decode_value(value: Any, index: int) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "b64" in value:
            data = value["b64"]
            if not isinstance(data, str):
                raise InvalidInstanceError(
                    index, f'"b64" must hold a base64 string, got {describe(data)}'
                )
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidInstanceError(index, f"invalid base64 in a b64 object: {exc}") from exc
        return {k: _decode_value(v, index) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v, index) for v in value]
    return value


def decode_b64(instances: list[Any], body: bytes | str | None = None) -> list[Any]:
    """Replace every ``{"b64": str}`` object in ``instances`` by the decoded ``bytes``.

    When the raw ``body`` is given and holds no ``"b64"`` key, the walk is skipped.
    """
    if body is not None:
        needle = b'"b64"' if isinstance(body, bytes) else '"b64"'
        if needle not in body:  # type: ignore[operator]
            return instances
    return [_decode_value(inst, i) for i, inst in enumerate(instances)]


def is_number_like(value: Any) -> bool:
    """Whether numpy turns ``value`` into a float: a number, a bool, null, a numeric string."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _diagnose(instances: Sequence[Any], n_features: int | None) -> InvalidInstanceError:
    """Find the first instance that keeps ``instances`` from being one numeric 2-D array."""
    width = n_features
    for i, inst in enumerate(instances):
        if isinstance(inst, dict):
            return InvalidInstanceError(
                i,
                "expected a list of numbers, got an object with keys "
                f"{sorted(inst)[:8]}; this model takes unnamed numeric features",
            )
        if not isinstance(inst, list):
            return InvalidInstanceError(i, f"expected a list of numbers, got {describe(inst)}")
        if width is None:
            width = len(inst)
        elif len(inst) != width:
            what = "features" if n_features is not None else "values (as instance 0)"
            return InvalidInstanceError(i, f"expected {width} {what}, got {len(inst)}")
        for j, v in enumerate(inst):
            if is_number_like(v):
                continue
            return InvalidInstanceError(
                i, f"feature {j}: expected a number (or null), got {describe(v)}"
            )
    return InvalidInstanceError(0, "instances could not be turned into a numeric array")


def to_array(
    instances: Sequence[Any], *, dtype: Any = "float64", n_features: int | None = None
) -> np.ndarray:
    """Batch numeric instances into one 2-D array of ``dtype``.

    ``null`` becomes NaN. A list of plain numbers is taken as one feature per instance
    when the model expects a single feature. Ragged rows, non-numeric values and a
    feature count other than ``n_features`` raise :class:`InvalidInstanceError` naming
    the first bad instance.
    """
    try:
        arr = np.asarray(instances, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise _diagnose(instances, n_features) from exc
    if arr.ndim == 1:
        if n_features == 1:
            return arr.reshape(-1, 1)
        raise _diagnose(instances, n_features)
    if arr.ndim != 2:
        raise InvalidInstanceError(
            0, f"expected a flat list of numbers, got nesting of depth {arr.ndim - 1}"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInstanceError(0, f"expected {n_features} features, got {arr.shape[1]}")
    return arr


def records_to_columns(
    instances: Sequence[Any], *, required: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """Turn object instances (named inputs) into ``{name: [value per instance]}``.

    Every instance must be an object with the same keys as instance 0 (or, when
    ``required`` is given, exactly those keys); errors name the instance and the key.
    """
    first = instances[0]
    if not isinstance(first, dict):
        raise InvalidInstanceError(0, f"expected an object of named inputs, got {describe(first)}")
    names = list(required) if required is not None else list(first)
    wanted = set(names)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InvalidInstanceError(
                i, f"expected an object of named inputs, got {describe(inst)}"
            )
        if inst.keys() != wanted:
            missing = sorted(wanted - inst.keys())
            extra = sorted(inst.keys() - wanted)
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if extra:
                parts.append(f"unexpected input(s) {extra}")
            raise InvalidInstanceError(
                i, "; ".join(parts) + f" (expected exactly {sorted(wanted)})"
            )
        for name in names:
            columns[name].append(inst[name])
    return columns


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "SV":
            return [_default(x) for x in obj.tolist()]
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset):
        return list(obj)
    if hasattr(obj, "tolist"):  # pandas / other array-likes
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


#: the ``default=`` of :func:`dumps`, for callers that serialize many small values inline.
json_default = _default


def rowify(outputs: dict[str, Any], n: int | None = None) -> list[dict[str, Any]]:
    """A dict of batch outputs (one array per output name) -> one object per instance."""
    lengths: dict[str, int | None] = {}
    for key, value in outputs.items():
        try:
            lengths[key] = len(value)
        except TypeError:
            lengths[key] = None
    sizes = {v for v in lengths.values() if v is not None}
    if len(sizes) != 1 or None in lengths.values():
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise InvalidOutputError(
            f"outputs of a dict prediction must all have one entry per instance; got {detail}"
        )
    count = sizes.pop()
    if n is not None and count != n:
        raise InvalidOutputError(f"outputs have {count} entries for {n} instances")
    keys = list(outputs)
    cols = [outputs[k] for k in keys]
    return [dict(zip(keys, row, strict=True)) for row in zip(*cols, strict=True)]


def dumps(obj: Any) -> bytes:
    """Serialize to strict JSON bytes (numpy aware, NaN/Infinity -> null, bytes -> b64).

    Integers beyond 64 bits, which orjson cannot write, are written exactly.

    :raises InvalidOutputError: ``obj`` holds something JSON cannot represent (an
        unknown type, a string that is not valid Unicode, nesting over 254 levels).
    """
    try:
        return orjson.dumps(obj, default=_default, option=_DUMPS_OPTIONS)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise InvalidOutputError(_output_problem(exc)) from exc
    try:
        return orjson.dumps(_widen_ints(obj), default=_default, option=_DUMPS_OPTIONS)
    except (TypeError, RecursionError) as exc:
        raise InvalidOutputError(_output_problem(exc)) from exc


def _output_problem(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, RecursionError) or "Recursion limit" in text:
        return "lists or objects nest too deeply for JSON output (more than 254 levels)"
    if "UTF-8" in text:
        return f"a string is not valid Unicode ({text})"
    return text


def _widen_ints(obj: Any) -> Any:
    """``obj`` with integers beyond 64 bits as raw JSON fragments (orjson writes them as-is)."""
    if type(obj) is int:
        return obj if _INT64[0] <= obj <= _INT64[1] else orjson.Fragment(str(obj).encode())
    if isinstance(obj, list | tuple):
        return [_widen_ints(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _widen_ints(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return _widen_ints(obj.tolist())
    return obj


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values (what :func:`dumps` would write), e.g. for a stream chunk."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if type(obj) is float:
        return obj if math.isfinite(obj) else None
    return orjson.loads(dumps(obj))


def predictions_body(predictions: Any) -> bytes:
    """The success body ``{"predictions": [...]}``; a dict of outputs is rowified first."""
    if isinstance(predictions, dict):
        predictions = rowify(predictions)
    try:
        return dumps({"predictions": predictions})
    except InvalidOutputError as exc:
        raise _failing_instance(predictions, exc) from exc.__cause__


def _failing_instance(predictions: Any, exc: InvalidOutputError) -> PredictorRuntimeError:
    """A prediction failure naming the first instance whose output JSON cannot hold."""
    detail = str(exc).removeprefix("There was a problem processing the outputs: ")
    try:
        rows = list(predictions)
    except TypeError:
        rows = []
    for i, row in enumerate(rows):
        try:
            dumps(row)
        except InvalidOutputError as row_exc:
            why = str(row_exc).removeprefix("There was a problem processing the outputs: ")
            return PredictionFailedError(
                f"the output of instance {i} cannot be written as JSON: {why}"
            )
    return PredictionFailedError(f"the outputs cannot be written as JSON: {detail}")


def safe_text(message: str) -> str:
    """``message`` with lone surrogates escaped (``\\ud800``), so JSON can always hold it."""
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return message.encode("utf-8", "backslashreplace").decode("utf-8")
    return message


def error_body(message: str) -> bytes:
    """The failure body ``{"error": message}``; never fails, whatever the message holds."""
    try:
        return orjson.dumps({"error": message})
    except TypeError:
        return orjson.dumps({"error": safe_text(message)})
