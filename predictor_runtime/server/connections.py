"""Connection limits of ``serve``: timeouts for idle and slow clients, a concurrency bound.

uvicorn closes a keep-alive connection that stays idle between requests, but not one
that never sends a request, nor one that sends its headers or body a byte at a time (a
"slowloris" client holds a file descriptor for as long as it likes).
:func:`protocol_class` returns uvicorn's httptools protocol with:

- a **keep-alive timeout**: a connection idle after its last answer is closed.
- a **header timeout**: from the connection's opening (or the first byte of a later
  request) to the end of the request headers. A silent connection is closed; a partial
  request gets 408 first.
- a **body timeout**: from the end of the headers to the end of the body; then the
  connection is closed (the handler sees a disconnect).
- a **concurrency bound**: a connection opened beyond ``limit`` open connections has its
  request answered 503 ``UNAVAILABLE`` (JSON, ``Retry-After: 1``, connection closed)
  instead of run, so a flood cannot exhaust file descriptors or memory. (An HTTP/1.1
  connection runs one request at a time, so this bounds requests in progress too.)

Requests whose handler is running (a slow prediction, a stream) are never timed out here.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any, cast

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
    timeout_keep_alive: float = DEFAULT_TIMEOUT_KEEP_ALIVE


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
    """uvicorn's httptools protocol with ``limits`` (pass it as ``Config(http=...)``).

    Nothing here runs per request, so the limits cost the hot path nothing:

    - the concurrency bound is checked when a connection opens: a connection beyond it
      answers its request 503 and closes. Each HTTP/1.1 connection runs at most one
      request at a time, so bounding the admitted connections bounds the requests too;
    - one repeating timer per server (every half of the shortest timeout) looks at what
      each connection is doing: a request whose headers (or body) are still incomplete,
      or an idle keep-alive connection, seen in the same state at two looks at least the
      timeout apart is closed, i.e. between 1 and 1.5 times the timeout after the state
      began. uvicorn's own keep-alive timer, armed and cancelled once per request, is
      not used: timers are the dearest thing on uvloop's hot path (removing that one
      gave 8% more one-row requests per CPU second: ``benchmarks/protocol_ab.py``).
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # on_response_complete below copies uvicorn 0.54's minus its
    # keep-alive timer; a uvicorn whose protocol lacks what it calls keeps its own
    _KNOWN_RESPONSE_COMPLETE = all(
        hasattr(HttpToolsProtocol, name)
        for name in ("_unset_keepalive_if_required", "_start_asgi_task", "on_response_complete")
    )

    timeout_headers, timeout_body = limits.timeout_headers, limits.timeout_body
    timeout_idle = limits.timeout_keep_alive
    limit = limits.limit_concurrency
    tick = min(timeout_headers, timeout_body, timeout_idle) / 2
    timeouts = {"headers": timeout_headers, "body": timeout_body, "idle": timeout_idle}

    def sweep(loop: asyncio.AbstractEventLoop, state: Any) -> None:
        state.predictor_runtime_sweep = None
        now = loop.time()
        for conn in list(state.connections):
            if isinstance(conn, LimitedHttpToolsProtocol):
                conn.look(now)
        if state.connections:
            state.predictor_runtime_sweep = loop.call_later(tick, sweep, loop, state)

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        #: (key, what the connection waits for, since when) as last seen by the sweep
        _seen: tuple[Any, str, float] | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if limit is not None and len(self.connections) > limit:
                self.app = unavailable  # this connection's requests: 503, then close
            loop, state = self.loop, cast(Any, self.server_state)
            self._seen = (None, "headers", loop.time())  # a silent connection times out
            if getattr(state, "predictor_runtime_sweep", None) is None:
                state.predictor_runtime_sweep = loop.call_later(tick, sweep, loop, state)

        if _KNOWN_RESPONSE_COMPLETE:

            def on_response_complete(self) -> None:
                # uvicorn's, without arming its keep-alive timer (the sweep closes idle ones)
                self.server_state.total_requests += 1
                if self.transport.is_closing():
                    return
                self._unset_keepalive_if_required()
                self.flow.resume_reading()
                if self.pipeline:
                    cycle, app = self.pipeline.pop()
                    self._start_asgi_task(cycle, app)

        def state(self) -> tuple[str, Any] | None:
            """What the connection waits for, and the object that stays the same while it
            does: ``headers``/``body`` of an incomplete request (its scope), ``idle``
            after a complete answer (its request cycle), or None while a handler runs."""
            scope, cycle = self.scope, self.cycle
            if scope is None:  # nothing received on this connection yet
                return "headers", None
            if cycle is None or cycle.scope is not scope:  # begun, headers not complete
                return "headers", scope
            if cycle.more_body:
                # (also True after an early answer, e.g. 413, whose body then completed:
                # the connection is idle and waits like an idle one)
                return "body", scope
            if cycle.response_complete:
                return "idle", cycle
            return None

        def look(self, now: float) -> None:
            """Close the connection if it has been in one waiting state for too long."""
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            state = self.state()
            if state is None:
                self._seen = None
                return
            what, key = state
            seen = self._seen
            if seen is None or seen[0] is not key or seen[1] != what:
                self._seen = (key, what, now)
            elif now - seen[2] >= timeouts[what]:
                if what == "headers" and key is not None:  # a partial request
                    transport.write(
                        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                        % (len(_TIMEOUT), _TIMEOUT)
                    )
                transport.close()

    return LimitedHttpToolsProtocol


__all__ = [
    "DEFAULT_TIMEOUT_BODY",
    "DEFAULT_TIMEOUT_HEADERS",
    "DEFAULT_TIMEOUT_KEEP_ALIVE",
    "ConnectionLimits",
    "default_limit_concurrency",
    "protocol_class",
]
