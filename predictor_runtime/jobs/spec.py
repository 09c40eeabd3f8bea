"""What a batch prediction job is: its inputs, output, data format, model and sizing.

:class:`JobSpec` is shared by the ``jobs`` HTTP routes (AI Platform's ``predictionInput``),
the ``batch-predict`` command and the Ray Data backend. :class:`ModelRef` says how to load
the model in another process (a pool worker or a Ray actor) with the same loader.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PredictorRuntimeError

QUEUED = "QUEUED"
PREPARING = "PREPARING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = frozenset({QUEUED, PREPARING, RUNNING, CANCELLING})

DATA_FORMATS = ("JSON", "TEXT")
#: AI Platform's default ``batchSize``.
DEFAULT_BATCH_SIZE = 64
MAX_WORKERS = 256


class JobSpecError(PredictorRuntimeError):
    """A bad job setting; the message names the field (400 on the HTTP API)."""

    status = 400


class PathNotAllowedError(JobSpecError):
    """A caller-named path outside ``--allow-paths`` (the path itself is not echoed)."""


def local_path(value: str) -> str:
    """A local path from a path or ``file://`` URI (other schemes are refused)."""
    if value.startswith("file://"):
        return value[len("file://") :]
    if "://" in value:
        raise JobSpecError(f"only local paths and file:// URIs are supported, got {value!r}")
    return value


def check_allowed(path: str, allow_paths: tuple[str, ...] | list[str], field_name: str) -> None:
    """Refuse ``path`` unless it lies inside one of ``allow_paths`` (empty: anything goes).

    The shared ``--allow-paths`` rule (:func:`predictor_runtime.server.paths.check_allowed`:
    symlinks resolved); the refusal names the field and the rule, never the path.
    """
    if not allow_paths:
        return
    from ..server.paths import PathNotAllowedError as Refused
    from ..server.paths import check_allowed as shared

    try:
        shared(path, tuple(allow_paths), what=f"Field: {field_name} Error")
    except Refused as exc:
        raise PathNotAllowedError(exc.message) from None


def expand_inputs(patterns: list[str]) -> list[str]:
    """Every file matched by the paths/globs, in order, each once (``**`` recurses).

    :raises JobSpecError: a pattern matches no file.
    """
    files: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        local = local_path(pattern)
        matches = sorted(glob.glob(local, recursive=True)) if glob.has_magic(local) else [local]
        found = [m for m in matches if os.path.isfile(m)]
        if not found:
            raise JobSpecError(f"input {pattern!r} matches no file")
        for m in found:
            real = os.path.realpath(m)
            if real not in seen:
                seen.add(real)
                files.append(real)
    return files


@dataclass
class ModelRef:
    """How to load a model with the project's loader, in any process."""

    model_dir: str
    framework: str | None = None
    prediction_class: str | None = None
    packages: list[str] = field(default_factory=list)
    state_dir: str | None = None
    decode_b64: str = "auto"

    def load(self, max_batch_size: int) -> Any:
        """A :class:`~predictor_runtime.dispatcher.Dispatcher` over the loaded model."""
        from ..dispatcher import DEFAULT_MAX_BATCH_SIZE, Dispatcher
        from ..loader import load_model

        model = load_model(
            local_path(self.model_dir),
            framework=self.framework,
            prediction_class=self.prediction_class,
            packages=self.packages,
            state_dir=self.state_dir,
        )
        size = max(max_batch_size, DEFAULT_MAX_BATCH_SIZE)
        return Dispatcher(model, max_batch_size=size, decode_b64=self.decode_b64)  # type: ignore[arg-type]


@dataclass
class JobSpec:
    """One job's inputs, output and sizing (model aside).

    :param inputs: input paths or globs (local or ``file://``).
    :param output: the output folder.
    :param data_format: ``JSON`` (one JSON instance per line) or ``TEXT`` (one string
        instance per line).
    :param batch_size: rows per model call.
    :param workers: parallel workers (threads of one shard loop when 1, else processes
        or Ray actors).
    :param kwargs: keyword arguments of every predict call (``signature_name``).
    """

    inputs: list[str]
    output: str
    data_format: str = "JSON"
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`JobSpecError` naming the first bad setting."""
        if not self.inputs:
            raise JobSpecError("at least one input path is required")
        if self.data_format not in DATA_FORMATS:
            raise JobSpecError(
                f"dataFormat {self.data_format!r} is not supported; use JSON or TEXT"
            )
        if not 1 <= self.batch_size <= 1_000_000:
            raise JobSpecError(f"batch size must be 1..1000000, got {self.batch_size}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise JobSpecError(f"worker count must be 1..{MAX_WORKERS}, got {self.workers}")
        out = Path(local_path(self.output))
        if out.exists() and not out.is_dir():
            raise JobSpecError(f"output path {self.output!r} is a file, not a folder")


def as_int(value: Any, field_name: str, default: int) -> int:
    """An int64 field as Google's JSON writes it (a number or a decimal string)."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise JobSpecError(f"Field: {field_name} Error: must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise JobSpecError(
            f"Field: {field_name} Error: must be an integer, got {value!r}"
        ) from None
