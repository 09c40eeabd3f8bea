"""JSON <-> Python/numpy: the parse, decode, batch and serialize steps of the hot path.

- :func:`parse_json`: orjson first; the standard library only when the body uses the
  ``NaN`` / ``Infinity`` / ``-Infinity`` literals that orjson rejects.
- :func:`decode_b64`: ``{"b64": "..."}`` objects -> ``bytes``, at any depth.
- :func:`to_array`: numeric instances -> one 2-D array, errors naming the instance.
- :func:`records_to_columns`: object instances (named inputs) -> columns.
- :func:`dumps`: strict JSON (RFC 8259) out: numpy types, non-finite -> null,
  bytes -> ``{"b64": ...}``, a dict of batch outputs -> one object per instance.

Nothing here imports a machine-learning framework.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from .errors import InvalidInstanceError, InvalidOutputError, InvalidRequestError, describe

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


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

    :raises InvalidRequestError: the body is not JSON; the message says where.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        if nan_as_null and (fixed := _nan_to_null(body)) is not None:
            try:
                return orjson.loads(fixed)
            except orjson.JSONDecodeError:
                pass
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"Invalid JSON in request body: {exc}") from fast_error


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
    instances: Sequence[Any], *, dtype: Any = np.float64, n_features: int | None = None
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
    """Serialize to strict JSON bytes (numpy aware, NaN/Infinity -> null, bytes -> b64)."""
    try:
        return orjson.dumps(obj, default=_default, option=_DUMPS_OPTIONS)
    except TypeError as exc:
        raise InvalidOutputError(str(exc)) from exc


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
    return dumps({"predictions": predictions})


def error_body(message: str) -> bytes:
    """The failure body ``{"error": message}``."""
    return orjson.dumps({"error": message})
