"""The durable queue at work in one server process: submit, run, finish, call back.

One :class:`TaskQueue` per worker process (created by the ``launch`` routes module and
started by the ASGI lifespan, after any fork):

- **submit** (``POST /v1/async-tasks``): tasks wait a moment for each other and are
  inserted together in one transaction (group commit); a task's id is answered only once
  that transaction has committed, so a kill -9 right after the answer loses nothing. When
  this process can run them at once (no backlog, room in flight) they are inserted
  already claimed by it, which saves the claim transaction.
- **worker loop**: claims runnable tasks atomically (``UPDATE ... RETURNING``; every
  worker process claims from the same table, so each task is run by one of them) and runs
  each through its model's :class:`~predictor_runtime.pipeline.Pipeline`. All claimed
  tasks predict concurrently, so the adaptive batcher merges a burst of one-row tasks
  into few model calls, together with the online requests of the moment. Outcomes are
  recorded in group commits too; a task recorded SUCCESS or FAILURE is never claimed
  again.
- **leases**: a claimed task carries a lease (``--task-lease``), renewed while it runs;
  when a worker process dies, its tasks go back to PENDING once the lease has expired
  (checked every few seconds),
  and at the next start of ``serve`` (:meth:`TaskQueue.recover`, run before any worker)
  every task left STARTED is PENDING again.
- **callbacks**: a separate loop delivers callbacks (:mod:`.callbacks`) with their
  own concurrency; a slow or dead receiver never delays predictions.
- **housekeeping**: finished tasks older than ``--task-ttl`` are pruned; queue metrics
  are sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from .. import codecs
from ..errors import PredictorRuntimeError
from . import callbacks as cb
from .store import (
    CB_DELIVERED,
    CB_FAILED,
    CB_PENDING,
    FAILURE,
    PENDING,
    STARTED,
    SUCCESS,
    Outcome,
    Task,
    TaskStore,
)

logger = logging.getLogger("predictor_runtime.tasks")
T = TypeVar("T")

#: polling for tasks submitted to other worker processes (seconds); a submit in this
#: process wakes the loop at once. Each poll that finds nothing doubles the wait, up to
#: IDLE_POLL_MAX, so an idle queue costs a store query a second, not ten.
POLL_INTERVAL = 0.1
IDLE_POLL_MAX = 1.0
#: concurrent callback deliveries per process
CALLBACK_CONCURRENCY = 64
#: seconds between prunes and metric samples
HOUSEKEEPING_INTERVAL = 5.0
#: how long a graceful stop waits for tasks in flight (seconds)
DRAIN_SECONDS = 10.0


def result_path(task_id: str) -> str:
    """The path of a ``return_pickled`` task's result (served by the launch routes)."""
    return f"/v1/async-tasks/{task_id}/result"


def describe_failure(exc: BaseException) -> str:
    """The error message, and the predictor's own traceback when it raised."""
    message = exc.message if isinstance(exc, PredictorRuntimeError) else f"{exc}"
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, PredictorRuntimeError):
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        return f"{message}\n\n{tb}"
    return message


def success_result(body: bytes, task: Task) -> tuple[str, bytes | None]:
    """``(result JSON, pickled blob)`` of a successful prediction ``body``."""
    if task.return_pickled:
        blob = pickle.dumps(orjson.loads(body))
        url = task.base_url.rstrip("/") + result_path(task.id)
        return orjson.dumps({"result_url": url}).decode(), blob
    return '{"result":' + body.decode() + "}", None


