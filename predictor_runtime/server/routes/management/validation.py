"""Validation of management request bodies: each check names the field at fault."""

from __future__ import annotations

import re
from typing import Any

import orjson

from ....errors import PredictorRuntimeError
from ...http import HttpError
from ...request_log import validate_logging_config

#: AI Platform: letters, digits and underscores, starting with a letter.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
NAME_RULE = "must start with a letter and contain only letters, numbers and underscores"


def ApiError(
    status: int, google_status: str, message: str, *, allow: str | None = None
) -> HttpError:
    """An error of the management API: HTTP status, Google status name, message."""
    headers = ((b"allow", allow.encode()),) if allow else ()
    return HttpError(status, message, google_status=google_status, headers=headers)


def invalid(message: str) -> HttpError:
    """400 INVALID_ARGUMENT."""
    return HttpError(400, message, google_status="INVALID_ARGUMENT")


def not_found(message: str) -> HttpError:
    """404 NOT_FOUND."""
    return HttpError(404, message, google_status="NOT_FOUND")


def parse_body(body: bytes, what: str, allowed: set[str]) -> dict[str, Any]:
    """The JSON object of a request body; 400 for bad JSON or unknown fields."""
    from .... import codecs

    if codecs.exceeds_depth(body):
        raise invalid(
            f"Invalid JSON payload received ({what}): arrays and objects nest deeper than "
            f"{codecs.MAX_JSON_DEPTH} levels"
        )
    try:
        obj = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise invalid(f"Invalid JSON payload received ({what}): {exc}") from None
    if not isinstance(obj, dict):
        raise invalid(f"Invalid JSON payload received: {what} must be an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise invalid(
            f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at '{what}': "
            "Cannot find field."
        )
    return obj


def check_name(name: Any, what: str) -> str:
    """A valid AI Platform resource name, else 400 naming ``<what>.name``."""
    if name is None or name == "":
        raise invalid(f"Field: {what}.name Error: A name is required.")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid(f"Field: {what}.name Error: A name should {NAME_RULE}; got {name!r}.")
    return name


def check_str(value: Any, field: str) -> str:
    """A string field."""
    if not isinstance(value, str):
        raise invalid(f"Field: {field} Error: must be a string, got {type(value).__name__}")
    return value


def check_labels(value: Any, field: str) -> dict[str, str]:
    """A string -> string map."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid(f"Field: {field} Error: labels must map strings to strings, got {value!r}")
    return dict(value)


def check_uri(value: Any, field: str = "version.deploymentUri") -> str:
    """A local path or ``file://`` URI (``gs://`` cannot be read by a local server)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"Field: {field} Error: a local path or file:// URI is required")
    if "://" in value and not value.startswith("file://"):
        raise invalid(
            f"Field: {field} Error: only local paths and file:// URIs can be served locally, "
            f"got {value!r}"
        )
    return value


def check_framework(value: Any) -> str | None:
    """An AI Platform framework enum value (or a plugin name); None for auto-detection."""
    if value in (None, "", "FRAMEWORK_UNSPECIFIED"):
        return None
    from ....plugins import framework_registry

    try:
        framework_registry().get(str(value))
    except PredictorRuntimeError:
        known = sorted({i.api_name or i.name for i in framework_registry().frameworks.values()})
        raise invalid(
            f"Field: version.framework Error: unknown framework {value!r}; expected one of "
            f"{', '.join(known)} (or omit it to detect it from the files)"
        ) from None
    return str(value)


def check_logging(value: Any) -> dict[str, Any] | None:
    """A valid ``requestLoggingConfig`` or None."""
    if value is None:
        return None
    try:
        return validate_logging_config(value)
    except ValueError as exc:
        raise invalid(f"Field: version.requestLoggingConfig Error: {exc}") from None


def check_scaling(obj: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(autoScaling, manualScaling)`` from a Version body; at most one of them."""
    auto, manual = obj.get("autoScaling"), obj.get("manualScaling")
    if auto is not None and manual is not None:
        raise invalid(
            "Field: version.autoScaling Error: give autoScaling or manualScaling, not both"
        )
    for field, value, keys in (
        ("autoScaling", auto, {"minNodes", "maxNodes", "metrics"}),
        ("manualScaling", manual, {"nodes"}),
    ):
        if value is None:
            continue
        if not isinstance(value, dict) or set(value) - keys:
            raise invalid(
                f"Field: version.{field} Error: expected an object with {', '.join(sorted(keys))}, "
                f"got {value!r}"
            )
        for key in keys - {"metrics"}:
            n = value.get(key, 0)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise invalid(
                    f"Field: version.{field}.{key} Error: must be an integer >= 0, got {n!r}"
                )
    return auto, manual


def update_mask(query: dict[str, str], allowed: tuple[str, ...]) -> set[str]:
    """The fields of ``updateMask`` (camelCase or snake_case), each one of ``allowed``."""
    raw = query.get("updateMask") or query.get("update_mask") or ""
    paths = {_camel(p.strip()) for p in raw.split(",") if p.strip()}
    if not paths:
        raise invalid(f"Field: updateMask Error: required; one or more of {', '.join(allowed)}")
    bad = sorted(paths - set(allowed))
    if bad:
        raise invalid(
            f"Field: updateMask Error: {', '.join(bad)} cannot be updated; allowed: "
            f"{', '.join(allowed)}"
        )
    return paths


def _camel(path: str) -> str:
    head, *rest = path.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def check_etag(obj: dict[str, Any], rec: dict[str, Any], what: str) -> None:
    """409 ABORTED when the body carries an etag other than the current one."""
    etag = obj.get("etag")
    if etag and etag != rec.get("etag"):
        raise ApiError(
            409,
            "ABORTED",
            f"etag mismatch for {what}: the request has {etag!r} but the current etag is "
            f"{rec.get('etag')!r} (it was changed since it was read); read it again and retry",
        )
