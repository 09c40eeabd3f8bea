"""The local runner: one job's shards on this machine.

With one worker the shards run one after the other in the calling thread, through the
dispatcher it is given (a served version's, so a job shares its loaded model). With N
workers they run in N processes (``spawn``: safe from a threaded server), each loading
the model once through the same loader (:class:`~.spec.ModelRef`) and writing whole
shards; the parent only schedules shards and collects counts. Worker processes stop
between batches when the job is cancelled and when their parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from ..errors import PredictorRuntimeError
from .shards import (
    JobCancelled,
    Shard,
    ShardResult,
    ShardWriter,
    done_result,
    finish_output,
    plan_shards,
    prepare_output,
)
from .spec import JobSpec, ModelRef, expand_inputs, local_path

Progress = Callable[[int, int], None]


@dataclass
class JobResult:
    """Counts of a finished job."""

    predictions: int = 0
    errors: int = 0
    shards: int = 0
    resumed_shards: int = 0
    seconds: float = 0.0
    per_shard: dict[int, ShardResult] = field(default_factory=dict)


@dataclass
class Plan:
    """A job's shards, with those already finished by an earlier run."""

    output: str
    shards: list[Shard]
    done: dict[int, ShardResult]
    total_bytes: int

    @property
    def todo(self) -> list[Shard]:
        """Shards still to run."""
        return [s for s in self.shards if s.index not in self.done]


def make_plan(spec: JobSpec, identity: dict[str, Any] | None = None) -> Plan:
    """Expand the inputs, cut them into shards and prepare the output folder.

    :param identity: what makes this job itself (default: inputs and settings), so an
        unfinished run of the same job resumes instead of starting over.
    """
    spec.validate()
    files = expand_inputs(spec.inputs)
    output = local_path(spec.output)
    if identity is None:
        identity = {
            "inputs": [[f, os.path.getsize(f), os.stat(f).st_mtime_ns] for f in files],
            "dataFormat": spec.data_format,
            "workers": spec.workers,
        }
    shards = prepare_output(output, identity, plan_shards(files, spec.workers))
    done = {}
    for s in shards:
        result = done_result(output, s, len(shards))
        if result is not None:
            done[s.index] = result
    return Plan(output, shards, done, sum(s.end - s.start for s in shards))


def run_plan(
    spec: JobSpec,
    plan: Plan,
    *,
    dispatcher: Any = None,
    model: ModelRef | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Progress | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> JobResult:
    """Run the unfinished shards of ``plan``; returns the job's total counts.

    :param dispatcher: predict with this one (in this thread) when ``spec.workers == 1``.
    :param model: what worker processes load (required when ``spec.workers > 1`` or no
        dispatcher is given).
    :raises JobCancelled: ``should_stop()`` became true; finished shards stay.
    """
    started = time.monotonic()
    result = JobResult(shards=len(plan.shards), resumed_shards=len(plan.done))
    result.per_shard.update(plan.done)

    def record(r: ShardResult) -> None:
        result.per_shard[r.index] = r
        if on_shard is not None:
            on_shard(r)

    todo = plan.todo
    if todo:
        if spec.workers <= 1 or (len(todo) == 1 and dispatcher is not None):
            if dispatcher is None:
                assert model is not None, "a dispatcher or a model reference is required"
                dispatcher = model.load(spec.batch_size)
            writer = ShardWriter(
                dispatcher,
                plan.output,
                len(plan.shards),
                data_format=spec.data_format,
                batch_size=spec.batch_size,
                kwargs=spec.kwargs,
            )
            for shard in todo:
                record(writer.run(shard, should_stop=should_stop, on_progress=on_progress))
        else:
            assert model is not None, "worker processes need a model reference"
            _run_processes(spec, plan, todo, model, should_stop, on_progress, record)
    result.predictions = sum(r.predictions for r in result.per_shard.values())
    result.errors = sum(r.errors for r in result.per_shard.values())
    result.seconds = time.monotonic() - started
    finish_output(plan.output)
    return result


def run_job(
    spec: JobSpec,
    *,
    dispatcher: Any = None,
    model: ModelRef | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Progress | None = None,
) -> JobResult:
    """Plan and run a job locally (see :func:`make_plan` and :func:`run_plan`)."""
    return run_plan(
        spec,
        make_plan(spec),
        dispatcher=dispatcher,
        model=model,
        should_stop=should_stop,
        on_progress=on_progress,
    )


# -- worker processes --------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(model: ModelRef, spec: JobSpec, total: int, output: str, shared: Any) -> None:
    stop, rows, nbytes = shared
    _WORKER.update(stop=stop, rows=rows, bytes=nbytes, parent=os.getppid(), error=None)
    try:
        dispatcher = model.load(spec.batch_size)
    except Exception as exc:  # reported by every task of this worker
        message = (
            str(exc) if isinstance(exc, PredictorRuntimeError) else f"{type(exc).__name__}: {exc}"
        )
        _WORKER["error"] = PredictorRuntimeError(message)
        return
    _WORKER["writer"] = ShardWriter(
        dispatcher,
        output,
        total,
        data_format=spec.data_format,
        batch_size=spec.batch_size,
        kwargs=spec.kwargs,
    )


def _worker_run(shard: Shard) -> ShardResult:
    w = _WORKER
    if w["error"] is not None:
        raise w["error"]
    stop, rows, nbytes, parent = w["stop"], w["rows"], w["bytes"], w["parent"]

    def should_stop() -> bool:
        return bool(stop.is_set()) or os.getppid() != parent

    def progress(n: int, b: int) -> None:
        with rows.get_lock():
            rows.value += n
        with nbytes.get_lock():
            nbytes.value += b

    return w["writer"].run(shard, should_stop=should_stop, on_progress=progress)  # type: ignore[no-any-return]


def _run_processes(
    spec: JobSpec,
    plan: Plan,
    todo: list[Shard],
    model: ModelRef,
    should_stop: Callable[[], bool],
    on_progress: Progress | None,
    record: Callable[[ShardResult], None],
) -> None:
    ctx = multiprocessing.get_context("spawn")
    stop, rows, nbytes = ctx.Event(), ctx.Value("q", 0), ctx.Value("q", 0)
    seen = [0, 0]

    def report() -> None:
        if on_progress is None:
            return
        r, b = rows.value, nbytes.value
        if r != seen[0] or b != seen[1]:
            on_progress(r - seen[0], b - seen[1])
            seen[0], seen[1] = r, b

    workers = min(spec.workers, len(todo))
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(model, spec, len(plan.shards), plan.output, (stop, rows, nbytes)),
    )
    cancelled = False
    try:
        pending = {pool.submit(_worker_run, s) for s in todo}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            report()
            for fut in done:
                try:
                    record(fut.result())
                except JobCancelled:
                    cancelled = True
                except BrokenProcessPool:
                    raise PredictorRuntimeError(
                        "a job worker process died (out of memory, or killed); "
                        "finished shards are kept and the job can be run again"
                    ) from None
            if not cancelled and should_stop():
                cancelled = True
                stop.set()
                for fut in pending:
                    fut.cancel()
        report()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if cancelled:
        raise JobCancelled


class StopFlag:
    """A thread-safe "stop between batches" flag with a reason (cancel or shutdown)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        """Ask the job to stop; the first reason wins."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()
