"""The synchronous client: :class:`Client`, :class:`PredictionFuture`, :class:`ChunkStream`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from . import _base, _v2
from ._base import JSON_HEADERS, MAYBE_SENT_ERRORS, RETRY_STATUSES, UNSENT_ERRORS, Settings
from ._errors import ApiConnectionError, ApiError, error_from_response

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ChunkStream", "Client", "PredictionFuture"]

_log = logging.getLogger(__name__)


class Client:
    """A synchronous client for a predictor-runtime server (or any AI Platform ``ml v1``,
    Launch-tasks or V2 server), over one pooled ``httpx.Client``.

    :param base_url: the server, e.g. ``"http://127.0.0.1:8080"``.
    :param api_key: sent as ``Authorization: Bearer KEY`` (``serve --api-key``).
    :param timeout: seconds for each HTTP request (connect, read, write); None: no limit.
    :param retries: resends after connection errors, 429 and 503 (never other 4xx or 5xx);
        ``0`` turns retries off. The wait is jittered exponential backoff from ``backoff``
        seconds up to ``max_backoff``, or the server's ``Retry-After`` when it sends one.
    :param project: the project id in ``/v1/projects/{p}/...`` routes (any id works on
        predictor-runtime).
    :param headers: extra headers for every request.

    Use it as a context manager (or call :meth:`close`) to close its connections.
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
        self._http = httpx.Client(**self._s.httpx_options())
        self._watched: list[PredictionFuture] = []
        self._watch_lock = threading.Condition()
        self._watcher: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool and stop watching futures for callbacks.

        Callbacks of tasks still pending are not called after this.
        """
        with self._watch_lock:
            self._closed = True
            self._watch_lock.notify_all()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(10)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------

    def _send(
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
                response = self._http.send(request, stream=stream)
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
                    response.read()
                    response.close()
                error = error_from_response(
                    response.status_code,
                    response.content,
                    response.headers,
                    response.reason_phrase,
                )
                if response.status_code not in RETRY_STATUSES or attempt >= self._s.retries:
                    raise error
                retry_after = error.retry_after
            time.sleep(self._s.delay(attempt, retry_after))
            attempt += 1

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        content = None if body is None else _base.encode(body)
        headers = JSON_HEADERS if content is not None else None
        response = self._send(method, path, content=content, headers=headers, **kw)
        out: dict[str, Any] = orjson.loads(response.content) if response.content else {}
        return out

    # -- predictions -----------------------------------------------------------------

    def predict(
        self, model: str, instances: Sequence[Any], *, version: str | None = None, **kwargs: Any
    ) -> list[Any]:
        """Predict ``instances`` with ``model`` (its default version unless ``version``).

        ``instances`` is a list (or a 2-D numpy array); every other keyword becomes a
        top-level key of the request (e.g. ``signature_name``). Returns the predictions
        list, one entry per instance. Raises :class:`ApiError` (``BadRequestError`` for a
        bad instance or a predictor exception, with the server's message).
        """
        body = _base.encode(_base.predict_request(instances, kwargs))
        return _base.predictions(self.predict_body(model, body, version=version))

    def predict_body(self, model: str, body: bytes, *, version: str | None = None) -> Any:
        """POST a prepared predict body (JSON bytes, sent as is); returns the whole answer."""
        path = self._s.predict_path(model, version)
        response = self._send("POST", path, content=body, headers=JSON_HEADERS)
        return orjson.loads(response.content)

    def predict_async(
        self,
        model: str,
        instances: Sequence[Any],
        *,
        version: str | None = None,
        callback: Callable[[PredictionFuture], None] | None = None,
        callback_url: str | None = None,
        callback_auth: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> PredictionFuture:
        """Submit an async task (``POST /v1/async-tasks``); returns its :class:`PredictionFuture`.

        The task runs on the model's default version (``version`` must be None).
        ``callback`` is called with the future once it is done (see
        :meth:`PredictionFuture.add_done_callback`). ``callback_url`` / ``callback_auth`` ask the
        *server* to POST the outcome there (SPEC 7). Other keywords become request keys.
        """
        _base.no_version(version, "predict_async")
        body = _base.task_request(instances, kwargs, callback_url, callback_auth)
        answer = self._json_raw(
            "POST",
            "/v1/async-tasks",
            body,
            params={"model_endpoint_id": model},
            repeatable=False,
        )
        future = PredictionFuture(self, str(answer["task_id"]))
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def _json_raw(self, method: str, path: str, content: bytes, **kw: Any) -> Any:
        response = self._send(method, path, content=content, headers=JSON_HEADERS, **kw)
        return orjson.loads(response.content)

    def get_task(self, task_id: str) -> dict[str, Any]:
        """The task as ``GET /v1/async-tasks/{id}`` shows it (``status``, ``result``...)."""
        return self._json("GET", f"/v1/async-tasks/{_base.seg(task_id)}")

    def stream(
        self, model: str, instances: Sequence[Any], *, version: str | None = None, **kwargs: Any
    ) -> ChunkStream:
        """Stream a prediction (``POST /v1/streaming-tasks``, Server-Sent Events).

        Returns a :class:`ChunkStream`: iterate it for the chunks as the server sends them
        (one per ``predict_stream`` chunk, or one holding the whole predict answer for a
        predictor without it). Use it in a ``with`` block, or call ``close()``, to stop
        early: the response is closed and the server stops the generator.
        """
        _base.no_version(version, "stream")
        body = _base.task_request(instances, kwargs)
        response = self._send(
            "POST",
            "/v1/streaming-tasks",
            content=body,
            params={"model_endpoint_id": model},
            headers={**JSON_HEADERS, "accept": "text/event-stream"},
            stream=True,
        )
        return ChunkStream(response)

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: str | None = None,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """V2 inference with binary tensors: named numpy arrays in, named arrays out.

        ``outputs`` names the outputs wanted (default: all); ``parameters`` are the
        request's V2 parameters. Numeric tensors travel as raw bytes (no JSON), strings
        and bytes as V2 ``BYTES`` (answered as object arrays of ``bytes``).
        """
        body, n = _v2.encode_request(inputs, outputs, parameters or {})
        headers = {"content-type": "application/octet-stream", _v2.HEADER_LENGTH: str(n)}
        response = self._send(
            "POST", self._s.infer_path(model, version), content=body, headers=headers
        )
        return _v2.decode_response(response.content, response.headers.get(_v2.HEADER_LENGTH))

    def generate(self, model: str, contents: Any, **config: Any) -> str:
        """Generated text (``POST /v1beta/models/{m}:generateContent``, first candidate).

        ``contents`` is a string (one user turn) or Google's list of turns; ``config``
        holds ``generationConfig`` fields in snake_case (``temperature``,
        ``max_output_tokens``...) and ``system_instruction``. For the full response
        shapes, use Google's own clients against the same server.
        """
        body = _base.generate_request(contents, config)
        path = self._s.generative_path(model, "generateContent")
        return _base.generated_text(self._json_raw("POST", path, body))

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One embedding vector per text (``POST /v1beta/models/{m}:batchEmbedContents``)."""
        body = _base.embed_request(model, texts)
        path = self._s.generative_path(model, "batchEmbedContents")
        return _base.embeddings(self._json_raw("POST", path, body))

    # -- models and versions ---------------------------------------------------------

    def create_model(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create a model (``description``, ``labels``... as in AI Platform's Model)."""
        return self._json("POST", self._s.models_path(), {"name": name, **fields}, repeatable=False)

    def get_model(self, name: str) -> dict[str, Any]:
        """One model (with ``defaultVersion``)."""
        return self._json("GET", self._s.models_path(name))

    def list_models(self) -> list[dict[str, Any]]:
        """Every model (all pages)."""
        return self._pages(self._s.models_path(), "models")

    def delete_model(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Delete a model with no versions left; returns the (finished) Operation."""
        op = self._json("DELETE", self._s.models_path(name), repeatable=False)
        return self.wait_operation(op) if wait else op

    def create_version(
        self,
        model: str,
        body: Mapping[str, Any],
        *,
        wait: bool = True,
        wait_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Create a version (``name``, ``deploymentUri``, ``framework``, ``predictionClass``...).

        With ``wait`` (the default) polls the operation with backoff until the version
        is loaded and returns the Version (state READY); raises
        :class:`VersionFailedError` with the version's ``errorMessage`` if it FAILED, and
        ``TimeoutError`` after ``wait_timeout`` seconds. Without ``wait``, returns the
        Operation at once.
        """
        op = self._json("POST", self._s.versions_path(model), dict(body), repeatable=False)
        if not wait:
            return op
        self.wait_operation(op, timeout=wait_timeout)
        version = self.get_version(model, str(body.get("name")))
        return _base.version_outcome(version)

    def get_version(self, model: str, name: str) -> dict[str, Any]:
        """One version (``state``, ``errorMessage``, ``isDefault``, ``etag``...)."""
        return self._json("GET", self._s.versions_path(model, name))

    def list_versions(self, model: str) -> list[dict[str, Any]]:
        """Every version of ``model`` (all pages)."""
        return self._pages(self._s.versions_path(model), "versions")

    def delete_version(self, model: str, name: str, *, wait: bool = True) -> dict[str, Any]:
        """Delete a version (not the default while others exist); returns the Operation."""
        op = self._json("DELETE", self._s.versions_path(model, name), repeatable=False)
        return self.wait_operation(op) if wait else op

    def wait_operation(
        self, operation: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Poll an Operation with backoff until ``done``; returns it finished.

        A finished operation with an ``error`` is returned as is (``create_version``
        turns it into :class:`VersionFailedError`); ``TimeoutError`` after ``timeout`` s.
        """
        op = dict(operation)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.02
        while not op.get("done"):
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"operation {op.get('name')} not done after {timeout} s")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)
            op = self._json("GET", self._s.operation_path(op))
        return op

    def _pages(self, path: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"pageToken": token} if token else None
            response = self._send("GET", path, params=params)
            page, token = _base.items(orjson.loads(response.content), key)
            out.extend(page)
            if not token:
                return out

    # -- futures watched for callbacks -----------------------------------------------

    def _watch(self, future: PredictionFuture) -> None:
        with self._watch_lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._watched.append(future)
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(
                    target=self._watch_loop, name="predictor-runtime-client-futures", daemon=True
                )
                self._watcher.start()
            self._watch_lock.notify_all()

    def _watch_loop(self) -> None:
        pause = 0.02
        while True:
            with self._watch_lock:
                while not self._watched and not self._closed:
                    self._watch_lock.wait()
                if self._closed:
                    return
                pending = list(self._watched)
            for future in pending:
                try:
                    if not future.done():
                        continue
                except Exception as exc:  # the server is gone: the future fails with it
                    future._finish("FAILURE", None, exc)
                with self._watch_lock:
                    self._watched.remove(future)
                pause = 0.02
            with self._watch_lock:
                if self._watched and not self._closed:
                    self._watch_lock.wait(pause)
                    pause = min(pause * 1.5, 0.5)


class PredictionFuture:
    """An async task's outcome, polled from the server (``GET /v1/async-tasks/{id}``).

    :ivar task_id: the server's task id.
    """

    def __init__(self, client: Client, task_id: str) -> None:
        self.task_id = task_id
        self._client = client
        self._status = "PENDING"
        self._value: list[Any] | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[PredictionFuture], None]] = []

    @property
    def status(self) -> str:
        """The task status last seen: PENDING, STARTED, SUCCESS or FAILURE."""
        return self._status

    def _poll(self) -> None:
        try:
            payload = self._client.get_task(self.task_id)
        except ApiError as exc:
            if exc.status in RETRY_STATUSES:
                return
            self._finish("FAILURE", None, exc)
            return
        status, value, error = _base.task_outcome(payload)
        if value is not None or error is not None:
            self._finish(status, value, error)
        else:
            self._status = status or self._status

    def _finish(self, status: str, value: list[Any] | None, error: BaseException | None) -> None:
        with self._lock:
            if self._finished:
                return
            self._status, self._value, self._error = status, value, error
            self._finished = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            self._call(fn)

    def _call(self, fn: Callable[[PredictionFuture], None]) -> None:
        try:
            fn(self)
        except Exception:  # like concurrent.futures: a failing callback is logged, not raised
            _log.exception("callback %r of task %s raised", fn, self.task_id)

    def done(self) -> bool:
        """True once the task finished (asks the server once if not known yet)."""
        if not self._finished:
            self._poll()
        return self._finished

    def result(self, timeout: float | None = None) -> list[Any]:
        """The predictions, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises the task's typed error if it failed (``BadRequestError`` with the
        traceback for a predictor exception) and ``TimeoutError`` if it is not done in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while not self.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"task {self.task_id} not finished after {timeout} s (status {self._status})"
                )
            time.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 1.5, 0.5)
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def add_done_callback(self, fn: Callable[[PredictionFuture], None]) -> None:
        """Call ``fn(future)`` once the task is done (now, if it already is).

        The client polls pending tasks from one background thread, so ``fn`` runs there,
        or in a thread of yours that saw the task finish first (``done()``, ``result()``).
        An exception from ``fn`` is logged, not raised.
        """
        with self._lock:
            if not self._finished:
                self._callbacks.append(fn)
                fn = None  # type: ignore[assignment]
        if fn is not None:
            self._call(fn)
        else:
            self._client._watch(self)

    def __repr__(self) -> str:
        return f"<PredictionFuture task_id={self.task_id!r} status={self._status}>"


class ChunkStream(Iterator[Any]):
    """The chunks of a streaming task, read as they arrive; a context manager."""

    def __init__(self, response: httpx.Response) -> None:
        self._closed = False
        self._response = response
        self._lines = response.iter_lines()
        self._decoder = _base.SSEDecoder()

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            for line in self._lines:
                data = self._decoder.feed(line)
                if data is not None:
                    return _base.stream_event(data)
            data = self._decoder.flush()
            if data is not None:
                return _base.stream_event(data)
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the response (the server then stops producing chunks)."""
        if not self._closed:
            self._closed = True
            self._response.close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
