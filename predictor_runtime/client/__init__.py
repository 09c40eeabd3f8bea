"""``predictor_runtime.client``: one typed Python client for a predictor-runtime server.

:class:`Client` (sync) and :class:`AsyncClient` (asyncio) have the same methods:

- ``predict`` (AI Platform ``ml v1``), ``predict_async`` (Launch-style async tasks, a
  future), ``stream`` (streaming tasks, Server-Sent Events), ``infer`` (Open Inference
  Protocol V2 with binary tensors, numpy in and out);
- ``create_model``, ``create_version`` (waits for the version to load), ``list_models``,
  ``list_versions``, ``delete_version`` and friends;
- ``generate`` and ``embed``, thin helpers over the GenerativeService routes.

Errors are :class:`ApiError` subclasses carrying ``.status`` and the server's
``.message``. Built on httpx (pooled connections, timeouts); no machine-learning
framework is imported, and numpy only when ``infer`` runs.
"""

from __future__ import annotations

from ._async import AsyncChunkStream, AsyncClient, AsyncPredictionFuture
from ._errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnimplementedError,
    UnprocessableEntityError,
    VersionFailedError,
)
from ._sync import ChunkStream, Client, PredictionFuture

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AsyncChunkStream",
    "AsyncClient",
    "AsyncPredictionFuture",
    "AuthenticationError",
    "BadRequestError",
    "ChunkStream",
    "Client",
    "ClientError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PredictionFuture",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnimplementedError",
    "UnprocessableEntityError",
    "VersionFailedError",
]
