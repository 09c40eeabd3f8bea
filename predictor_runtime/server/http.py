"""HTTP primitives shared by every protocol module: request, responses, errors, sending.

A protocol module's handler is ``async def handler(req: Request) -> Response``; it never
touches ASGI messages itself. :class:`Request` reads the body with the server's size limit,
parses the query string lazily and can tell whether the client is still there;
:class:`Response` is one complete body, :class:`StreamingResponse` an async iterator of
chunks sent as they come (Server-Sent Events, chunked JSON arrays). Raising
:class:`~predictor_runtime.errors.PredictorRuntimeError` (or :class:`HttpError`) from a
handler becomes an error body in the route's error style (see :mod:`.router`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from ..errors import PayloadTooLargeError, PredictorRuntimeError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = tuple[tuple[bytes, bytes], ...]

JSON = b"application/json"
SSE = b"text/event-stream"
#: A declared body this many times over the limit is refused and the connection closed
#: instead of being read and discarded (which keeps the connection usable).
CLOSE_FACTOR = 8


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


class HttpError(PredictorRuntimeError):
    """An error answer with an explicit status and, optionally, Google's status name.

    :param google_status: the ``google.rpc.Code`` name for Google's envelope when the
        status alone is ambiguous (409 is ``ABORTED`` or ``ALREADY_EXISTS``).
    :param headers: extra response headers (``Allow``, ``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        google_status: str | None = None,
        headers: Headers = (),
    ) -> None:
        super().__init__(message, status=status)
        self.google_status = google_status
        self.headers = headers


class Response:
    """A complete response: status, body bytes, content type, extra headers."""

    __slots__ = ("body", "close", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = JSON,
        headers: Headers = (),
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.close = close


class StreamingResponse:
    """A response whose body is produced chunk by chunk (each sent as soon as it comes).

    ``chunks`` is closed (``aclose``) when the client goes away or the stream ends, so the
    producer's clean-up runs.
    """

    __slots__ = ("chunks", "content_type", "headers", "status")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        status: int = 200,
        content_type: bytes = SSE,
        headers: Headers = (),
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.content_type = content_type
        self.headers = headers


AnyResponse = Response | StreamingResponse
Handler = Callable[["Request"], Awaitable[AnyResponse]]


def header_dict(scope: Scope) -> dict[bytes, bytes]:
    """The request headers of ``scope`` as a dict (lower-case names; the first of a
    repeated name wins)."""
    headers = scope["headers"]
    return dict(reversed(headers)) if len(headers) > 1 else dict(headers)


class Request:
    """One HTTP request as protocol handlers see it.

    :ivar params: path parameters of the matched route (``{"model": "iris"}``).
    """

    __slots__ = ("_body", "_headers", "_query", "max_body", "params", "receive", "scope")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        params: dict[str, str],
        max_body: int,
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.params = params
        self.max_body = max_body
        self._headers = headers
        self._query: dict[str, str] | None = None
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        """The HTTP method (``GET``, ``POST``...)."""
        return self.scope["method"]  # type: ignore[no-any-return]

    @property
    def path(self) -> str:
        """The request path, without the query string."""
        return self.scope["path"]  # type: ignore[no-any-return]

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the first value of each name)."""
        if self._query is None:
            raw = self.scope.get("query_string", b"")
            q: dict[str, str] = {}
            if raw:
                for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
                    q.setdefault(k, v)
            self._query = q
        return self._query

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower-case bytes), or None."""
        headers = self._headers
        if headers is None:
            headers = self._headers = header_dict(self.scope)
        return headers.get(name)

    def alive(self) -> Callable[[], bool] | None:
        """A cheap "is the client still there?" check, when the ASGI server exposes one.

        uvicorn's ``receive`` is a bound method of its request cycle, which carries a
        ``disconnected`` flag; reading it costs nothing, unlike racing ``receive()``.
        """
        cycle = getattr(self.receive, "__self__", None)
        if cycle is None or not hasattr(cycle, "disconnected"):
            return None
        return lambda: not cycle.disconnected

    @property
    def received(self) -> bytes | None:
        """The body if :meth:`body` has read it already, else None."""
        return self._body

    async def body(self) -> bytes:
        """The whole request body, refusing more than ``max_body`` bytes (413).

        A Content-Length over the limit is refused before anything is read; a chunked
        body is counted while it streams in.
        """
        if self._body is not None:
            return self._body
        limit = self.max_body
        declared = self.header(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > limit:
                exc = PayloadTooLargeError(limit, size)
                exc.close_connection = size > CLOSE_FACTOR * limit  # type: ignore[attr-defined]
                raise exc
        message = await self.receive()
        if message["type"] != "http.request":
            raise ClientDisconnected
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while True:
                message = await self.receive()
                if message["type"] != "http.request":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        elif len(body) > limit:
            raise PayloadTooLargeError(limit, len(body))
        self._body = body
        return body

    async def wait_disconnect(self) -> None:
        """Return once the client has gone away (only after the body was read)."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return


async def send_response(send: Send, response: Response) -> None:
    """Send a complete response in two ASGI messages."""
    body = response.body
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", b"%d" % len(body)),
        *response.headers,
    ]
    if response.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_streaming(send: Send, request: Request, response: StreamingResponse) -> None:
    """Send chunks as they are produced; stop (and close the producer) on disconnect."""
    import asyncio

    headers = [
        (b"content-type", response.content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    chunks = response.chunks
    watcher = asyncio.ensure_future(request.wait_disconnect())
    try:
        while True:
            nxt = asyncio.ensure_future(chunks.__anext__())
            done, _ = await asyncio.wait({nxt, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:  # the client went away while we waited for a chunk
                nxt.cancel()
                with contextlib.suppress(BaseException):
                    await nxt
                return
            try:
                chunk = nxt.result()
            except StopAsyncIteration:
                break
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:
                return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()
