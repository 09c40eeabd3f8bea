"""Who may call the server: the api key, browser origins (CORS) and DNS-rebinding protection.

:class:`Guard` runs in :class:`~.app.App` before every handler (SPEC 13):

1. **Host** (DNS rebinding): on a loopback bind only loopback host names are accepted
   (``localhost``, ``*.localhost``, ``127.x.y.z``, ``::1``). A web page whose name an
   attacker re-points at 127.0.0.1 still sends its own name as ``Host``, so it is refused
   (403), as Jupyter does.
2. **Origin** (cross-site requests): a request carrying an ``Origin`` header is refused
   (403 ``PERMISSION_DENIED``) unless that origin is the server's own (the same host and
   port as ``Host``) or listed in ``--cors-origins`` (``*`` for any). Browsers send
   ``Origin`` on every cross-site POST, so a page the user opens cannot drive the server,
   not even with a "simple" ``text/plain`` POST that needs no preflight. Clients that are
   not browsers send no ``Origin`` and pass. CORS preflights (``OPTIONS`` with
   ``Access-Control-Request-Method``) from listed origins are answered 204; responses to
   listed origins carry ``Access-Control-Allow-Origin``.
3. **Api key** (``--api-key`` / ``PREDICTOR_RUNTIME_API_KEY``): every route not flagged
   ``public=True`` (``/healthz``, ``/readyz``) needs ``Authorization: Bearer KEY`` or HTTP
   basic auth with KEY as the user name (any password); otherwise 401 ``UNAUTHENTICATED``
   in Google's envelope. Keys are compared in constant time (:func:`hmac.compare_digest`).

Cost on the predict hot path: one pass over the request's headers and a few comparisons;
everything else is computed once at start, and host names already judged are cached.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from typing import Any

from .errors import google_error
from .http import Headers, Response, header_dict

#: Methods and headers a listed origin may use (answered to CORS preflights).
CORS_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = b"authorization, content-type"
#: Seconds a browser may cache a preflight answer.
CORS_MAX_AGE = b"600"
_HOST_CACHE_SIZE = 256
# Basic too, so that clients such as httplib2 send the credentials they were given
_CHALLENGE = (
    (b"www-authenticate", b'Bearer realm="predictor-runtime", Basic realm="predictor-runtime"'),
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without port or brackets) is this machine."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The host name of a ``Host`` header value (``[::1]:8080`` -> ``::1``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def refusal(status: int, message: str, headers: Headers = ()) -> Response:
    """A refusal in Google's envelope (401 ``UNAUTHENTICATED``, 403 ``PERMISSION_DENIED``)."""
    return Response(status, google_error(status, message), headers=headers)


class Guard:
    """The checks every request passes before its handler (see the module docstring).

    :param api_key: the key every non-public route requires (None: no key).
    :param cors_origins: origins allowed besides the server's own (``*``: any).
    :param bind_host: the address the server listens on; None decides per connection
        from the local address (in-process test servers).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        cors_origins: tuple[str, ...] = (),
        bind_host: str | None = None,
    ) -> None:
        self.key = api_key.encode() if api_key else None
        origins = {o.strip().rstrip("/").lower() for o in cors_origins if o.strip()}
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins - {"*"})
        self.bind_host = bind_host
        self.loopback_bind = None if bind_host is None else is_loopback(bind_host)
        self._hosts: dict[bytes, bool] = {}

    # -- the hot path -----------------------------------------------------------------

    def check(
        self,
        scope: dict[str, Any],
        public: bool,
        headers: dict[bytes, bytes] | None = None,
    ) -> tuple[Response | None, Headers]:
        """``(response, cors_headers)``: a refusal or preflight answer to send instead of
        the handler's (or None), and headers to add to the handler's response.

        :param headers: the request headers as a dict (:func:`~.http.header_dict`), when
            the caller has made it already.
        """
        if headers is None:
            headers = header_dict(scope)
        host = headers.get(b"host")
        origin = headers.get(b"origin")
        auth = headers.get(b"authorization")
        if (
            host is not None
            and self._hosts.get(host) is not True
            and not self._host_allowed(host, scope)
        ):
            shown = host.decode("latin-1")
            return refusal(
                403,
                f"Host {shown!r} is not allowed: this server listens on a loopback address "
                "and answers only loopback names (localhost, 127.0.0.1, [::1]); this protects "
                "it from DNS rebinding. Bind a non-loopback --host to serve other names.",
            ), ()
        cors: Headers = ()
        if origin is not None:
            if origin in self.origins or (self.any_origin and origin != b"null"):
                cors = ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))
            elif not _same_origin(origin, host):
                shown = origin.decode("latin-1")
                return refusal(
                    403,
                    f"Origin {shown!r} is not allowed to call this server (cross-site request "
                    "refused). Start the server with --cors-origins "
                    f"{shown} to allow that web page.",
                ), ()
            if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
                return self._preflight(origin, cors), ()
        if self.key is not None and not public and not self._key_ok(auth):
            what = "missing" if auth is None else "wrong"
            return refusal(
                401,
                f"Request had a {what} api key: send 'Authorization: Bearer KEY' (or HTTP "
                "basic auth with KEY as the user name), KEY being the server's --api-key.",
                _CHALLENGE,
            ), cors
        return None, cors

    def _host_allowed(self, host: bytes, scope: dict[str, Any]) -> bool:
        loopback = self.loopback_bind
        if loopback is None:
            server = scope.get("server")
            loopback = server is not None and is_loopback(str(server[0]))
        if not loopback:
            return True
        ok = self._hosts.get(host)
        if ok is None:
            ok = is_loopback(split_host(host.decode("latin-1")))
            if len(self._hosts) < _HOST_CACHE_SIZE:
                self._hosts[host] = ok
        return ok

    def _key_ok(self, auth: bytes | None) -> bool:
        key = self.key
        if auth is None or key is None:
            return key is None
        scheme, _, credentials = auth.partition(b" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == b"bearer":
            return hmac.compare_digest(credentials, key)
        if scheme == b"basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            user = decoded.partition(b":")[0]
            return hmac.compare_digest(user, key)
        return False

    @staticmethod
    def _preflight(origin: bytes, cors: Headers) -> Response:
        headers = cors or ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))
        return Response(
            204,
            b"",
            headers=(
                *headers,
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-allow-headers", CORS_HEADERS),
                (b"access-control-max-age", CORS_MAX_AGE),
            ),
        )


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names the host the request was sent to."""
    if host is None:
        return False
    _, sep, netloc = origin.partition(b"://")
    return bool(sep) and netloc.lower() == host.lower()


def bind_warning(host: str, api_key: str | None) -> str | None:
    """The start-up warning for a non-loopback bind without an api key (None if safe)."""
    if api_key or is_loopback(host):
        return None
    return (
        f"predictor-runtime: WARNING: listening on {host} without --api-key: anyone who can "
        "reach this address can load models and run code through the management API. "
        "Set --api-key (or PREDICTOR_RUNTIME_API_KEY) and --allow-paths, or bind 127.0.0.1.\n"
    )


__all__ = ["Guard", "bind_warning", "is_loopback", "split_host"]
