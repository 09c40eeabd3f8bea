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

from typing import Any

_EXPORTS = {
    "JobCancelled": "shards",
    "JobResult": "runner",
    "JobSpec": "spec",
    "JobSpecError": "spec",
    "ModelRef": "spec",
    "make_plan": "runner",
    "run_job": "runner",
    "run_plan": "runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Lazy exports, so that ``python -m predictor_runtime`` stays light to start."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
