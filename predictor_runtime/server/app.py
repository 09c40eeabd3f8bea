"""The ASGI application: the route table, one error handler, the lifespan.

A hand-written ASGI callable (no framework): the router (:mod:`.router`) maps method and
path to a protocol module's handler (:mod:`.routes`); the handler gets a
:class:`~.http.Request` and returns a :class:`~.http.Response` or
:class:`~.http.StreamingResponse`. Every failure becomes a JSON body in the route's error
style (never a traceback or an HTML page): a
:class:`~predictor_runtime.errors.PredictorRuntimeError` keeps its status, anything else
is a runtime bug answered 500 with the traceback only in the log.

Before any handler runs, :class:`~.security.Guard` checks the ``Host`` (DNS rebinding),
the ``Origin`` (cross-site requests, CORS preflights) and the api key (routes added with
``public=True`` skip the key); its refusals use Google's envelope.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from .. import codecs
from ..errors import PayloadTooLargeError, PredictorRuntimeError
from .context import ServerContext, ServerOptionsView
from .defaults import DEFAULT_MAX_REQUEST_BYTES
from .errors import google_error
from .http import (
    ClientDisconnected,
    HttpError,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    header_dict,
    send_response,
    send_streaming,
)
from .metrics import Metrics
from .registry import Registry
from .router import ErrorStyle, Router
from .routes import register_all
from .security import Guard
from .state import ManagedState

logger = logging.getLogger("predictor_runtime.server")

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "App", "error_response"]


def error_response(style: ErrorStyle, exc: PredictorRuntimeError) -> Response:
    """The error body of ``exc`` in ``style`` (``google`` envelope or ``plain``)."""
    status = exc.status
    headers = exc.headers if isinstance(exc, HttpError) else ()
    if style == "plain":
        body = codecs.error_body(exc.message)
    else:
        name = exc.google_status if isinstance(exc, HttpError) else None
        body = google_error(status, exc.message, name)
    close = isinstance(exc, PayloadTooLargeError) and getattr(exc, "close_connection", False)
    return Response(status, body, headers=headers, close=close)


class App:
    """The HTTP API: every protocol module's routes over one registry and state.

    :param registry: models and versions served.
    :param metrics: Prometheus metrics (or None to disable ``/metrics``).
    :param max_request_bytes: bodies over this many bytes are answered 413.
    :param state: store-backed state of the resource routes; by default an in-memory one
        (nothing persists, no request logging).
    :param options: settings protocol modules read (allowed paths, task limits...).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        metrics: Metrics | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        state: ManagedState | None = None,
        options: ServerOptionsView | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.state = state or ManagedState(registry, metrics=metrics)
        opts = options or ServerOptionsView()
        opts.max_request_bytes = max_request_bytes
        if opts.state_dir is None:
            opts.state_dir = self.state.state_dir
        registry.allow_paths = opts.allow_paths
        self.context = ServerContext(registry, self.state, metrics, opts)
        self.router = Router()
        register_all(self.router, self.context)
        self.guard = Guard(
            api_key=opts.api_key, cors_origins=opts.cors_origins, bind_host=opts.host
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path = scope["path"]
        match = self.router.match(path)
        method = scope["method"]
        hit = match.for_method(method, scope)
        headers = header_dict(scope)
        refused, cors = self.guard.check(scope, hit is not None and hit[0].public, headers)
        if refused is not None:
            await send_response(send, refused)
            return
        if cors:
            send = _with_headers(send, cors)
        if hit is None:
            style = match.routes[0][0].errors if match.routes else self.router.style_for(path)
            if match.routes:
                allow = match.allow()
                exc = HttpError(
                    405,
                    f"Method {method} not allowed on {path}; use {allow}",
                    google_status="UNIMPLEMENTED",
                    headers=((b"allow", allow.encode()),),
                )
            else:
                exc = HttpError(404, f"The requested URL {path} was not found on this server")
            await send_response(send, error_response(style, exc))
            return
        route, params = hit
        request = Request(scope, receive, params, self.max_request_bytes, headers)
        try:
            response = await route.handler(request)
        except ClientDisconnected:
            return
        except PredictorRuntimeError as exc:
            response = error_response(route.errors, exc)
        except Exception as exc:  # a runtime bug: JSON 500, traceback only in the log
            sys.stderr.write(f"predictor-runtime: internal error on {path}:\n")
            traceback.print_exc(file=sys.stderr)
            message = f"Internal error: {type(exc).__name__}: {exc}"
            response = error_response(route.errors, PredictorRuntimeError(message, status=500))
        try:
            if type(response) is Response:
                await send_response(send, response)
            else:
                await send_streaming(send, request, response)  # type: ignore[arg-type]
        except OSError:  # the client went away
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.state.start()
                await self.context.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.context.shutdown()
                await self.state.aclose()
                await self.registry.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _with_headers(send: Send, extra: tuple[tuple[bytes, bytes], ...]) -> Send:
    """``send`` adding ``extra`` headers to the response start (CORS answers)."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return wrapped


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "App", "error_response"]
