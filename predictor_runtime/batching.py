"""Adaptive batching: merge concurrent predict requests to one version into one model call.

Why: the per-call cost of scikit-learn or XGBoost ``predict`` (tens of microseconds to
milliseconds) barely depends on the number of rows, so answering 16 one-row requests with
one 16-row call is where most serving throughput comes from.

Algorithm ("continuous batching"): one worker coroutine per version owns the model. It
sleeps until a request is queued, then takes, in arrival order, every queued request with
the same kwargs as the oldest one until the next would exceed ``max_batch_size`` rows, and
runs one :meth:`Dispatcher.predict` call for them in a thread (the event loop never
blocks). While that call runs, new requests queue up; they form the next batch the moment
the model is free. So under light load a request waits for nothing, and under heavy load
batches grow by themselves to whatever arrived during the previous call. With
``max_batch_delay_ms > 0`` the worker additionally waits up to that long after the oldest
request arrived for more rows (useful for models whose call cost is large and flat, at the
price of latency); the default is 0 because continuous batching already fills batches under
load (see ``benchmarks/README.md``).

Adaptive wait: with closed-loop clients (each connection sends its next request when its
previous answer arrives), plain continuous batching degenerates: right after a batch of 16
is answered, the first follow-up request finds the model free and runs alone while the
other 15 form the next batch (1, 15, 1, 15...: measured 1,510 req/s for a 100-tree forest
at 16 connections). So when the model becomes free, the worker expects the callers of the
previous batch back and waits until as many rows are queued as that batch had, but at most
``ADAPTIVE_WAIT_FRACTION`` (25%) of the smoothed model call time and at most
``ADAPTIVE_WAIT_CAP`` (5 ms): the model idles at most a quarter of its busy time, which is
repaid as soon as one extra row joins a call whose cost is mostly per call (2,028 req/s on
the same benchmark). For cheap models (XGBoost, ~0.2 ms a call) the wait is tens of
microseconds and the event loop keeps working meanwhile; with one client it never waits,
nor when a request of the last batch's typical size could not join the oldest queued one
(large requests: nothing to wait for).

Guarantees (each a bug seen in another server, see research notes section B):

- batches are counted in rows, never requests, and never exceed ``max_batch_size``;
  a request that alone has ``max_batch_size`` rows or more goes alone (the dispatcher
  splits it into micro-batches);
- each caller gets exactly its own rows back, in order (the merged output is sliced);
- requests whose kwargs differ are never merged (grouped by a canonical JSON key), nor
  JSON instances with arrays, nor arrays of different dtypes or row shapes (V2 tensors
  of one kind concatenate into one array: :func:`~predictor_runtime.tensors.batch_key`);
- predictors with ``batching = False`` are never merged;
- a bad instance fails only the request it belongs to: an
  :class:`~predictor_runtime.errors.InvalidInstanceError` from a merged call is mapped back
  to its request (with the index rebased to that request), which fails, and the others are
  re-run; any other error from a merged call is narrowed down by bisection (each half
  runs again), so the failing request fails alone in about log2(n) extra calls;
- a caller that was cancelled (timeout, disconnect) is skipped and never wedges the worker.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .errors import InvalidInstanceError
from .lazy import lazy_numpy
from .tensors import TensorBatch, batch_key

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

DEFAULT_MAX_BATCH_DELAY_MS = 0.0
#: Adaptive wait: wait for the previous batch's callers to come back for at most this fraction of the (smoothed) model call time ...
ADAPTIVE_WAIT_FRACTION = 0.25
#: ... and never longer than this (seconds).
ADAPTIVE_WAIT_CAP = 0.005

#: Wait for announced requests still arriving for at most this fraction of the smoothed
#: model call time (one merged call of N large requests costs far less than N calls) ...
ARRIVAL_WAIT_FRACTION = 1.0
#: ... and never longer than this (seconds) ...
ARRIVAL_WAIT_CAP = 0.05
#: ... and only when the last batch's requests had this many rows each on average.
ARRIVAL_MIN_ROWS = 64

#: ``on_batch(rows, requests, seconds)``: called after every model call (e.g. for metrics).
BatchHook = Callable[[int, int, float], None]


def merge_instances(parts: list[Any]) -> Any:
    """Concatenate the instances of several requests: arrays (V2 tensors) stay one array,
    named tensors (:class:`~predictor_runtime.tensors.TensorBatch`) one batch."""
    if all(isinstance(p, TensorBatch) for p in parts):
        return TensorBatch.concat(parts)
    if all(isinstance(p, np.ndarray) for p in parts):
        first = parts[0]
        if all(p.shape[1:] == first.shape[1:] and p.dtype == first.dtype for p in parts):
            return np.concatenate(parts)
    merged: list[Any] = []
    for part in parts:
        merged.extend(part)
    return merged


def kwargs_key(kwargs: dict[str, Any]) -> bytes:
    """A canonical key for ``kwargs``: requests are merged only when their keys are equal."""
    if not kwargs:
        return b""
    try:
        return orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-able (cannot come from a JSON body, but be safe)
        return repr(sorted(kwargs.items(), key=lambda kv: kv[0])).encode()


class BatchTarget(Protocol):
    """What a :class:`Batcher` calls: a :class:`~predictor_runtime.dispatcher.Dispatcher`,
    or another model call with the same shape (the generative routes' ``embed``)."""

    #: the loaded model (its ``batching`` attribute decides whether requests merge).
    model: Any
    max_batch_size: int

    def predict(self, instances: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """One result per instance, in order."""
        ...


class _Item:
    """One queued request."""

    __slots__ = ("alive", "future", "instances", "key", "kwargs", "n", "queued_at")

    def __init__(
        self,
        instances: Sequence[Any],
        kwargs: dict[str, Any],
        key: bytes,
        future: asyncio.Future[Any],
        alive: Callable[[], bool] | None,
        queued_at: float,
    ) -> None:
        self.instances = instances
        self.kwargs = kwargs
        self.key = key
        self.n = len(instances)
        self.future = future
        self.alive = alive
        self.queued_at = queued_at

    def wanted(self) -> bool:
        """False once nobody waits for the answer (cancelled, or the client went away)."""
        if self.future.done():
            return False
        if self.alive is not None and not self.alive():
            self.future.cancel()
            return False
        return True


class Batcher:
    """Merges concurrent requests to one :class:`BatchTarget` (one model version's dispatcher).

    :param dispatcher: the version's dispatcher; it does the parsing-free part
        (``predict(instances, kwargs)``) and micro-batches oversized requests.
    :param max_batch_size: most rows per merged model call (defaults to the dispatcher's).
    :param max_batch_delay_ms: extra wait for more rows after the oldest queued request
        arrived; 0 (default) means continuous batching only.
    :param on_batch: called after each model call with rows, requests and seconds.
    :param executor: where model calls run; by default a private one-thread executor,
        created on first use (so the object can be built before ``fork``).
    """

    def __init__(
        self,
        dispatcher: BatchTarget,
        *,
        max_batch_size: int | None = None,
        max_batch_delay_ms: float = DEFAULT_MAX_BATCH_DELAY_MS,
        on_batch: BatchHook | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        size = dispatcher.max_batch_size if max_batch_size is None else max_batch_size
        if size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {size}")
        if max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {max_batch_delay_ms}")
        self.dispatcher = dispatcher
        self.max_batch_size = size
        self.delay = max_batch_delay_ms / 1000.0
        self.merge = bool(dispatcher.model.batching)
        self.on_batch = on_batch
        self._executor = executor
        self._own_executor = executor is None
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._arriving = 0  # announced requests whose body is still being read or parsed
        self._last_rows = 0
        self._last_request_rows = 0.0  # mean rows per request in the last batch
        self._call_seconds = 0.0  # smoothed duration of one model call
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public API -------------------------------------------------------------------

    async def predict(
        self,
        instances: Sequence[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        alive: Callable[[], bool] | None = None,
        announced: bool = False,
    ) -> Any:
        """Predictions for exactly ``instances`` (same order), possibly merged with others.

        :param alive: optional check that the caller still wants the answer; requests
            whose client went away are skipped before the model call.
        :param announced: the caller called :meth:`announce` for this request earlier.
        :raises PredictorRuntimeError: this request's own error.
        """
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop or self._task.done():
            self._start(loop)
        if announced:
            self._arriving -= 1
        if kwargs:
            key = kwargs_key(kwargs) + b"\x00"
        else:
            kwargs, key = {}, b"\x00"
        if type(instances) is not list:  # arrays merge only with arrays of their kind
            key += batch_key(instances)
        fut: asyncio.Future[Any] = loop.create_future()
        item = _Item(instances, kwargs, key, fut, alive, loop.time())
        self._queue.append(item)
        self._queued_rows += item.n
        assert self._wake is not None
        self._wake.set()
        return await fut

    async def aclose(self) -> None:
        """Stop the worker (pending callers get CancelledError) and the executor."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        while self._queue:
            self._queue.popleft().future.cancel()
        self._queued_rows = 0
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def announce(self) -> None:
        """A request for this batcher has started arriving (its body is being read).

        While announced requests are on their way, an idle model waits for them (bounded)
        instead of starting a call without them: concurrent large requests, whose bodies
        take a while to receive and parse, are then merged by design rather than by
        timing luck. Pair with ``predict(..., announced=True)`` or :meth:`withdraw`.
        """
        self._arriving += 1

    def withdraw(self) -> None:
        """An announced request will not come (bad body, client gone)."""
        self._arriving -= 1
        if self._wake is not None:
            self._wake.set()

    @property
    def queued(self) -> int:
        """Requests waiting for the model."""
        return len(self._queue)

    # -- worker -----------------------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="predictor-model")
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        queue = self._queue
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            if self.merge:
                if self.delay > 0:
                    deadline = queue[0].queued_at + self.delay
                    await self._linger(loop, deadline, self.max_batch_size)
                else:
                    if wait := self.adaptive_wait():
                        # expect the callers of the last batch back (some may be queued)
                        target = min(self._last_rows, self.max_batch_size)
                        await self._linger(loop, loop.time() + wait, target)
                    if wait := self.arrival_wait():
                        await self._linger(loop, loop.time() + wait, self.max_batch_size)
            batch = self._take()
            if batch:
                await self._execute(batch, loop)

    def adaptive_wait(self) -> float:
        """Seconds to wait for the last batch's callers before the next call (0: none).

        No wait before any call, after an oversized batch, once as many rows are queued as
        the last batch had (so a lone sequential client never waits), or when a request of
        the last batch's typical size could not join the oldest queued one.
        """
        if not self._last_rows or self._call_seconds <= 0 or not self._queue:
            return 0.0
        if self._queued_rows >= self._last_rows:  # as many rows as last time: go
            return 0.0
        if self._queue[0].n + self._last_request_rows > self.max_batch_size:
            return 0.0
        return min(ADAPTIVE_WAIT_FRACTION * self._call_seconds, ADAPTIVE_WAIT_CAP)

    def arrival_wait(self) -> float:
        """Seconds to wait for announced requests still arriving (0: none).

        Only for large requests (the last batch's mean request had ``ARRIVAL_MIN_ROWS``
        rows or more: small bodies are read and parsed in microseconds, and the adaptive
        wait already covers them), when requests are announced, the queue's rows plus theirs (at the last
        batch's mean request size) fit one call, and a model call has been timed: at most
        ``ARRIVAL_WAIT_FRACTION`` of the smoothed call time, capped at ``ARRIVAL_WAIT_CAP``.
        """
        if self._arriving <= 0 or not self._queue or self._call_seconds <= 0:
            return 0.0
        if self._last_request_rows < ARRIVAL_MIN_ROWS:  # small requests arrive in microseconds
            return 0.0
        expected = self._queued_rows + self._arriving * max(self._last_request_rows, 1.0)
        if expected > self.max_batch_size:
            return 0.0
        return min(ARRIVAL_WAIT_FRACTION * self._call_seconds, ARRIVAL_WAIT_CAP)

    async def _linger(self, loop: asyncio.AbstractEventLoop, deadline: float, rows: int) -> None:
        """Wait until ``rows`` rows are queued, ``deadline`` (loop time) passes or, when
        waiting for the whole batch size, no announced request is still arriving."""
        wake = self._wake
        assert wake is not None
        if self._queued_rows >= rows or loop.time() >= deadline:
            return
        arrivals = rows >= self.max_batch_size
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            wake.set()

        # (a flag, not a clock check: asyncio may run a timer slightly before its time)
        timer = loop.call_at(deadline, expire)
        try:
            while self._queued_rows < rows and not expired:
                if arrivals and self._arriving <= 0:
                    return
                wake.clear()
                await wake.wait()
        finally:
            timer.cancel()

    def _take(self) -> list[_Item]:
        """Pop the next batch: the oldest live request plus same-kwargs ones that fit."""
        queue = self._queue
        while queue:
            head = queue.popleft()
            self._queued_rows -= head.n
            if head.wanted():
                break
        else:
            return []
        limit = self.max_batch_size
        if not self.merge or head.n >= limit or not queue:
            return [head]
        batch = [head]
        rows = head.n
        key = head.key
        rest: deque[_Item] = deque()
        while queue and rows < limit:
            it = queue.popleft()
            if not it.wanted():
                self._queued_rows -= it.n
                continue
            if it.key == key and rows + it.n <= limit:
                batch.append(it)
                rows += it.n
                self._queued_rows -= it.n
            else:
                rest.append(it)
        if rest:
            rest.extend(queue)
            queue.clear()
            queue.extend(rest)
        return batch

    def _call(self, instances: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, float]:
        """Runs in the executor thread."""
        started = time.perf_counter()
        out = self.dispatcher.predict(instances, kwargs)
        return out, time.perf_counter() - started

    async def _execute(self, batch: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        if len(batch) == 1:
            it = batch[0]
            try:
                out, seconds = await loop.run_in_executor(
                    self._executor, self._call, it.instances, it.kwargs
                )
            except asyncio.CancelledError:
                it.future.cancel()
                raise
            except Exception as exc:
                if not it.future.done():
                    it.future.set_exception(exc)
                return
            self._report(it.n, 1, seconds)
            if not it.future.done():
                it.future.set_result(out)
            return

        starts: list[int] = []
        total = 0
        for it in batch:
            starts.append(total)
            total += it.n
        merged = merge_instances([it.instances for it in batch])
        try:
            out, seconds = await loop.run_in_executor(
                self._executor, self._call, merged, batch[0].kwargs
            )
        except asyncio.CancelledError:
            for it in batch:
                it.future.cancel()
            raise
        except InvalidInstanceError as exc:
            if not 0 <= exc.index < total:
                await self._bisect(batch, loop)
                return
            j = bisect.bisect_right(starts, exc.index) - 1
            bad = batch[j]
            if not bad.future.done():
                bad.future.set_exception(InvalidInstanceError(exc.index - starts[j], exc.problem))
            rest = [it for k, it in enumerate(batch) if k != j and it.wanted()]
            if rest:
                await self._execute(rest, loop)
            return
        except Exception:
            await self._bisect(batch, loop)
            return
        self._report(total, len(batch), seconds)
        ends = [*starts[1:], total]
        for it, start, end in zip(batch, starts, ends, strict=True):
            if not it.future.done():
                it.future.set_result(out[start:end])

    async def _bisect(self, batch: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        """After a merged call failed: run each half again, so the failing request is found
        in about log2(n) calls and fails alone, while the others get their predictions."""
        live = [it for it in batch if it.wanted()]
        if len(live) <= 2:
            for it in live:
                await self._execute([it], loop)
            return
        mid = len(live) // 2
        await self._execute(live[:mid], loop)
        await self._execute(live[mid:], loop)

    def _report(self, rows: int, requests: int, seconds: float) -> None:
        # an oversized request says nothing about how many rows to wait for
        self._last_rows = rows if rows < self.max_batch_size else 0
        self._last_request_rows = rows / requests
        smoothed = self._call_seconds
        self._call_seconds = seconds if smoothed == 0 else 0.8 * smoothed + 0.2 * seconds
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # metrics must never fail a request
                self.on_batch(rows, requests, seconds)