class TaskQueue:
    """Submit, run and call back tasks in this process (see the module docstring).

    :param registry: the process's models (tasks run on a model's default version).
    :param state_dir: where ``tasks.sqlite3`` lives (None: in memory).
    :param state_url: ``--state-url``: the tasks live in that PostgreSQL database instead,
        shared with every process pointing at it (:mod:`.pgstore`).
    :param max_pending: ``--max-pending-tasks``.
    :param ttl: ``--task-ttl`` seconds.
    :param lease: ``--task-lease`` seconds.
    :param max_inflight: tasks one process runs at a time (claimed ahead of the batcher).
    :param metrics: :class:`~.metrics.TaskMetrics` or None.
    """

    def __init__(
        self,
        registry: Any,
        *,
        state_dir: str | None,
        state_url: str | None = None,
        max_pending: int = 100_000,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_inflight: int = 1024,
        metrics: Any = None,
    ) -> None:
        self.registry = registry
        self.state_dir = state_dir
        self.state_url = state_url
        self.max_pending = max_pending
        self.ttl = ttl
        self.lease = lease
        self.max_inflight = max_inflight
        self.metrics = metrics
        self.owner = ""
        self.store: TaskStore | None = None
        self.sender = cb.CallbackSender()
        self._executor: ThreadPoolExecutor | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._adds: list[tuple[Task, asyncio.Future[bool]]] = []
        self._add_flush: asyncio.Task[None] | None = None
        self._finishes: list[Outcome] = []
        self._finish_flush: asyncio.Task[None] | None = None
        self._wake_work = asyncio.Event()
        self._wake_callbacks = asyncio.Event()
        self._more = False  # the last claim was full: more tasks may be waiting

    # -- lifecycle ----------------------------------------------------------------------

    def recover(self) -> int:
        """Before any worker starts: re-queue the previous run's unfinished tasks, prune."""
        store = self._open_store()
        try:
            n = store.recover()
            store.prune(time.time() - self.ttl)
            return n
        finally:
            store.close()

    async def start(self) -> None:
        """Open this process's store connection and start the loops."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="predictor-tasks")
        self._wake_work = asyncio.Event()
        self._wake_callbacks = asyncio.Event()
        self.store = await self.run(self._open_store, cb.CALLBACK_SECONDS)
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._work_loop()),
            loop.create_task(self._lease_loop()),
            loop.create_task(self._callback_loop()),
            loop.create_task(self._housekeeping_loop()),
        ]

    async def stop(self) -> None:
        """Stop claiming, let tasks in flight finish (bounded), record them, close."""
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._loops = []
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=DRAIN_SECONDS)
        for flush in (self._add_flush, self._finish_flush):
            if flush is not None:
                with contextlib.suppress(Exception):
                    await flush
        with contextlib.suppress(Exception):
            await self._flush_finishes()
        for t in list(self._callbacks):
            t.cancel()  # left SENDING: re-queued at the next start or after the lease
        await self.sender.aclose()
        if self.store is not None:
            await self.run(self.store.close)
            self.store = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _open_store(self, callback_seconds: float = cb.CALLBACK_SECONDS) -> TaskStore:
        if self.state_url:
            from .pgstore import PostgresTaskStore

            return PostgresTaskStore(  # type: ignore[return-value]
                self.state_url, callback_seconds=callback_seconds
            )
        return TaskStore(self.state_dir, callback_seconds=callback_seconds)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run store work in the queue's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _store(self) -> TaskStore:
        if self.store is None:
            raise PredictorRuntimeError("The task queue is not running", status=503)
        return self.store

    # -- submitting and reading -----------------------------------------------------------

    async def submit(self, task: Task) -> bool:
        """Insert ``task`` durably; False when the queue is full (``--max-pending-tasks``)."""
        self._store()
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._adds.append((task, fut))
        if self._add_flush is None or self._add_flush.done():
            self._add_flush = asyncio.get_running_loop().create_task(self._flush_adds())
        accepted = await fut
        if accepted and self.metrics is not None and task.status != SUCCESS:
            self.metrics.tasks.labels(task.model, "PENDING").inc()
        return accepted

    async def _flush_adds(self) -> None:
        while self._adds:
            batch, self._adds = self._adds, []
            self._claim_at_once([t for t, _ in batch])
            try:
                flags = await self.run(
                    self._store().add, [t for t, _ in batch], max_pending=self.max_pending
                )
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            loop = asyncio.get_running_loop()
            queued = False
            for (task, fut), ok in zip(batch, flags, strict=True):
                if ok and task.status == STARTED:
                    self._inflight[task.id] = loop.create_task(self._run_task(task))
                queued = queued or task.status == PENDING
                if not fut.done():
                    fut.set_result(ok)
            if queued:
                self._wake_work.set()

    def _claim_at_once(self, tasks: list[Task]) -> None:
        """Insert new tasks already claimed by this process when it can run them now.

        Saves a claim transaction per group of submits; only when no backlog waits (the
        last claim was not full), so tasks still run in arrival order.
        """
        room = self.max_inflight - len(self._inflight)
        if self._more or room <= 0:
            return
        runnable = set(self.runnable_models())
        now = time.time()
        for t in tasks:
            if room <= 0:
                break
            if t.status == PENDING and t.model in runnable:
                t.status, t.owner, t.started_at, t.attempts = STARTED, self.owner, now, 1
                t.lease_until = now + self.lease
                room -= 1

    async def get(self, task_id: str) -> Task | None:
        """One task, or None (a point read, on the loop when the store reads apart)."""
        store = self._store()
        if store.fast_reads:
            return store.get(task_id)
        return await self.run(store.get, task_id)

    async def result_blob(self, task_id: str) -> bytes | None:
        """The pickled result of a ``return_pickled`` task."""
        return await self.run(self._store().result_blob, task_id)

    async def pending_count(self, model: str | None = None) -> int:
        """PENDING tasks (of ``model``)."""
        return await self.run(self._store().pending_count, model)

    # -- running ------------------------------------------------------------------------

    def runnable_models(self) -> list[str]:
        """Models whose default version has settled here (READY, or FAILED: tasks fail)."""
        out = []
        for name, m in list(self.registry.models.items()):
            v = m.versions.get(m.default_version or "")
            if v is not None and v.state in ("READY", "FAILED"):
                out.append(name)
        return out

    async def _work_loop(self) -> None:
        store = self._store()
        idle = POLL_INTERVAL
        while True:
            free = self.max_inflight - len(self._inflight)
            claimed: list[Task] = []
            models = self.runnable_models()
            if free > 0 and models:
                try:
                    claimed = await self.run(store.claim, models, self.owner, free, self.lease)
                except Exception:
                    logger.exception("claiming tasks failed")
            loop = asyncio.get_running_loop()
            for task in claimed:
                self._inflight[task.id] = loop.create_task(self._run_task(task))
            # a full claim may have left tasks behind: claim again as soon as slots free up;
            # otherwise only a submit (or the poll timer, for other processes' submits) wakes
            self._more = bool(claimed) and len(claimed) == free
            if self._more and len(self._inflight) < self.max_inflight:
                await asyncio.sleep(0)
                continue
            self._wake_work.clear()
            idle = await _idle_wait(self._wake_work, POLL_INTERVAL if claimed else idle)

    async def _run_task(self, task: Task) -> None:
        try:
            outcome = await self._predict(task)
            self._finishes.append(outcome)
            if self._finish_flush is None or self._finish_flush.done():
                self._finish_flush = asyncio.get_running_loop().create_task(self._flush_finishes())
            await asyncio.shield(self._finish_flush)
        finally:
            self._inflight.pop(task.id, None)
            if self._more:
                self._wake_work.set()

    async def _predict(self, task: Task) -> Outcome:
        try:
            version = self.registry.version(task.model)
            pipeline = version.ready()
            instances, kwargs = await pipeline.parse(task.body)
            out = await pipeline.predict(instances, kwargs)
            body = codecs.predictions_body(out)
            version.last_use_time = time.time()
            result, blob = success_result(body, task)
            return Outcome(task.id, SUCCESS, result, None, 200, blob, task.model)
        except asyncio.CancelledError:
            raise
        except PredictorRuntimeError as exc:
            tb = describe_failure(exc)
            return Outcome(task.id, FAILURE, None, tb, exc.status, None, task.model)
        except Exception as exc:  # a runtime bug: the task fails, the loop goes on
            logger.exception("task %s failed", task.id)
            tb = f"Internal error: {type(exc).__name__}: {exc}"
            return Outcome(task.id, FAILURE, None, tb, 500, None, task.model)

    async def _flush_finishes(self) -> None:
        while self._finishes:
            batch, self._finishes = self._finishes, []
            try:
                done = await self.run(self._store().finish, batch, self.owner)
            except Exception:
                logger.exception("recording %d finished tasks failed", len(batch))
                continue  # left STARTED: re-run after the lease or at the next start
            if self.metrics is not None:
                by_id = {o.id: o for o in batch}
                for task_id in done:
                    o = by_id[task_id]
                    self.metrics.tasks.labels(o.model, o.status).inc()
            self._wake_callbacks.set()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.lease / 3, 0.05))
            ids = list(self._inflight)
            if ids:
                try:
                    await self.run(self._store().renew, ids, self.owner, self.lease)
                except Exception:
                    logger.exception("renewing task leases failed")

    # -- callbacks ----------------------------------------------------------------------

    async def _callback_loop(self) -> None:
        store = self._store()
        idle = POLL_INTERVAL * 2
        while True:
            free = CALLBACK_CONCURRENCY - len(self._callbacks)
            due: list[Task] = []
            if free > 0:
                try:
                    due = await self.run(store.claim_callbacks, self.owner, free, 60.0)
                except Exception:
                    logger.exception("claiming callbacks failed")
            loop = asyncio.get_running_loop()
            for task in due:
                t = loop.create_task(self._deliver(task))
                self._callbacks.add(t)
                t.add_done_callback(self._callbacks.discard)
            self._wake_callbacks.clear()
            idle = await _idle_wait(self._wake_callbacks, POLL_INTERVAL * 2 if due else idle)

    async def _deliver(self, task: Task) -> None:
        attempts = task.callback_attempts + 1
        try:
            attempt = await self.sender.send(task)
        except Exception as exc:  # never let one receiver break the loop
            attempt = cb.Attempt(False, True, f"{type(exc).__name__}: {exc}")
        now = time.time()
        if attempt.delivered:
            status, next_at, outcome = CB_DELIVERED, None, "delivered"
        else:
            next_at = now + cb.backoff(attempts)
            deadline = task.callback_deadline or now
            if attempt.retry and next_at <= deadline:
                status, outcome = CB_PENDING, "retry"
            else:
                status, next_at, outcome = CB_FAILED, None, "failed"
        if self.metrics is not None:
            self.metrics.callbacks.labels(outcome).inc()
        try:
            await self.run(
                self._store().set_callback,
                task.id,
                self.owner,
                status,
                attempts=attempts,
                error=attempt.error,
                next_at=next_at,
            )
        except Exception:
            logger.exception("recording the callback of task %s failed", task.id)

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        store = self._store()
        last_prune = 0.0
        while True:
            try:
                await self.run(store.requeue_expired)
                if time.monotonic() - last_prune >= min(self.ttl, 60.0):
                    last_prune = time.monotonic()
                    await self.run(store.prune, time.time() - self.ttl)
                if self.metrics is not None:
                    self.metrics.sample(await self.run(store.counts))
            except Exception:
                logger.exception("task housekeeping failed")
            await asyncio.sleep(min(HOUSEKEEPING_INTERVAL, max(self.ttl / 2, 0.2)))


async def _idle_wait(wake: asyncio.Event, seconds: float) -> float:
    """Wait up to ``seconds`` for ``wake``; the wait to use next time: the shortest poll
    after a wake-up, twice as long (at most :data:`IDLE_POLL_MAX`) after a silent one."""
    try:
        await asyncio.wait_for(wake.wait(), seconds)
    except asyncio.TimeoutError:
        return min(seconds * 2, IDLE_POLL_MAX)
    return POLL_INTERVAL


__all__ = ["TaskQueue", "describe_failure", "result_path", "success_result"]
