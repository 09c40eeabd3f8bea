"""Connection limits of ``serve``: timeouts for idle and slow clients, a concurrency bound.

uvicorn closes a keep-alive connection that stays idle between requests
(``timeout_keep_alive``), but not one that never sends a request, nor one that sends its
headers or body a byte at a time (a "slowloris" client holds a file descriptor for as long
as it likes). :func:`protocol_class` returns uvicorn's httptools protocol with:

- a **header timeout**: from the connection's opening (or the first byte of a later
  request) to the end of the request headers. A silent connection is closed; a partial
  request gets 408 first.
- a **body timeout**: from the end of the headers to the end of the body; then the
  connection is closed (the handler sees a disconnect).
- a **concurrency bound**: beyond ``limit`` open connections or requests in progress, a
  request is answered 503 ``UNAVAILABLE`` (JSON, ``Retry-After: 1``, connection closed)
  instead of running, so a flood cannot exhaust file descriptors or memory.

Requests whose handler is running (a slow prediction, a stream) are never timed out here.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

from .errors import google_error

#: Seconds an idle keep-alive connection stays open between requests (nginx's default;
#: uvicorn's 5 s broke googleapiclient, which does not retry a POST on a connection the
#: server closed while the caller paused).
DEFAULT_TIMEOUT_KEEP_ALIVE = 75.0
#: Seconds to receive a request's headers; real clients send them in one packet.
DEFAULT_TIMEOUT_HEADERS = 10.0
#: Seconds to receive a request's body once its headers are in: 1.5 MB (the default
#: --max-request-bytes) at 25 KB/s.
DEFAULT_TIMEOUT_BODY = 60.0
#: Upper end of the default concurrency bound (connections or requests per worker).
MAX_DEFAULT_CONCURRENCY = 4096
#: File descriptors kept free for the model, the state store, logs and pipes.
RESERVED_FDS = 128


def default_limit_concurrency() -> int:
    """The default ``--limit-concurrency``: what the open-files limit allows, at most 4096."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        return MAX_DEFAULT_CONCURRENCY
    return max(16, min(MAX_DEFAULT_CONCURRENCY, soft - RESERVED_FDS))


@dataclass(frozen=True)
class ConnectionLimits:
    """The timeouts (seconds) and concurrency bound applied to every connection."""

    timeout_headers: float = DEFAULT_TIMEOUT_HEADERS
    timeout_body: float = DEFAULT_TIMEOUT_BODY
    limit_concurrency: int | None = None


_UNAVAILABLE = google_error(
    503, "The server is at its concurrency limit (--limit-concurrency); retry shortly"
)
_TIMEOUT = google_error(408, "Request headers were not received in time; connection closed")


async def unavailable(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI answer beyond the concurrency bound: 503 JSON, then close."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(_UNAVAILABLE)),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _UNAVAILABLE})


def protocol_class(limits: ConnectionLimits) -> type:
    """uvicorn's httptools protocol with ``limits`` (pass it as ``Config(http=...)``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _limits = limits

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limit_concurrency = None  # checked here, to answer in JSON
            self._timer: asyncio.TimerHandle | None = None
            self._partial = False

        def _arm(self, seconds: float, callback: Any) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._partial = False
            self._arm(self._limits.timeout_headers, self._headers_late)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._timer is None and self.cycle is not None and self.cycle.response_complete:
                # the first bytes of a next request on a kept-alive connection
                self._arm(self._limits.timeout_headers, self._headers_late)
            self._partial = True
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._partial = False
            self._arm(self._limits.timeout_body, self._body_late)
            limit = self._limits.limit_concurrency
            if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
                app = self.app
                self.app = unavailable
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
                return
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()

        def _headers_late(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self._partial:
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT), _TIMEOUT)
                )
            self.transport.close()

        def _body_late(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return LimitedHttpToolsProtocol


__all__ = [
    "DEFAULT_TIMEOUT_BODY",
    "DEFAULT_TIMEOUT_HEADERS",
    "DEFAULT_TIMEOUT_KEEP_ALIVE",
    "ConnectionLimits",
    "default_limit_concurrency",
    "protocol_class",
]
