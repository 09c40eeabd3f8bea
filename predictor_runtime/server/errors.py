"""Error bodies of the HTTP API: two shapes, one mapping from status to Google's names.

- Predict routes answer like AI Platform online prediction: ``{"error": "<message>"}``.
- Every other route (models, versions, unknown paths) uses Google's JSON error envelope,
  ``{"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}``, which Google's
  API client libraries turn into their usual ``HttpError`` / ``NotFound`` exceptions.
"""

from __future__ import annotations

import orjson

from .. import codecs

#: HTTP status -> ``google.rpc.Code`` name, for the envelope's ``status``.
GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def predict_error(message: str) -> bytes:
    """AI Platform's predict failure body ``{"error": message}``."""
    return codecs.error_body(message)


def google_error(status: int, message: str, name: str | None = None) -> bytes:
    """Google's error envelope for ``status`` with ``message``.

    :param name: the ``google.rpc.Code`` name when the status alone is ambiguous (409 is
        ``ABORTED`` or ``ALREADY_EXISTS``; 400 may be ``FAILED_PRECONDITION``).
    """
    name = name or GOOGLE_STATUS.get(status, "UNKNOWN" if status < 500 else "INTERNAL")
    message = codecs.safe_text(message)
    return orjson.dumps({"error": {"code": status, "message": message, "status": name}})
