"""THE predict pipeline of one loaded model: parse -> decode -> adaptive batcher -> predict
-> serialize, with its two variants (named tensors in and out; a stream of chunks).

Every entry point goes through a :class:`Pipeline`: the HTTP predict route, the CLI
(``predict``), :func:`predictor_runtime.testing.predict`, async tasks, batch jobs and the
V2 protocol. Protocol modules only translate their wire format to and from it:

- :meth:`Pipeline.predict_body`: a JSON request body -> a JSON response body;
- :meth:`Pipeline.predict`: decoded ``instances`` and kwargs -> predictions (list/array);
- :meth:`Pipeline.stream`: ``predict_stream`` chunks as an async iterator of JSON-safe
  values, the generator running in a thread of its own;
- the tensor variant: ``instances`` may be a 2-D :class:`numpy.ndarray` (V2 tensors); the
  batcher concatenates arrays of concurrent requests instead of extending lists.

The pipeline is asynchronous (the batcher is); :meth:`Pipeline.run` drives one call from
synchronous code (the CLI) on a private event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from . import codecs
from .batching import Batcher, BatchHook
from .dispatcher import DEFAULT_MAX_BATCH_SIZE, DecodeRule, Dispatcher
from .errors import PredictionFailedError, PredictorRuntimeError
from .loader import LoadedModel

T = TypeVar("T")

#: Bodies over this many bytes are parsed in a worker thread, so that a large parse
#: (about 1 ms per 1,000 rows of 30 floats) never stalls the other requests' event loop.
PARSE_OFFLOAD_BYTES = 128 * 1024


class StreamingUnsupportedError(PredictorRuntimeError):
    """The predictor has no ``predict_stream``."""

    status = 400


class Pipeline:
    """Predict requests of one loaded model, merged across callers by an adaptive batcher.

    :param model: the loaded model.
    :param max_batch_size: most rows per model call (split above, merged up to it).
    :param max_batch_delay_ms: extra wait for more rows (0: continuous batching only).
    :param decode_b64: the b64 rule (SPEC 3).
    :param on_batch: called after each model call with rows, requests and seconds.
    :param default_kwargs: request keys used when a request does not give them
        (``serve --signature-name``).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_delay_ms: float = 0.0,
        decode_b64: DecodeRule = "auto",
        on_batch: BatchHook | None = None,
        default_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.dispatcher = Dispatcher(
            model,
            max_batch_size=max_batch_size,
            decode_b64=decode_b64,
            default_kwargs=default_kwargs,
        )
        self.batcher = Batcher(
            self.dispatcher,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            on_batch=on_batch,
        )
        self._attachments: dict[str, Any] = {}

    @property
    def predictor(self) -> Any:
        """The user's (or framework's) predictor object."""
        return self.model.predictor

    def has(self, capability: str) -> bool:
        """Whether the predictor has method ``capability`` (``predict_stream``, ``embed``...)."""
        return callable(getattr(self.model.predictor, capability, None))

    # -- JSON -------------------------------------------------------------------------

    async def parse(self, body: bytes | str) -> tuple[list[Any], dict[str, Any]]:
        """Body -> ``(instances, kwargs)``; large bodies are parsed off the event loop."""
        if len(body) > PARSE_OFFLOAD_BYTES:
            return await asyncio.get_running_loop().run_in_executor(
                None, self.dispatcher.parse, body
            )
        return self.dispatcher.parse(body)

    async def predict(
        self,
        instances: Any,
        kwargs: dict[str, Any] | None = None,
        *,
        alive: Callable[[], bool] | None = None,
    ) -> Any:
        """Predictions for ``instances`` (a list, or a 2-D array of rows), in order.

        :param alive: optional "does the caller still want this?" check.
        """
        return await self.batcher.predict(instances, kwargs, alive=alive)

    async def predict_body(
        self,
        body: bytes | str | Callable[[], Awaitable[bytes]],
        *,
        alive: Callable[[], bool] | None = None,
    ) -> bytes:
        """A JSON request body -> the JSON success body; raises on failure.

        ``body`` may be a coroutine function that reads it (``Request.body``): the batcher
        is then told before the read that a request is coming (:meth:`Batcher.announce`),
        so concurrent large requests are merged into one model call.
        """
        batcher = self.batcher
        if callable(body):
            batcher.announce()
            try:
                raw = await body()
                if len(raw) > PARSE_OFFLOAD_BYTES:
                    instances, kwargs = await self.parse(raw)
                else:
                    instances, kwargs = self.dispatcher.parse(raw)
            except BaseException:
                batcher.withdraw()
                raise
            preds = await batcher.predict(instances, kwargs, alive=alive, announced=True)
        else:
            instances, kwargs = await self.parse(body)
            preds = await batcher.predict(instances, kwargs, alive=alive)
        return codecs.predictions_body(preds)

    # -- streaming ----------------------------------------------------------------------

    def stream(
        self, instances: list[Any], kwargs: dict[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        """``predict_stream`` chunks, each made JSON-safe, as they are produced.

        :raises StreamingUnsupportedError: the predictor has no ``predict_stream``.
        """
        fn = getattr(self.model.predictor, "predict_stream", None)
        if not callable(fn):
            raise StreamingUnsupportedError(
                f"{type(self.model.predictor).__name__} has no predict_stream method"
            )
        kw = kwargs or {}
        return iterate_in_thread(lambda: fn(instances, **kw), safe=True)

    # -- lifecycle ----------------------------------------------------------------------

    def attachment(self, key: str, make: Callable[[Pipeline], T]) -> T:
        """A per-model object a protocol module keeps (the generative routes' embedding
        batcher), made by ``make(self)`` on first use and closed with the pipeline (its
        ``aclose`` coroutine, if any, is awaited by :meth:`aclose`)."""
        found = self._attachments.get(key)
        if found is None:
            found = self._attachments[key] = make(self)
        return found

    async def aclose(self) -> None:
        """Stop the batcher and the attachments (pending callers get CancelledError)."""
        await self.batcher.aclose()
        attachments, self._attachments = self._attachments, {}
        for obj in attachments.values():
            close = getattr(obj, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def run(self, coro_fn: Callable[[Pipeline], Coroutine[Any, Any, T]]) -> T:
        """Run ``coro_fn(self)`` to completion from synchronous code, then close."""

        async def main() -> T:
            try:
                return await coro_fn(self)
            finally:
                await self.aclose()

        return asyncio.run(main())


_DONE = object()


async def iterate_in_thread(
    make: Callable[[], Iterator[Any]], *, safe: bool = False
) -> AsyncGenerator[Any, None]:
    """Iterate a blocking iterator in a thread of its own, yielding items as they come.

    The iterator is created, advanced and closed in that thread. When the consumer stops
    early (``aclose``, a client disconnect) the thread stops after the item in progress
    and calls the iterator's ``close()``, so the generator's ``finally`` runs.

    :param safe: make each item JSON-safe (numpy scalars, non-finite floats, bytes).
    :raises PredictionFailedError: the iterator raised; the original is its ``__cause__``.
    """
    import threading

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def produce() -> None:
        it: Any = None
        try:
            it = make()
            for item in it:
                if stop.is_set():
                    break
                put(codecs.json_safe(item) if safe else item)
        except BaseException as exc:  # handed to the consumer
            if not stop.is_set():
                put(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            put(_DONE)

    thread = threading.Thread(target=produce, name="predictor-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, PredictorRuntimeError):
                raise item
            if isinstance(item, Exception):
                raise PredictionFailedError(f"{type(item).__name__}: {item}") from item
            yield item
    finally:
        stop.set()
