"""Batch jobs on Ray Data (extra ``predictor-runtime[ray]``; Ray is imported only here).

The job's shards (:mod:`.shards`) become a Ray dataset; ``map_batches`` sends them, one
per call, to an actor pool of :class:`_ShardActor`, each of which loads the model once
with the project's loader and writes whole shards with the same :class:`ShardWriter` as
the local runner. Output names, order, atomic renames and resume are therefore exactly
those of a local job. Inputs and output must be reachable at the same path from every
node (a shared filesystem), as for any Ray job reading local paths.

The pool grows from 1 to ``workers`` actors (``ActorPoolStrategy(min_size=1,
max_size=workers)``), and each actor asks for a fraction of a CPU that leaves at least
one CPU free for Ray Data's own tasks: with ``size=N`` actors of 1 CPU on an N-CPU node
Ray Data waits forever for a CPU to run the rest of the pipeline
(``/work/shared/research/ray_check.md``, section 5).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from .runner import JobResult, Plan
from .shards import ShardResult, ShardWriter, finish_output
from .spec import JobSpec, ModelRef


def connect(address: str) -> bool:
    """Connect to Ray unless already connected; returns whether this call started it.

    ``local`` starts a Ray instance inside this process; ``auto`` joins the cluster of
    this machine (``ray start``); anything else is a cluster address.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address == "local":
        ray.init(**kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def actor_cpus(workers: int) -> float:
    """CPUs per actor: at most 1, and ``workers`` actors leave one CPU for other tasks."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return round(max(0.1, min(1.0, (total - 1.0) / max(workers, 1))), 2)


class _ShardActor:
    """One Ray actor: the model loaded once, then whole shards written per call."""

    def __init__(self, model: ModelRef, spec: JobSpec, total: int, output: str) -> None:
        self.writer = ShardWriter(
            model.load(spec.batch_size),
            output,
            total,
            data_format=spec.data_format,
            batch_size=spec.batch_size,
            kwargs=spec.kwargs,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .shards import Shard

        out: dict[str, list[int]] = {"index": [], "predictions": [], "errors": []}
        for i in range(len(batch["index"])):
            shard = Shard(
                int(batch["index"][i]),
                str(batch["path"][i]),
                int(batch["start"][i]),
                int(batch["end"][i]),
            )
            r = self.writer.run(shard)
            out["index"].append(r.index)
            out["predictions"].append(r.predictions)
            out["errors"].append(r.errors)
        return out


def run_on_ray(
    spec: JobSpec,
    plan: Plan,
    model: ModelRef,
    *,
    address: str = "local",
    on_shard: Callable[[ShardResult, int], None] | None = None,
) -> JobResult:
    """Run the unfinished shards of ``plan`` on Ray Data; the job's total counts.

    :param address: see :func:`connect` (ignored when Ray is already initialised).
    :param on_shard: called with each finished shard and its input bytes.
    """
    import ray
    import ray.data

    started_at = time.monotonic()
    started = connect(address)
    result = JobResult(shards=len(plan.shards), resumed_shards=len(plan.done))
    result.per_shard.update(plan.done)
    try:
        todo = plan.todo
        if todo:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            items = [
                {"index": s.index, "path": s.path, "start": s.start, "end": s.end} for s in todo
            ]
            sizes = {s.index: s.end - s.start for s in todo}
            workers = max(1, min(spec.workers, len(todo)))
            ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                _ShardActor,
                fn_constructor_args=(model, spec, len(plan.shards), plan.output),
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
                num_cpus=actor_cpus(workers),
            )
            for row in ds.iter_rows():
                r = ShardResult(int(row["index"]), int(row["predictions"]), int(row["errors"]))
                result.per_shard[r.index] = r
                if on_shard is not None:
                    on_shard(r, sizes[r.index])
    finally:
        if started:
            ray.shutdown()
    result.predictions = sum(r.predictions for r in result.per_shard.values())
    result.errors = sum(r.errors for r in result.per_shard.values())
    result.seconds = time.monotonic() - started_at
    finish_output(plan.output)
    return result
