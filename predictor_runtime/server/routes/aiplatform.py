"""AI Platform ``ml v1`` online prediction: ``POST .../models/{m}[/versions/{v}]:predict``.

The hot path: one registry look-up, the body read, then the version's
:class:`~predictor_runtime.pipeline.Pipeline` (parse -> batcher -> serialize). Errors are
AI Platform's ``{"error": "<message>"}`` (the route's ``plain`` style).
"""

from __future__ import annotations

import time

from ... import codecs
from ...errors import NotFoundError, NotReadyError, PayloadTooLargeError, PredictorRuntimeError
from ..context import ServerContext
from ..http import ClientDisconnected, Request, Response
from ..router import Router

PATTERNS_DEFAULT = ("/v1/projects/{project}/models/{model}:predict", "/v1/models/{model}:predict")
PATTERNS_VERSION = (
    "/v1/projects/{project}/models/{model}/versions/{version}:predict",
    "/v1/models/{model}/versions/{version}:predict",
)


def register(router: Router, ctx: ServerContext) -> None:
    """Add the four predict routes."""
    registry, state, metrics = ctx.registry, ctx.state, ctx.metrics

    async def predict(req: Request) -> Response:
        started = time.perf_counter()
        params = req.params
        model, version_name = params["model"], params.get("version")
        m_label = v_label = ""
        version = None
        close = False
        try:
            try:
                version = registry.version(model, version_name)
                pipeline = version.ready()
            except (NotFoundError, NotReadyError):  # slow path: another worker's change?
                version = await state.resolve(model, version_name)
                m_label, v_label = version.model, version.name
                pipeline = version.ready()
            m_label, v_label = version.model, version.name
            out = await pipeline.predict_body(req.body, alive=req.alive())
            version.last_use_time = time.time()
            status = 200
        except ClientDisconnected:
            if metrics is not None:
                metrics.observe_request(m_label, v_label, 499, time.perf_counter() - started)
            raise
        except PredictorRuntimeError as exc:
            status = exc.status
            out = codecs.error_body(exc.message)
            if isinstance(exc, PayloadTooLargeError):
                close = getattr(exc, "close_connection", False)
        if metrics is not None:
            metrics.observe_request(m_label, v_label, status, time.perf_counter() - started)
        body = req.received
        if body and version is not None:
            log_config = version.request_logging_config
            if log_config is not None and state.request_logger is not None:
                state.request_logger.log(log_config, m_label, v_label, body, out)
        return Response(status, out, close=close)

    router.add("POST", PATTERNS_DEFAULT + PATTERNS_VERSION, predict, errors="plain")
