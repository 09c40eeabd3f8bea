"""``/metrics``: Prometheus text exposition of the server's metrics (multiprocess-aware)."""

from __future__ import annotations

from ...errors import NotFoundError
from ..context import ServerContext
from ..http import Request, Response
from ..router import Router


def register(router: Router, ctx: ServerContext) -> None:
    """Add ``GET /metrics``."""
    metrics = ctx.metrics

    async def render(req: Request) -> Response:
        if metrics is None:
            raise NotFoundError("Metrics are disabled")
        ctype, body = metrics.render()
        return Response(200, body, content_type=ctype)

    router.add("GET", "/metrics", render)
