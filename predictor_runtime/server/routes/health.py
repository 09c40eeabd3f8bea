"""``/healthz`` (the process is alive) and ``/readyz`` (every version READY or FAILED).

Both are public: they answer without the api key, for load balancers and orchestrators.
"""

from __future__ import annotations

from ..context import ServerContext
from ..http import Request, Response
from ..router import Router

_OK = Response(200, b'{"status":"ok"}')
_READY = Response(200, b'{"status":"ready"}')
_LOADING = Response(503, b'{"status":"loading"}')


def register(router: Router, ctx: ServerContext) -> None:
    """Add the two health routes."""
    registry = ctx.registry

    async def healthz(req: Request) -> Response:
        return _OK

    async def readyz(req: Request) -> Response:
        return _READY if registry.settled() else _LOADING

    router.add("GET", "/healthz", healthz, public=True)
    router.add("GET", "/readyz", readyz, public=True)
