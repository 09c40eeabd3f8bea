"""Scale Launch-style endpoints and tasks (SPEC 7-8), so Launch's own Python client works.

Routes (errors of the routes themselves use Google's envelope):

- ``GET /v1/model-endpoints[?name=]``, ``GET /v1/model-endpoints/{id}``: served models as
  Launch ``ModelEndpoint`` objects;
- ``POST /v1/sync-tasks?model_endpoint_id=ID``: predict now, answer the task's state;
- ``POST /v1/async-tasks?model_endpoint_id=ID``: queue durably, answer ``{"task_id"}``;
  ``GET /v1/async-tasks/{task_id}``: the task's state;
  ``GET /v1/async-tasks/{task_id}/result``: the pickled result of a ``return_pickled`` task;
- ``POST /v1/streaming-tasks?model_endpoint_id=ID``: Server-Sent Events, one per chunk of
  the predictor's ``predict_stream`` (one with the whole response for other predictors).

Everything goes through the version's :class:`~predictor_runtime.pipeline.Pipeline`; the
durable queue, its workers and callbacks live in :mod:`predictor_runtime.tasks`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from ... import codecs
from ...errors import InvalidRequestError, NotFoundError, PredictorRuntimeError
from ...tasks.queue import TaskQueue, describe_failure, success_result
from ...tasks.store import SUCCESS, Task
from ..context import ServerContext
from ..http import HttpError, Request, Response, StreamingResponse
from ..registry import Model, rfc3339
from ..router import Router

ENDPOINT_TYPES = ("sync", "async", "streaming")
ENDPOINT_STATUS = {"READY": "READY", "CREATING": "UPDATE_PENDING", "FAILED": "UPDATE_FAILED"}
FIELDS = ("url", "args", "return_pickled")
CALLBACK_FIELDS = ("callback_url", "callback_auth")
AUTH_FIELDS = {"basic": ("username", "password"), "mtls": ("cert", "key")}
UNSUPPORTED = {
    "cloudpickle": "cloudpickled inputs are not accepted; send JSON in args",
    "destination_path": "results are kept on this server; use return_pickled for a result_url",
}


def invalid(field: str, problem: str) -> HttpError:
    """A 422 naming the field (Google's ``INVALID_ARGUMENT``)."""
    return HttpError(422, f"{field}: {problem}", google_status="INVALID_ARGUMENT")


@dataclass
class TaskRequest:
    """A validated ``EndpointPredictV1Request``."""

    body: bytes
    return_pickled: bool = False
    callback_url: str | None = None
    callback_auth: dict[str, Any] | None = None


def endpoint_resource(model: Model, pending: int | None = None) -> dict[str, Any]:
    """A served model as Launch's ``GetModelEndpointV1Response``."""
    version = model.versions.get(model.default_version or "")
    state = version.state if version is not None else "CREATING"
    label = model.labels.get("endpoint_type")
    if label in ENDPOINT_TYPES:
        kind = label
    elif (
        version is not None
        and version.pipeline is not None
        and version.pipeline.has("predict_stream")
    ):
        kind = "streaming"
    else:
        kind = "async"
    updated = version.create_time if version is not None else model.create_time
    return {
        "id": model.name,
        "name": model.name,
        "endpoint_type": kind,
        "destination": f"predictor-runtime/{model.name}",
        "bundle_name": version.name if version is not None else None,
        "status": ENDPOINT_STATUS.get(state, "UPDATE_PENDING"),
        "created_by": "predictor-runtime",
        "created_at": rfc3339(model.create_time),
        "last_updated_at": rfc3339(max(updated, model.create_time)),
        "deployment_name": model.name,
        "metadata": dict(model.labels),
        "labels": dict(model.labels),
        "post_inference_hooks": ["callback"],
        "default_callback_url": None,
        "default_callback_auth": None,
        "num_queued_items": pending,
        "public_inference": False,
    }


def _check_callback_auth(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("callback_auth", "must be an object with kind basic or mtls")
    kind = value.get("kind")
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind not in AUTH_FIELDS:
        raise invalid("callback_auth.kind", f"must be basic or mtls, got {kind!r}")
    wanted = AUTH_FIELDS[kind]
    for key in value:
        if key != "kind" and key not in wanted:
            raise invalid(f"callback_auth.{key}", f"unknown field for kind {kind}")
    for key in wanted:
        if not isinstance(value.get(key), str):
            raise invalid(f"callback_auth.{key}", f"a string is required for kind {kind}")
    return {"kind": kind, **{k: value[k] for k in wanted}}


async def parse_task_request(
    req: Request, ctx: ServerContext, *, callbacks: bool, streaming: bool = False
) -> TaskRequest:
    """The validated request body of a task route (422 naming the bad field)."""
    raw = await req.body()
    try:
        payload = codecs.parse_json(raw) if raw.strip() else None
    except InvalidRequestError as exc:
        raise invalid("body", exc.message) from None
    if not isinstance(payload, dict):
        raise invalid("body", "must be a JSON object (EndpointPredictV1Request)")
    allowed = FIELDS + (CALLBACK_FIELDS if callbacks else ())
    for key, value in payload.items():
        if key in UNSUPPORTED and value is not None:
            raise invalid(key, UNSUPPORTED[key])
        if key not in allowed and key not in UNSUPPORTED:
            if key in CALLBACK_FIELDS:
                raise invalid(key, "callbacks are for async tasks only")
            raise invalid(key, f"unknown field; expected {', '.join(allowed)}")
    args, url = payload.get("args"), payload.get("url")
    if (args is None) == (url is None):
        raise invalid("args" if args is not None else "url", "give exactly one of args and url")
    pickled = payload.get("return_pickled")
    if pickled is None:
        pickled = False
    if not isinstance(pickled, bool):
        raise invalid("return_pickled", f"must be true or false, got {pickled!r}")
    if pickled and streaming:
        raise invalid("return_pickled", "streaming tasks answer JSON events only")
    out = TaskRequest(b"", pickled)
    if args is not None:
        if not isinstance(args, dict):
            raise invalid("args", 'must be an object, the predict body {"instances": [...]}')
        instances = args.get("instances")
        if not isinstance(instances, list) or not instances:
            raise invalid("args.instances", "a non-empty list is required")
        out.body = orjson.dumps(args)
    else:
        if not isinstance(url, str) or not url:
            raise invalid("url", "must be a non-empty string")
        from ...tasks.inputs import read_url

        opts = ctx.options
        out.body = await read_url(url, allow_paths=opts.allow_paths, fetch_urls=opts.fetch_urls)
    cb_url, cb_auth = payload.get("callback_url"), payload.get("callback_auth")
    if cb_url is not None:
        parts = urlsplit(cb_url) if isinstance(cb_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid("callback_url", "must be an http:// or https:// URL")
        out.callback_url = cb_url
    if cb_auth is not None:
        if out.callback_url is None:
            raise invalid("callback_auth", "needs a callback_url")
        auth = _check_callback_auth(cb_auth)
        if auth["kind"] == "mtls":
            import ssl

            from ...tasks.callbacks import mtls_context

            try:
                await asyncio.to_thread(mtls_context, auth["cert"], auth["key"])
            except (ssl.SSLError, OSError):
                raise invalid(
                    "callback_auth.cert", "cert and key must be a PEM certificate and its key"
                ) from None
        out.callback_auth = auth
    return out


def base_url(req: Request) -> str:
    """This server's URL as the client reached it (for ``result_url``)."""
    host = req.header(b"host")
    if host:
        return f"{req.scope.get('scheme', 'http')}://{host.decode('latin-1')}"
    server = req.scope.get("server") or ("127.0.0.1", 80)
    return f"{req.scope.get('scheme', 'http')}://{server[0]}:{server[1]}"


def sse_event(status: str, result: bytes | None, traceback: str | None, code: int) -> bytes:
    """One Server-Sent Event of a streaming task (``result`` is JSON bytes or None)."""
    head = orjson.dumps({"status": status})[:-1]
    tail = orjson.dumps({"traceback": traceback, "status_code": code})[1:]
    return b"data: " + head + b',"result":' + (result or b"null") + b"," + tail + b"\n\n"


def task_state(task: Task) -> bytes:
    """``GET /v1/async-tasks/{id}``: Launch's ``GetAsyncTaskV1Response``."""
    head: dict[str, Any] = {"task_id": task.id, "status": task.status}
    tail: dict[str, Any] = {"traceback": task.traceback, "status_code": task.status_code}
    if task.callback_url is not None:
        tail.update(
            callback_status=task.callback_status,
            callback_attempts=task.callback_attempts,
            callback_error=task.callback_error,
        )
    result = task.result.encode() if task.result else b"null"
    return orjson.dumps(head)[:-1] + b',"result":' + result + b"," + orjson.dumps(tail)[1:]


def register(router: Router, ctx: ServerContext) -> None:
    """Add the Launch routes; set up the task queue (recovered now, before any fork)."""
    from ...tasks.metrics import TaskMetrics

    registry, state, opts = ctx.registry, ctx.state, ctx.options
    metrics = None
    if ctx.metrics is not None:  # one set of families per metrics registry
        metrics = getattr(ctx.metrics, "task_metrics", None)
        if metrics is None:
            metrics = TaskMetrics(ctx.metrics)
            ctx.metrics.task_metrics = metrics  # type: ignore[attr-defined]
    queue = TaskQueue(
        registry,
        state_dir=opts.state_dir,
        state_url=opts.state_url,
        max_pending=opts.max_pending_tasks,
        ttl=opts.task_ttl,
        lease=opts.task_lease,
        max_inflight=max(64, min(2 * registry.settings.max_batch_size, 1024)),
        metrics=metrics,
    )
    queue.recover()
    ctx.extensions["launch"] = queue
    ctx.on_startup(queue.start)
    ctx.on_shutdown(queue.stop)

    async def model_for(name: str) -> Model:
        try:
            return registry.model(name)
        except NotFoundError:
            await state.refresh()  # created through another worker?
        try:
            return registry.model(name)
        except NotFoundError:
            raise HttpError(404, f"Model endpoint not found: {name}") from None

    async def endpoint_of(req: Request) -> Model:
        name = req.query.get("model_endpoint_id")
        if not name:
            raise invalid("model_endpoint_id", "the query parameter is required")
        return await model_for(name)

    async def list_endpoints(req: Request) -> Response:
        await state.refresh()
        name = req.query.get("name")
        models = [m for m in registry.models.values() if name is None or m.name == name]
        items = [endpoint_resource(m) for m in sorted(models, key=lambda m: m.name)]
        return Response(200, orjson.dumps({"model_endpoints": items}))

    async def get_endpoint(req: Request) -> Response:
        model = await model_for(req.params["id"])
        pending = await queue.pending_count(model.name)
        return Response(200, orjson.dumps(endpoint_resource(model, pending)))

    async def sync_task(req: Request) -> Response:
        model = await endpoint_of(req)
        treq = await parse_task_request(req, ctx, callbacks=False)
        version = registry.version(model.name)
        pipeline = version.ready()
        try:
            instances, kwargs = await pipeline.parse(treq.body)
            out = await pipeline.predict(instances, kwargs, alive=req.alive())
            body = codecs.predictions_body(out)
        except PredictorRuntimeError as exc:
            failure = {"status": "FAILURE", "result": None, "traceback": describe_failure(exc)}
            return Response(200, orjson.dumps({**failure, "status_code": exc.status}))
        version.last_use_time = time.time()
        task = Task(str(uuid.uuid4()), model.name, b"", SUCCESS, treq.return_pickled)
        task.base_url = base_url(req)
        result, blob = success_result(body, task)
        if blob is not None:  # kept as a finished task, so result_url lives as long as one
            task.finished_at, task.result, task.result_blob, task.status_code = (
                time.time(),
                result,
                blob,
                200,
            )
            await queue.submit(task)
        out_body = b'{"status":"SUCCESS","result":' + result.encode()
        return Response(200, out_body + b',"traceback":null,"status_code":200}')

    async def async_task(req: Request) -> Response:
        model = await endpoint_of(req)
        treq = await parse_task_request(req, ctx, callbacks=True)
        task = Task(
            str(uuid.uuid4()),
            model.name,
            treq.body,
            return_pickled=treq.return_pickled,
            base_url=base_url(req),
            callback_url=treq.callback_url,
            callback_auth=treq.callback_auth,
        )
        if not await queue.submit(task):
            raise HttpError(
                429,
                f"Too many pending tasks (--max-pending-tasks {queue.max_pending}); retry later",
                headers=((b"retry-after", b"1"),),
            )
        return Response(200, orjson.dumps({"task_id": task.id}))

    async def get_task(req: Request) -> Response:
        task = await queue.get(req.params["task_id"])
        if task is None:
            raise HttpError(404, f"Task not found: {req.params['task_id']}")
        return Response(200, task_state(task))

    async def get_result(req: Request) -> Response:
        blob = await queue.result_blob(req.params["task_id"])
        if blob is None:
            raise HttpError(404, f"No pickled result for task {req.params['task_id']}")
        return Response(200, blob, content_type=b"application/octet-stream")

    async def streaming_task(req: Request) -> StreamingResponse:
        started = time.perf_counter()
        model = await endpoint_of(req)
        treq = await parse_task_request(req, ctx, callbacks=False, streaming=True)
        version = registry.version(model.name)
        pipeline = version.ready()
        labels = (version.model, version.name)

        async def events() -> Any:
            first = True
            stream = None
            try:
                instances, kwargs = await pipeline.parse(treq.body)
                if pipeline.has("predict_stream"):
                    stream = pipeline.stream(instances, kwargs)
                    async for chunk in stream:
                        if first and metrics is not None:
                            metrics.first_event.labels(*labels).observe(
                                time.perf_counter() - started
                            )
                        first = False
                        yield sse_event(
                            SUCCESS, b'{"result":' + codecs.dumps(chunk) + b"}", None, 200
                        )
                else:
                    out = await pipeline.predict(instances, kwargs, alive=req.alive())
                    body = codecs.predictions_body(out)
                    yield sse_event(SUCCESS, b'{"result":' + body + b"}", None, 200)
                version.last_use_time = time.time()
            except PredictorRuntimeError as exc:
                yield sse_event("FAILURE", None, describe_failure(exc), exc.status)
            except Exception as exc:
                text = f"Internal error: {type(exc).__name__}: {exc}"
                yield sse_event("FAILURE", None, text, 500)
            finally:
                if stream is not None:
                    await stream.aclose()  # type: ignore[attr-defined]
                if metrics is not None:
                    metrics.stream_seconds.labels(*labels).observe(time.perf_counter() - started)

        return StreamingResponse(events())

    router.add("GET", "/v1/model-endpoints", list_endpoints)
    router.add("GET", "/v1/model-endpoints/{id}", get_endpoint)
    router.add("POST", "/v1/sync-tasks", sync_task)
    router.add("POST", "/v1/async-tasks", async_task)
    router.add("GET", "/v1/async-tasks/{task_id}", get_task)
    router.add("GET", "/v1/async-tasks/{task_id}/result", get_result)
    router.add("POST", "/v1/streaming-tasks", streaming_task)
    router.error_style("/v1/model-endpoints", "google")
    router.error_style("/v1/async-tasks", "google")


__all__ = ["endpoint_resource", "parse_task_request", "register", "sse_event", "task_state"]
