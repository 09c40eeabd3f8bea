"""Google's GenerativeService REST surface (SPEC 9), so that ``google-genai`` and
``google-ai-generativelanguage`` drive served models unchanged.

Routes, under ``/v1beta/`` and ``/v1/`` (``{m}``: a served model, its default version):
``GET models``, ``GET models/{m}``, ``POST models/{m}:generateContent``,
``:streamGenerateContent``, ``:embedContent``, ``:batchEmbedContents``, ``:countTokens``.

- Streaming: Server-Sent Events (``data: {json}`` + blank line) with ``alt=sse``
  (google-genai); otherwise one JSON array written chunk by chunk with nothing after
  ``]`` (the gapic REST client). A predictor error after the first chunk is sent as a
  last ``{"error": {...}}`` event or array element.
- Embedding requests are merged across callers into one ``embed`` call by the same
  adaptive batcher as predict (:class:`~predictor_runtime.batching.Batcher`).
- ``GET /v1/models`` and ``GET /v1/models/{m}`` are also AI Platform's short resource
  paths; there these routes answer only Gemini clients (recognised by their
  ``x-goog-api-client`` header or ``$alt`` parameter); ``/v1beta/`` is always Gemini's.

Wire format: :mod:`.wire`; predictor calls: :mod:`.calls`; metrics: :mod:`.telemetry`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ....errors import NotFoundError, PredictorRuntimeError
from ...context import ServerContext
from ...errors import google_error
from ...http import HttpError, Request, Response, StreamingResponse
from ...registry import FAILED, READY, Version
from ...router import Router
from . import wire
from .calls import Calls, calls_for, unsupported
from .telemetry import GenerativeMetrics

PREFIXES = ("/v1beta", "/v1")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_JSON_ARRAY = b"application/json; charset=utf-8"


def is_gemini_client(scope: dict[str, Any]) -> bool:
    """Whether a request comes from one of Google's Gemini client libraries."""
    for key, value in scope["headers"]:
        if key == b"x-goog-api-client" and (b"genai-sdk" in value or b"gapic/" in value):
            return True
    query = scope.get("query_string", b"")
    return b"%24alt=" in query or b"$alt=" in query


def _stream_mode(req: Request) -> str:
    alt = req.query.get("alt") or req.query.get("$alt") or "json"
    mode = alt.split(";", 1)[0].strip().lower()
    if mode not in ("sse", "json"):
        raise wire.bad(f"Invalid value at 'alt': {wire.show(alt)} (use sse or json)")
    return mode


def _error_json(exc: PredictorRuntimeError) -> bytes:
    name = getattr(exc, "google_status", None)
    return google_error(exc.status, exc.message, name)


