"""Open Inference Protocol V2 (KServe V2 / Triton HTTP), with Triton's binary tensor data.

Routes (errors are ``{"error": "..."}``: 400 bad tensors, 404 unknown model or version,
503 a version not READY):

- ``GET /v2`` server metadata; ``GET /v2/health/live`` and ``/v2/health/ready`` (public,
  like ``/healthz`` and ``/readyz``);
- ``GET /v2/models/{m}[/versions/{v}]`` model metadata, ``.../ready``;
- ``POST /v2/models/{m}[/versions/{v}]/infer``.

The wire format is :mod:`predictor_runtime.v2.codec`; how tensors reach the predictor is
:mod:`predictor_runtime.v2.mapping`. Inference goes through the version's one
:class:`~predictor_runtime.pipeline.Pipeline`, so V2 requests are batched with each other
like V1 requests (not with V1 requests: their instances are lists, V2's arrays). The body
size limit (``--max-request-bytes``) applies to the whole body, JSON header plus binary
tensors (to the inflated body too when it comes gzip- or deflate-compressed). Request logging (``requestLoggingConfig``) covers the V1 predict routes only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from ... import __version__
from ...errors import (
    InvalidInstanceError,
    NotFoundError,
    NotReadyError,
    PredictorRuntimeError,
)
from ...pipeline import PARSE_OFFLOAD_BYTES, Pipeline
from ..context import ServerContext
from ..http import ClientDisconnected, Request, Response
from ..registry import READY, Version
from ..router import Router

PREFIX = "/v2"
EXTENSIONS = ["binary_tensor_data"]
OCTET_STREAM = b"application/octet-stream"
_MODEL = "/v2/models/{model}"
_VERSION = "/v2/models/{model}/versions/{version}"


def register(router: Router, ctx: ServerContext) -> None:
    """Add the V2 routes."""
    from ...v2 import codec, mapping

    registry, state, metrics = ctx.registry, ctx.state, ctx.metrics
    server_meta = orjson.dumps(
        {"name": "predictor-runtime", "version": __version__, "extensions": EXTENSIONS}
    )

    async def lookup(req: Request) -> Version:
        model, name = req.params["model"], req.params.get("version")
        try:
            return registry.version(model, name)
        except NotFoundError:  # another worker's change?
            return await state.resolve(model, name)

    async def ready_pipeline(req: Request) -> tuple[Version, Pipeline]:
        version = await lookup(req)
        try:
            return version, version.ready()
        except NotReadyError:
            version = await state.resolve(version.model, version.name)
            return version, version.ready()

    async def server_metadata(req: Request) -> Response:
        return Response(200, server_meta)

    async def live(req: Request) -> Response:
        return Response(200, b'{"live":true}')

    async def ready(req: Request) -> Response:
        if registry.settled():
            return Response(200, b'{"ready":true}')
        return Response(503, b'{"ready":false}')

    async def model_ready(req: Request) -> Response:
        version = await lookup(req)
        if version.state != READY:
            version.ready()  # raises NotReadyError (503) with the state and any error
        return Response(200, orjson.dumps({"name": version.model, "ready": True}))

    async def model_metadata(req: Request) -> Response:
        version, pipeline = await ready_pipeline(req)
        meta = mapping.tensor_metadata(pipeline)
        if "version" in req.params:
            versions = [version.name]
        else:
            versions = list(registry.model(version.model).versions)
        body = {"name": version.model, "versions": versions, **meta}
        return Response(200, orjson.dumps(body))

    async def read(req: Request, pipeline: Pipeline) -> tuple[Any, Any, dict[str, Any]]:
        """The body -> the decoded request and the pipeline call's instances and kwargs."""
        body = await req.body()
        encoding = req.header(b"content-encoding")
        if encoding is not None and encoding.lower() != b"identity":
            body = codec.decompress(body, encoding, req.max_body)
        header_length = req.header(b"inference-header-content-length")
        if header_length is None and len(body) > PARSE_OFFLOAD_BYTES:
            loop = asyncio.get_running_loop()
            request = await loop.run_in_executor(None, codec.parse_request, body, None)
        else:
            request = codec.parse_request(body, header_length)
        instances, kwargs = mapping.prepare(pipeline, request)
        return request, instances, kwargs

    async def infer(req: Request) -> Response:
        started = time.perf_counter()
        m_label = v_label = ""
        status = 500
        try:
            version, pipeline = await ready_pipeline(req)
            m_label, v_label = version.model, version.name
            batcher = pipeline.batcher
            batcher.announce()  # an idle model waits (bounded) for this body to arrive
            try:
                request, instances, kwargs = await read(req, pipeline)
            except BaseException:
                batcher.withdraw()
                raise
            try:
                out = await batcher.predict(instances, kwargs, alive=req.alive(), announced=True)
            except InvalidInstanceError as exc:
                raise mapping.shift_error(exc, request) from None
            tensors = mapping.outputs(out, request, mapping.tensor_metadata(pipeline))
            payload, header_size = codec.encode_response(
                version.model, version.name, request.id, tensors
            )
            version.last_use_time = time.time()
            status = 200
        except ClientDisconnected:
            status = 499
            raise
        except PredictorRuntimeError as exc:
            status = exc.status
            raise
        finally:
            if metrics is not None and m_label:
                metrics.observe_request(m_label, v_label, status, time.perf_counter() - started)
        if header_size is None:
            return Response(200, payload)
        headers: Any = ((b"inference-header-content-length", b"%d" % header_size),)
        return Response(200, payload, content_type=OCTET_STREAM, headers=headers)

    router.error_style(PREFIX, "plain")
    router.add("GET", PREFIX, server_metadata, errors="plain")
    router.add("GET", "/v2/health/live", live, errors="plain", public=True)
    router.add("GET", "/v2/health/ready", ready, errors="plain", public=True)
    router.add("GET", (_MODEL, _VERSION), model_metadata, errors="plain")
    router.add("GET", (_MODEL + "/ready", _VERSION + "/ready"), model_ready, errors="plain")
    router.add("POST", (_MODEL + "/infer", _VERSION + "/infer"), infer, errors="plain")
