"""The asyncio client: :class:`AsyncClient`, :class:`AsyncPredictionFuture`,
:class:`AsyncChunkStream`. Same methods as :class:`~predictor_runtime.client.Client`,
as coroutines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from . import _base, _v2
from ._base import JSON_HEADERS, MAYBE_SENT_ERRORS, RETRY_STATUSES, UNSENT_ERRORS, Settings
from ._errors import ApiConnectionError, ApiError, error_from_response

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AsyncChunkStream", "AsyncClient", "AsyncPredictionFuture"]


class AsyncClient:
    """The asyncio twin of :class:`~predictor_runtime.client.Client`, over one pooled
    ``httpx.AsyncClient``; same parameters, same methods (awaited).

    Use ``async with AsyncClient(...) as client:`` (or ``await client.aclose()``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | None = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        project: str = "-",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._s = Settings(
            base_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            project=project,
            headers=headers,
        )
        self._http = httpx.AsyncClient(**self._s.httpx_options())
        self._pollers: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop polling pending futures and close the connection pool."""
        for task in list(self._pollers):
            task.cancel()
        if self._pollers:
            await asyncio.gather(*self._pollers, return_exceptions=True)
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport -------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """One request with the retry policy; a 2xx response or a typed error."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                request = self._http.build_request(
                    method, path, content=content, params=params, headers=headers
                )
                response = await self._http.send(request, stream=stream)
            except UNSENT_ERRORS + MAYBE_SENT_ERRORS as exc:
                unsent = isinstance(exc, UNSENT_ERRORS)
                if attempt >= self._s.retries or not (unsent or repeatable):
                    raise ApiConnectionError(
                        f"{method} {self._s.base_url}{path} failed: {type(exc).__name__}: {exc}"
                    ) from exc
            except httpx.TimeoutException as exc:
                raise ApiConnectionError(
                    f"{method} {self._s.base_url}{path} timed out: {type(exc).__name__}"
                ) from exc
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                error = error_from_response(
                    response.status_code,
                    response.content,
                    response.headers,
                    response.reason_phrase,
                )
                if response.status_code not in RETRY_STATUSES or attempt >= self._s.retries:
                    raise error
                retry_after = error.retry_after
            await asyncio.sleep(self._s.delay(attempt, retry_after))
            attempt += 1

    async def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        content = None if body is None else _base.encode(body)
        headers = JSON_HEADERS if content is not None else None
        response = await self._send(method, path, content=content, headers=headers, **kw)
        out: dict[str, Any] = orjson.loads(response.content) if response.content else {}
        return out

    # -- predictions -----------------------------------------------------------------

    async def predict(
        self, model: str, instances: Sequence[Any], *, version: str | None = None, **kwargs: Any
    ) -> list[Any]:
        """Predict ``instances`` with ``model``; see :meth:`Client.predict`."""
        body = _base.encode(_base.predict_request(instances, kwargs))
        return _base.predictions(await self.predict_body(model, body, version=version))

    async def predict_body(self, model: str, body: bytes, *, version: str | None = None) -> Any:
        """POST a prepared predict body (JSON bytes, sent as is); returns the whole answer."""
        path = self._s.predict_path(model, version)
        response = await self._send("POST", path, content=body, headers=JSON_HEADERS)
        return orjson.loads(response.content)

    async def predict_async(
        self,
        model: str,
        instances: Sequence[Any],
        *,
        version: str | None = None,
        callback: Callable[[AsyncPredictionFuture], None] | None = None,
        callback_url: str | None = None,
        callback_auth: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> AsyncPredictionFuture:
        """Submit an async task; returns an :class:`AsyncPredictionFuture` (awaitable).

        The future polls the task in the background of the event loop; ``callback`` runs
        with it once done. See :meth:`Client.predict_async` for the other arguments.
        """
        _base.no_version(version, "predict_async")
        body = _base.task_request(instances, kwargs, callback_url, callback_auth)
        response = await self._send(
            "POST",
            "/v1/async-tasks",
            content=body,
            params={"model_endpoint_id": model},
            headers=JSON_HEADERS,
            repeatable=False,
        )
        future = AsyncPredictionFuture(self, str(orjson.loads(response.content)["task_id"]))
        if callback is not None:
            future.add_done_callback(callback)
        return future

    async def get_task(self, task_id: str) -> dict[str, Any]:
        """The task as ``GET /v1/async-tasks/{id}`` shows it (``status``, ``result``...)."""
        return await self._json("GET", f"/v1/async-tasks/{_base.seg(task_id)}")

    def stream(
        self, model: str, instances: Sequence[Any], *, version: str | None = None, **kwargs: Any
    ) -> AsyncChunkStream:
        """Stream a prediction: ``async with client.stream(...) as chunks: async for c in chunks``.

        The request is sent when iteration starts; leaving the ``async with`` block (or
        ``await chunks.aclose()``) closes the response and the server stops the generator.
        """
        _base.no_version(version, "stream")
        body = _base.task_request(instances, kwargs)

        def open_response() -> Awaitable[httpx.Response]:
            return self._send(
                "POST",
                "/v1/streaming-tasks",
                content=body,
                params={"model_endpoint_id": model},
                headers={**JSON_HEADERS, "accept": "text/event-stream"},
                stream=True,
            )

        return AsyncChunkStream(open_response)

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """V2 inference with binary tensors; see :meth:`Client.infer`."""
        body, n = _v2.encode_request(inputs, outputs, parameters or {})
        headers = {"content-type": "application/octet-stream", _v2.HEADER_LENGTH: str(n)}
        response = await self._send(
            "POST", self._s.infer_path(model, version), content=body, headers=headers
        )
        return _v2.decode_response(response.content, response.headers.get(_v2.HEADER_LENGTH))

    async def generate(self, model: str, contents: Any, **config: Any) -> str:
        """Generated text (first candidate); see :meth:`Client.generate`."""
        body = _base.generate_request(contents, config)
        path = self._s.generative_path(model, "generateContent")
        response = await self._send("POST", path, content=body, headers=JSON_HEADERS)
        return _base.generated_text(orjson.loads(response.content))

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One embedding vector per text; see :meth:`Client.embed`."""
        body = _base.embed_request(model, texts)
        path = self._s.generative_path(model, "batchEmbedContents")
        response = await self._send("POST", path, content=body, headers=JSON_HEADERS)
        return _base.embeddings(orjson.loads(response.content))

    # -- models and versions ---------------------------------------------------------

    async def create_model(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create a model; see :meth:`Client.create_model`."""
        return await self._json(
            "POST", self._s.models_path(), {"name": name, **fields}, repeatable=False
        )

    async def get_model(self, name: str) -> dict[str, Any]:
        """One model (with ``defaultVersion``)."""
        return await self._json("GET", self._s.models_path(name))

    async def list_models(self) -> list[dict[str, Any]]:
        """Every model (all pages)."""
        return await self._pages(self._s.models_path(), "models")

    async def delete_model(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Delete a model with no versions left; returns the (finished) Operation."""
        op = await self._json("DELETE", self._s.models_path(name), repeatable=False)
        return await self.wait_operation(op) if wait else op

    async def create_version(
        self,
        model: str,
        body: Mapping[str, Any],
        *,
        wait: bool = True,
        wait_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Create a version and (by default) wait for it; see :meth:`Client.create_version`."""
        op = await self._json("POST", self._s.versions_path(model), dict(body), repeatable=False)
        if not wait:
            return op
        await self.wait_operation(op, timeout=wait_timeout)
        version = await self.get_version(model, str(body.get("name")))
        return _base.version_outcome(version)

    async def get_version(self, model: str, name: str) -> dict[str, Any]:
        """One version (``state``, ``errorMessage``, ``isDefault``, ``etag``...)."""
        return await self._json("GET", self._s.versions_path(model, name))

    async def list_versions(self, model: str) -> list[dict[str, Any]]:
        """Every version of ``model`` (all pages)."""
        return await self._pages(self._s.versions_path(model), "versions")

    async def delete_version(self, model: str, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Delete a version (not the default while others exist); returns the Operation."""
        op = await self._json("DELETE", self._s.versions_path(model, name), repeatable=False)
        return await self.wait_operation(op) if wait else op

    async def wait_operation(
        self, operation: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Poll an Operation with backoff until ``done``; see :meth:`Client.wait_operation`."""
        op = dict(operation)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.02
        while not op.get("done"):
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"operation {op.get('name')} not done after {timeout} s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)
            op = await self._json("GET", self._s.operation_path(op))
        return op

    async def _pages(self, path: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"pageToken": token} if token else None
            response = await self._send("GET", path, params=params)
            page, token = _base.items(orjson.loads(response.content), key)
            out.extend(page)
            if not token:
                return out


class AsyncPredictionFuture:
    """An async task's outcome, polled in the background of the event loop; awaitable.

    :ivar task_id: the server's task id.
    """

    def __init__(self, client: AsyncClient, task_id: str) -> None:
        self.task_id = task_id
        self._client = client
        self._status = "PENDING"
        self._future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._poller = asyncio.create_task(self._poll())
        client._pollers.add(self._poller)
        self._poller.add_done_callback(client._pollers.discard)

    @property
    def status(self) -> str:
        """The task status last seen: PENDING, STARTED, SUCCESS or FAILURE."""
        return self._status

    async def _poll(self) -> None:
        pause = 0.01
        try:
            while True:
                try:
                    payload = await self._client.get_task(self.task_id)
                except ApiError as exc:
                    if exc.status not in RETRY_STATUSES:
                        raise
                else:
                    status, value, error = _base.task_outcome(payload)
                    self._status = status or self._status
                    if error is not None:
                        raise error
                    if value is not None:
                        self._future.set_result(value)
                        return
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 0.5)
        except asyncio.CancelledError:
            self._future.cancel()
            raise
        except Exception as exc:
            self._future.set_exception(exc)

    def done(self) -> bool:
        """True once the task finished (success, failure, or cancelled by ``aclose``)."""
        return self._future.done()

    async def result(self, timeout: float | None = None) -> list[Any]:
        """The predictions, waiting up to ``timeout`` seconds; see ``PredictionFuture.result``."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"task {self.task_id} not finished after {timeout} s (status {self._status})"
            ) from None

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.result().__await__()

    def add_done_callback(self, fn: Callable[[AsyncPredictionFuture], None]) -> None:
        """Call ``fn(future)`` on the event loop once the task is done."""
        self._future.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"<AsyncPredictionFuture task_id={self.task_id!r} status={self._status}>"


class AsyncChunkStream(AsyncIterator[Any]):
    """The chunks of a streaming task, read as they arrive; an async context manager."""

    def __init__(self, open_response: Callable[[], Awaitable[httpx.Response]]) -> None:
        self._open = open_response
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._decoder = _base.SSEDecoder()
        self._closed = False

    async def _start(self) -> AsyncIterator[str]:
        if self._lines is None:
            self._response = await self._open()
            self._lines = self._response.aiter_lines()
        return self._lines

    def __aiter__(self) -> AsyncChunkStream:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        try:
            lines = await self._start()
            async for line in lines:
                data = self._decoder.feed(line)
                if data is not None:
                    return _base.stream_event(data)
            data = self._decoder.flush()
            if data is not None:
                return _base.stream_event(data)
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the response (the server then stops producing chunks)."""
        if not self._closed:
            self._closed = True
            if self._response is not None:
                await self._response.aclose()

    async def __aenter__(self) -> AsyncChunkStream:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
