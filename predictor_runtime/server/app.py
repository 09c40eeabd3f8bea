"""The ASGI application: routing, body limits, predict, health, metrics, resource routes.

A hand-written ASGI callable (no framework): a route is resolved from the path once and
cached, the predict hot path is parse -> batcher -> serialize with two ``send`` calls, and
every failure becomes a JSON body (never a traceback or an HTML page). The models,
versions and operations routes are served by :mod:`.management` over :mod:`.state`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .. import codecs
from ..errors import NotFoundError, NotReadyError, PayloadTooLargeError, PredictorRuntimeError
from .errors import google_error, predict_error
from .management import ApiError, Management
from .metrics import Metrics
from .registry import Registry
from .state import ManagedState

logger = logging.getLogger("predictor_runtime.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_MAX_REQUEST_BYTES = int(1.5 * 1024 * 1024)
#: A declared body this many times over the limit is refused and the connection closed
#: instead of being read and discarded (which keeps the connection usable).
_CLOSE_FACTOR = 8

# Route kinds
PREDICT = 1
LIST_MODELS = 2
GET_MODEL = 3
LIST_VERSIONS = 4
GET_VERSION = 5
HEALTHZ = 6
READYZ = 7
METRICS = 8
NOT_FOUND = 9
SET_DEFAULT = 10
LIST_OPERATIONS = 11
GET_OPERATION = 12

#: route kind -> resource kind of :class:`.management.Management`
_RESOURCE_KINDS = {
    LIST_MODELS: "models",
    GET_MODEL: "model",
    LIST_VERSIONS: "versions",
    GET_VERSION: "version",
    SET_DEFAULT: "setDefault",
    LIST_OPERATIONS: "operations",
    GET_OPERATION: "operation",
}

_JSON = b"application/json"
_ROUTE_CACHE_SIZE = 4096


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


def resolve(path: str) -> tuple[Any, ...]:
    """Path -> route tuple ``(kind, *params)``; ``(NOT_FOUND,)`` for unknown paths.

    Predict: ``(PREDICT, model, version | None)``. Resource routes carry the project
    (``"-"`` for the short ``/v1/models/...`` aliases), then model, version or operation.
    """
    if path == "/healthz":
        return (HEALTHZ,)
    if path == "/readyz":
        return (READYZ,)
    if path == "/metrics":
        return (METRICS,)
    if not path.startswith("/v1/"):
        return (NOT_FOUND,)
    parts = path[4:].split("/")
    if parts and parts[-1] == "":  # tolerate one trailing slash
        parts.pop()
    project = "-"
    if len(parts) >= 2 and parts[0] == "projects":
        project = parts[1]
        parts = parts[2:]
        if parts and parts[0] == "operations" and all(parts) and project:
            if len(parts) == 1:
                return (LIST_OPERATIONS, project)
            if len(parts) == 2:
                return (GET_OPERATION, project, parts[1])
            return (NOT_FOUND,)
    if not parts or parts[0] != "models" or any(not p for p in parts):
        return (NOT_FOUND,)
    rest = parts[1:]
    verb = None
    if rest and ":" in rest[-1]:
        last, _, verb = rest[-1].partition(":")
        rest = [*rest[:-1], last]
        if not last:
            return (NOT_FOUND,)
    if verb is not None:
        if verb == "setDefault" and len(rest) == 3 and rest[1] == "versions":
            return (SET_DEFAULT, project, rest[0], rest[2])
        if verb != "predict":
            return (NOT_FOUND,)
        if len(rest) == 1:
            return (PREDICT, rest[0], None)
        if len(rest) == 3 and rest[1] == "versions":
            return (PREDICT, rest[0], rest[2])
        return (NOT_FOUND,)
    if not rest:
        return (LIST_MODELS, project)
    if len(rest) == 1:
        return (GET_MODEL, project, rest[0])
    if len(rest) == 2 and rest[1] == "versions":
        return (LIST_VERSIONS, project, rest[0])
    if len(rest) == 3 and rest[1] == "versions":
        return (GET_VERSION, project, rest[0], rest[2])
    return (NOT_FOUND,)


def _disconnect_probe(receive: Receive) -> Callable[[], bool] | None:
    """A cheap "is the client still there?" check, when the ASGI server exposes one.

    uvicorn's ``receive`` is a bound method of its request cycle, which carries a
    ``disconnected`` flag; reading it costs nothing, unlike racing ``receive()``.
    """
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected"):
        return None
    return lambda: not cycle.disconnected


class App:
    """The HTTP API of SPEC section 5 (predict, models/versions/operations, health, metrics).

    :param registry: models and versions served.
    :param metrics: Prometheus metrics (or None to disable ``/metrics``).
    :param max_request_bytes: bodies over this many bytes are answered 413.
    :param state: store-backed state of the resource routes; by default an in-memory one
        (nothing persists, no request logging).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        metrics: Metrics | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        state: ManagedState | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.state = state or ManagedState(registry, metrics=metrics)
        self.management = Management(self.state)
        self._routes: dict[str, tuple[Any, ...]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path = scope["path"]
        route = self._routes.get(path)
        if route is None:
            route = resolve(path)
            if len(self._routes) < _ROUTE_CACHE_SIZE:
                self._routes[path] = route
        try:
            if route[0] == PREDICT:
                await self._predict(route[1], route[2], scope, receive, send)
            else:
                await self._other(route, scope, receive, send)
        except Exception as exc:  # a runtime bug: JSON 500, traceback only in the log
            sys.stderr.write(f"predictor-runtime: internal error on {path}:\n")
            traceback.print_exc(file=sys.stderr)
            body = predict_error(f"Internal error: {type(exc).__name__}: {exc}")
            if route[0] != PREDICT:
                body = google_error(500, f"Internal error: {type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):  # response already started or client gone
                await _respond(send, 500, body)

    # -- predict ----------------------------------------------------------------------

    async def _predict(
        self, model: str, version_name: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            await _respond(
                send,
                405,
                predict_error(f"Method {scope['method']} not allowed; use POST"),
                extra=((b"allow", b"POST"),),
            )
            return
        m_label = v_label = ""
        close = False
        body = b""
        version = None
        try:
            try:
                version = self.registry.version(model, version_name)
                batcher = version.ready()
            except (NotFoundError, NotReadyError):  # slow path: another worker's change?
                version = await self.state.resolve(model, version_name)
                m_label, v_label = version.model, version.name
                batcher = version.ready()
            m_label, v_label = version.model, version.name
            body = await self._read_body(scope, receive)
            dispatcher = version.dispatcher
            assert dispatcher is not None
            instances, kwargs = dispatcher.parse(body)
            preds = await batcher.predict(instances, kwargs, alive=_disconnect_probe(receive))
            version.last_use_time = time.time()
            out = codecs.predictions_body(preds)
            status = 200
        except ClientDisconnected:
            if self.metrics is not None:
                self.metrics.observe_request(m_label, v_label, 499, time.perf_counter() - started)
            return
        except PredictorRuntimeError as exc:
            status = exc.status
            out = predict_error(exc.message)
            if isinstance(exc, PayloadTooLargeError):
                close = getattr(exc, "close_connection", False)
        await _respond(send, status, out, close=close)
        if self.metrics is not None:
            self.metrics.observe_request(m_label, v_label, status, time.perf_counter() - started)
        if body and version is not None:
            log_config = version.request_logging_config
            if log_config is not None and self.state.request_logger is not None:
                self.state.request_logger.log(log_config, m_label, v_label, body, out)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole request body, refusing more than ``max_request_bytes``.

        A Content-Length over the limit is refused before anything is read; a chunked
        body is counted while it streams in.
        """
        limit = self.max_request_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    exc = PayloadTooLargeError(limit, declared)
                    exc.close_connection = declared > _CLOSE_FACTOR * limit  # type: ignore[attr-defined]
                    raise exc
                break
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise PayloadTooLargeError(limit, len(body))
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- everything else --------------------------------------------------------------

    async def _other(
        self, route: tuple[Any, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        kind = route[0]
        method = scope["method"]
        if kind == NOT_FOUND:
            msg = f"The requested URL {scope['path']} was not found on this server"
            await _respond(send, 404, google_error(404, msg))
            return
        resource = _RESOURCE_KINDS.get(kind)
        if resource is not None:
            await self._resource(resource, route, scope, receive, send)
            return
        if method not in ("GET", "HEAD"):
            msg = f"Method {method} not allowed on {scope['path']}; use GET"
            await _respond(send, 405, google_error(405, msg), extra=((b"allow", b"GET, HEAD"),))
            return
        if kind == HEALTHZ:
            await _respond(send, 200, b'{"status":"ok"}')
        elif kind == READYZ:
            if self.registry.settled():
                await _respond(send, 200, b'{"status":"ready"}')
            else:
                await _respond(send, 503, b'{"status":"loading"}')
        elif kind == METRICS:
            if self.metrics is None:
                await _respond(send, 404, google_error(404, "Metrics are disabled"))
                return
            ctype, body = self.metrics.render()
            await _respond(send, 200, body, content_type=ctype)

    async def _resource(
        self, resource: str, route: tuple[Any, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = scope["method"]
        try:
            body = b""
            if method in ("POST", "PATCH", "PUT"):
                body = await self._read_body(scope, receive)
            status, payload = await self.management.handle(
                resource, route[1:], method, scope.get("query_string", b""), body
            )
        except ApiError as exc:
            extra = ((b"allow", exc.allow.encode()),) if exc.allow else ()
            err = google_error(exc.status, exc.message, exc.google_status)
            await _respond(send, exc.status, err, extra=extra)
            return
        except ClientDisconnected:
            return
        except PredictorRuntimeError as exc:
            await _respond(send, exc.status, google_error(exc.status, exc.message))
            return
        await _respond(send, status, orjson.dumps(payload))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.state.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.aclose()
                await self.registry.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = _JSON,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    close: bool = False,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
