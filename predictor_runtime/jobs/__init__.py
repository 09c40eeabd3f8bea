"""Batch prediction jobs: files of instances in, AI Platform style prediction files out.

- :mod:`.spec`: a job's settings (:class:`JobSpec`) and how to load its model anywhere
  (:class:`ModelRef`);
- :mod:`.shards`: byte-range shards, the shard writer, atomic output and resume;
- :mod:`.runner`: the local runner (this thread, or a process pool);
- :mod:`.store` and :mod:`.service`: jobs of the HTTP API, persisted in SQLite and run in
  the background of one server process;
- :mod:`.ray_data`: the same shards on a Ray cluster (optional extra, imported lazily);
- :mod:`.cli`: ``python -m predictor_runtime batch-predict``.
"""

from __future__ import annotations

from .runner import JobResult, make_plan, run_job, run_plan
from .shards import JobCancelled
from .spec import JobSpec, JobSpecError, ModelRef

__all__ = [
    "JobCancelled",
    "JobResult",
    "JobSpec",
    "JobSpecError",
    "ModelRef",
    "make_plan",
    "run_job",
    "run_plan",
]