class GenerativeApi:
    """The handlers, over the server's registry."""

    def __init__(self, ctx: ServerContext) -> None:
        self.registry = ctx.registry
        self.state = ctx.state
        self.metrics = GenerativeMetrics(ctx.metrics)

    # -- models -----------------------------------------------------------------------

    async def resolve(self, req: Request) -> tuple[Version, Calls]:
        """The model's default version (READY) and its generative calls."""
        name = req.params["model"]
        try:
            version = self.registry.version(name, None)
            if version.state != READY:
                raise NotFoundError("not ready here")  # another worker may know better
        except NotFoundError:
            try:
                version = await self.state.resolve(name, None)
            except NotFoundError:
                raise HttpError(
                    404,
                    f"models/{name} is not found: no served model has that name "
                    "(GET models lists them)",
                ) from None
        if version.state == FAILED:
            raise HttpError(
                400,
                f"models/{name} cannot serve: version {version.name} failed to load: "
                f"{version.error_message}",
                google_status="FAILED_PRECONDITION",
            )
        if version.state != READY or version.pipeline is None:
            raise HttpError(
                503,
                f"models/{name} is not ready yet (version {version.name} is {version.state})",
                headers=((b"retry-after", b"1"),),
            )
        return version, calls_for(version.pipeline)

    def model_resource(self, name: str) -> dict[str, Any]:
        """The ``Model`` of a served model."""
        model = self.registry.model(name)
        version = model.versions.get(model.default_version or "")
        out: dict[str, Any] = {
            "name": f"models/{name}",
            "baseModelId": name,
            "version": version.name if version else "",
            "displayName": name,
            "description": model.description or (version.description if version else ""),
            "supportedGenerationMethods": [],
        }
        if version is not None and version.state == READY and version.pipeline is not None:
            calls = calls_for(version.pipeline)
            out["supportedGenerationMethods"] = calls.methods()
            predictor = version.pipeline.predictor
            for attr in ("input_token_limit", "output_token_limit"):
                limit = getattr(predictor, attr, None)
                if isinstance(limit, int) and not isinstance(limit, bool):
                    out[wire.camel(attr)] = limit
        return out

    async def list_models(self, req: Request) -> Response:
        raw = req.query.get("pageSize") or req.query.get("page_size")
        size = DEFAULT_PAGE_SIZE
        if raw:
            try:
                size = int(raw)
            except ValueError:
                raise wire.bad(f"Invalid value at 'pageSize': {wire.show(raw)}") from None
            if size < 0:
                raise wire.bad(f"Invalid value at 'pageSize': must be >= 0, got {size}")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        await self.state.refresh()
        names = sorted(self.registry.models)
        token = req.query.get("pageToken") or req.query.get("page_token") or ""
        start = next((i for i, n in enumerate(names) if n >= token), len(names)) if token else 0
        page = names[start : start + size]
        body: dict[str, Any] = {"models": [self.model_resource(n) for n in page]}
        if start + size < len(names):
            body["nextPageToken"] = names[start + size]
        return Response(200, orjson.dumps(body))

    async def get_model(self, req: Request) -> Response:
        name = req.params["model"]
        try:
            self.registry.model(name)
        except NotFoundError:
            await self.state.refresh()
        try:
            return Response(200, orjson.dumps(self.model_resource(name)))
        except NotFoundError:
            raise HttpError(404, f"models/{name} is not found") from None

    # -- generation -------------------------------------------------------------------

    async def generate(self, req: Request) -> Response:
        version, calls = await self.resolve(req)
        if calls.generate is None and calls.stream is None:
            raise unsupported(calls, "generateContent", "generate or generate_stream")
        turns, config = wire.generate_request(wire.parse_body(await req.body()))
        resp = await calls.generate_async(turns, config)
        resp.setdefault("modelVersion", f"{version.model}/{version.name}")
        self.metrics.tokens(
            version.model, version.name, "generateContent", resp.get("usageMetadata")
        )
        version.last_use_time = time.time()
        return Response(200, wire.dumps(resp))

    async def stream(self, req: Request) -> StreamingResponse:
        started = time.perf_counter()
        version, calls = await self.resolve(req)
        if calls.generate is None and calls.stream is None:
            raise unsupported(calls, "streamGenerateContent", "generate_stream or generate")
        mode = _stream_mode(req)
        turns, config = wire.generate_request(wire.parse_body(await req.body()))
        chunks = calls.chunks(turns, config)
        try:
            first = await chunks.__anext__()  # errors before the first chunk get a status
        except BaseException:
            await chunks.aclose()
            raise
        labels = (version.model, version.name)
        self.metrics.first(*labels, time.perf_counter() - started)
        version.last_use_time = time.time()
        tag = f"{version.model}/{version.name}"
        if mode == "sse":
            body = self._sse(first, chunks, tag, labels, started)
            return StreamingResponse(body)
        return StreamingResponse(
            self._array(first, chunks, tag, labels, started), content_type=_JSON_ARRAY
        )

    async def _frames(
        self,
        first: dict[str, Any],
        rest: AsyncGenerator[dict[str, Any], None],
        tag: str,
        labels: tuple[str, str],
        started: float,
    ) -> AsyncIterator[bytes]:
        """Each chunk as JSON bytes; a failure after the first becomes an error object."""
        last = first
        code = 200
        try:
            first.setdefault("modelVersion", tag)
            yield wire.dumps(first)
            try:
                async for chunk in rest:
                    chunk.setdefault("modelVersion", tag)
                    last = chunk
                    yield wire.dumps(chunk)
            except PredictorRuntimeError as exc:
                code = exc.status
                yield _error_json(exc)
        finally:
            await rest.aclose()
            self.metrics.tokens(*labels, "streamGenerateContent", last.get("usageMetadata"))
            seconds = time.perf_counter() - started
            self.metrics.request(*labels, "streamGenerateContent", code, seconds)

    async def _sse(self, *args: Any) -> AsyncIterator[bytes]:
        async for data in self._frames(*args):
            yield b"data: " + data + b"\r\n\r\n"

    async def _array(self, *args: Any) -> AsyncIterator[bytes]:
        sep = b"["
        async for data in self._frames(*args):
            yield sep + data
            sep = b",\r\n"
        yield b"]"

    # -- tokens and embeddings --------------------------------------------------------

    async def count_tokens(self, req: Request) -> Response:
        _, calls = await self.resolve(req)
        if calls.count is None:
            raise unsupported(calls, "countTokens", "count_tokens")
        turns = wire.count_request(wire.parse_body(await req.body()))
        n = await asyncio.get_running_loop().run_in_executor(None, calls.count_tokens, turns)
        return Response(200, orjson.dumps({"totalTokens": n}))

    async def embed(self, req: Request) -> Response:
        version, calls = await self.resolve(req)
        if calls.embed is None:
            raise unsupported(calls, "embedContent", "embed")
        item = wire.embed_request(wire.parse_body(await req.body()), version.model)
        (vector,) = await calls.embed_many([item], req.alive())
        version.last_use_time = time.time()
        return Response(200, orjson.dumps({"embedding": {"values": vector}}))

    async def batch_embed(self, req: Request) -> Response:
        version, calls = await self.resolve(req)
        if calls.embed is None:
            raise unsupported(calls, "batchEmbedContents", "embed")
        items = wire.batch_embed_request(wire.parse_body(await req.body()), version.model)
        vectors = await calls.embed_many(items, req.alive())
        version.last_use_time = time.time()
        return Response(200, orjson.dumps({"embeddings": [{"values": v} for v in vectors]}))

    def instrument(
        self, method: str, handler: Callable[[Request], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Any]]:
        """Count requests and their latency (streams count themselves when they end)."""

        async def run(req: Request) -> Any:
            started = time.perf_counter()
            code = 200
            try:
                out = await handler(req)
            except PredictorRuntimeError as exc:
                code = exc.status
                raise
            finally:
                if code != 200 or method != "streamGenerateContent":
                    version = self._labels(req.params.get("model", ""))
                    self.metrics.request(*version, method, code, time.perf_counter() - started)
            return out

        return run

    def _labels(self, name: str) -> tuple[str, str]:
        model = self.registry.models.get(name)
        if model is None:  # unknown names must not grow the label set
            return "", ""
        return name, model.default_version or ""


def register(router: Router, ctx: ServerContext) -> None:
    """Add the generative routes under ``/v1beta`` and ``/v1``."""
    api = GenerativeApi(ctx)
    posts = {
        "generateContent": api.generate,
        "streamGenerateContent": api.stream,
        "countTokens": api.count_tokens,
        "embedContent": api.embed,
        "batchEmbedContents": api.batch_embed,
    }
    for prefix in PREFIXES:
        when = is_gemini_client if prefix == "/v1" else None
        router.add(
            "GET", f"{prefix}/models", api.instrument("listModels", api.list_models), when=when
        )
        router.add(
            "GET",
            f"{prefix}/models/{{model}}",
            api.instrument("getModel", api.get_model),
            when=when,
        )
        for verb, handler in posts.items():
            router.add("POST", f"{prefix}/models/{{model}}:{verb}", api.instrument(verb, handler))
    router.error_style("/v1beta/", "google")


__all__ = ["GenerativeApi", "is_gemini_client", "register"]
