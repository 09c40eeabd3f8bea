"""Errors of :mod:`predictor_runtime.client`: one family, the server's message always kept.

:class:`ApiError` is any HTTP error answer (or a failed task, which carries the status the
prediction would have had); its subclasses name the common statuses so callers can write
``except NotFoundError``. Both error bodies of the server are understood: AI Platform's
``{"error": "..."}`` and Google's ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import orjson

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnimplementedError",
    "UnprocessableEntityError",
    "VersionFailedError",
    "error_for_status",
    "error_from_response",
]


class ClientError(Exception):
    """Base of every error :mod:`predictor_runtime.client` raises on purpose."""


class ApiError(ClientError):
    """The server answered with an error status (or a task finished with one).

    :ivar status: the HTTP status (for a failed task: the status its prediction had).
    :ivar message: the server's own message (never just the reason phrase).
    :ivar reason: Google's status name when the server sent one (``"NOT_FOUND"``...).
    :ivar body: the raw error body, for anything the attributes do not cover.
    :ivar retry_after: seconds the server asked to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        body: bytes = b"",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason
        self.body = body
        self.retry_after = retry_after


class BadRequestError(ApiError):
    """400: the request or an instance is invalid, or the predictor raised."""


class AuthenticationError(ApiError):
    """401: a missing or wrong ``api_key``."""


class PermissionDeniedError(ApiError):
    """403: the key is valid but may not do this."""


class NotFoundError(ApiError):
    """404: unknown model, version, operation, task or route."""


class ConflictError(ApiError):
    """409: a stale ``etag`` or a resource that already exists."""


class PayloadTooLargeError(ApiError):
    """413: the request body is over the server's ``--max-request-bytes``."""


class UnprocessableEntityError(ApiError):
    """422: a task request with unknown or conflicting fields."""


class RateLimitError(ApiError):
    """429: too many pending tasks or requests (retried before it is raised)."""


class InternalServerError(ApiError):
    """500: a bug in the server, or a predictor that failed on a generative route."""


class UnimplementedError(ApiError):
    """501: the model lacks the capability the route needs."""


class ServiceUnavailableError(ApiError):
    """503: the version is still loading, or the store is busy (retried before raised)."""


class ApiConnectionError(ClientError):
    """The server could not be reached or did not answer (after the retries).

    The underlying ``httpx`` exception is the ``__cause__``.
    """


class VersionFailedError(ClientError):
    """``create_version(wait=True)``: the version ended FAILED.

    :ivar message: the version's ``errorMessage``.
    :ivar version: the Version resource as the server shows it.
    """

    def __init__(self, message: str, version: dict[str, Any]) -> None:
        name = version.get("name", "?")
        super().__init__(f"Version {name} failed: {message}")
        self.message = message
        self.version = version


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    501: UnimplementedError,
    503: ServiceUnavailableError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    body: bytes = b"",
    retry_after: float | None = None,
) -> ApiError:
    """The :class:`ApiError` subclass that fits ``status`` (``ApiError`` itself otherwise)."""
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, message, reason=reason, body=body, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(status: int, body: bytes, phrase: str) -> tuple[str, str | None]:
    """``(message, google_status_name)`` from an error body of either envelope.

    A body that is not one of them (a proxy's HTML page, plain text) is shown as text,
    shortened; an empty body falls back to the reason phrase.
    """
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        err = payload["error"]
        if isinstance(err, dict):
            message = err.get("message")
            reason = err.get("status")
            return (
                str(message) if message else phrase or f"HTTP {status}",
                str(reason) if reason else None,
            )
        if err:
            return str(err), None
    text = body.decode("utf-8", "replace").strip()
    if text:
        return (text if len(text) <= 500 else text[:500] + "..."), None
    return phrase or f"HTTP {status}", None


def error_from_response(status: int, body: bytes, headers: Any, phrase: str = "") -> ApiError:
    """The typed error for an HTTP error answer (``headers``: any mapping-like object)."""
    message, reason = error_message(status, body, phrase)
    return error_for_status(
        status,
        message,
        reason=reason,
        body=body,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )
