"""Shards: the unit of work, of output and of restart of a batch prediction job.

The inputs are cut into byte ranges (a line belongs to the range holding its first byte),
planned from file sizes alone, so a file larger than memory is never read whole and the
plan can be made before reading anything. Each shard is read line by line, predicted in
batches of ``batch_size`` rows and written, in input order, to
``prediction.results-NNNNN-of-NNNNN`` (JSON Lines ``{"instance", "prediction"}``) and
``prediction.errors_stats-NNNNN-of-NNNNN`` (JSON Lines ``{"error", "count", "first"}``:
one line per distinct error, with where it first happened), as AI Platform names them.

Both files are written under temporary names and renamed when the shard is complete
(errors first, results last): a shard is done exactly when its results file exists, so a
job that restarts after a crash redoes only unfinished shards and never duplicates a line.
The plan and per-shard counts live in ``<output>/.prediction-job/`` until the job ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import codecs
from ..errors import (
    InvalidInstanceError,
    InvalidOutputError,
    InvalidRequestError,
    PredictorRuntimeError,
)
from ..lazy import lazy_numpy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

MIN_SHARD_BYTES = 64 * 1024
MAX_SHARD_BYTES = 64 * 1024 * 1024
STATE_DIR = ".prediction-job"
TMP_PREFIX = ".tmp-"
RESULTS = "prediction.results"
ERRORS = "prediction.errors_stats"


class JobCancelled(Exception):
    """The job was cancelled (or the process is stopping) between two batches."""


class OutputConflictError(PredictorRuntimeError):
    """The output folder holds another job's prediction files."""

    status = 400


@dataclass(frozen=True)
class Shard:
    """Lines of ``path`` starting in bytes ``[start, end)``."""

    index: int
    path: str
    start: int
    end: int


@dataclass
class ShardResult:
    """What one shard produced."""

    index: int
    predictions: int
    errors: int


def shard_name(kind: str, index: int, total: int) -> str:
    """``prediction.results-00001-of-00004`` style names."""
    return f"{kind}-{index:05d}-of-{total:05d}"


def plan_shards(
    files: list[str],
    workers: int,
    *,
    min_bytes: int = MIN_SHARD_BYTES,
    max_bytes: int = MAX_SHARD_BYTES,
) -> list[Shard]:
    """Byte-range shards of ``files``: about one per worker, at most ``max_bytes`` each."""
    sizes = [os.path.getsize(f) for f in files]
    total = sum(sizes)
    chunk = min(max(math.ceil(total / max(workers, 1)), min_bytes), max_bytes)
    shards: list[Shard] = []
    for path, size in zip(files, sizes, strict=True):
        n = max(1, math.ceil(size / chunk))
        bounds = [size * i // n for i in range(n + 1)]
        for i in range(n):
            shards.append(Shard(len(shards), path, bounds[i], bounds[i + 1]))
    return shards


def iter_lines(shard: Shard) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, line)`` of every line that starts inside the shard."""
    with open(shard.path, "rb") as fh:
        pos = shard.start
        if pos > 0:
            fh.seek(pos - 1)
            pos = pos - 1 + len(fh.readline())  # skip the line owned by the previous shard
        end = shard.end
        for line in fh:
            if pos >= end:
                return
            yield pos, line
            pos += len(line)


class ShardWriter:
    """Predicts one shard with ``dispatcher`` and writes its two output files atomically."""

    def __init__(
        self,
        dispatcher: Any,
        output: str,
        total: int,
        *,
        data_format: str,
        batch_size: int,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.output = Path(output)
        self.total = total
        self.text = data_format == "TEXT"
        self.batch_size = batch_size
        self.kwargs = kwargs or {}
        self.decode = bool(getattr(dispatcher, "decode", False))
        self.nan_as_null = bool(getattr(getattr(dispatcher, "model", None), "nan_as_null", False))

    def run(
        self,
        shard: Shard,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> ShardResult:
        """Write the shard's files; ``on_progress(rows, bytes)`` after each batch.

        :raises JobCancelled: ``should_stop()`` became true (temporary files removed).
        """
        tag = f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-"
        res_name = shard_name(RESULTS, shard.index, self.total)
        err_name = shard_name(ERRORS, shard.index, self.total)
        tmp_res, tmp_err = self.output / (tag + res_name), self.output / (tag + err_name)
        stats: dict[str, list[Any]] = {}
        count = 0
        try:
            with open(tmp_res, "wb") as out:
                raws: list[bytes] = []
                instances: list[Any] = []
                where: list[int] = []
                done_bytes = shard.start

                def flush(upto: int) -> None:
                    nonlocal count, done_bytes
                    if should_stop():
                        raise JobCancelled
                    if instances:
                        count += self._predict_write(out, raws, instances, where, shard, stats)
                    if on_progress is not None:
                        on_progress(len(instances), upto - done_bytes)
                    done_bytes = upto
                    raws.clear()
                    instances.clear()
                    where.clear()

                loads, fast, size = orjson.loads, not self.text, self.batch_size
                for offset, line in iter_lines(shard):
                    raw = line.strip()
                    if offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    if not raw:
                        continue
                    try:  # the common case inline: a strict JSON line
                        if not fast:
                            raise ValueError
                        value = loads(raw)
                    except ValueError:
                        parsed = self._parse(raw)
                        if isinstance(parsed, str):
                            _count(stats, parsed, shard, offset)
                            continue
                        raw, value = parsed
                    raws.append(raw)
                    instances.append(value)
                    where.append(offset)
                    if len(instances) >= size:
                        flush(offset + len(line))
                flush(shard.end)
            with open(tmp_err, "wb") as err:
                for message, (n, first) in stats.items():
                    err.write(orjson.dumps({"error": message, "count": n, "first": first}) + b"\n")
            errors = sum(n for n, _ in stats.values())
            counts = self.output / STATE_DIR / f"shard-{shard.index:05d}.json"
            tmp_counts = counts.with_name(tag + counts.name)
            tmp_counts.write_bytes(orjson.dumps({"predictions": count, "errors": errors}))
            os.replace(tmp_counts, counts)
            os.replace(tmp_err, self.output / err_name)
            os.replace(tmp_res, self.output / res_name)
        finally:
            for tmp in (tmp_res, tmp_err):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return ShardResult(shard.index, count, errors)

    def _parse(self, raw: bytes) -> tuple[bytes, Any] | str:
        """``(instance JSON, instance)`` of a line, or the error message."""
        if self.text:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"Invalid UTF-8 in a TEXT line: {exc.reason}"
            return orjson.dumps(text), text
        try:
            return raw, orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        try:
            value = codecs.parse_json(raw, nan_as_null=self.nan_as_null)
        except InvalidRequestError as exc:
            return "Invalid JSON: " + str(exc).removeprefix("Invalid JSON in request body: ")
        return codecs.dumps(value), value

    def _predict_write(
        self,
        out: Any,
        raws: list[bytes],
        instances: list[Any],
        where: list[int],
        shard: Shard,
        stats: dict[str, list[Any]],
    ) -> int:
        batch = codecs.decode_b64(list(instances)) if self.decode else list(instances)
        results = self._predict(batch, 0)
        lines: list[bytes] = []
        for i, (ok, value) in enumerate(results):
            if not ok:
                _count(stats, value, shard, where[i])
                continue
            lines.append(b'{"instance":' + raws[i] + b',"prediction":' + value + b"}\n")
        out.write(b"".join(lines))
        return len(lines)

    def _predict(self, batch: list[Any], offset: int) -> list[tuple[bool, Any]]:
        """Serialized predictions; a failing batch is bisected to isolate its bad rows."""
        try:
            preds = self.dispatcher.predict(batch, self.kwargs)
            if isinstance(preds, np.ndarray):
                preds = preds.tolist()
            dumps, default, opt = orjson.dumps, codecs.json_default, orjson.OPT_SERIALIZE_NUMPY
            try:
                return [(True, dumps(p, default=default, option=opt)) for p in preds]
            except TypeError as exc:  # what codecs.dumps reports for unserializable output
                raise InvalidOutputError(str(exc)) from exc
        except Exception as exc:
            if len(batch) == 1:
                if isinstance(exc, InvalidInstanceError):
                    message = f"Invalid inputs: {exc.problem}"
                elif isinstance(exc, PredictorRuntimeError):
                    message = exc.message
                else:
                    message = f"Prediction failed: {type(exc).__name__}: {exc}"
                return [(False, message)]
        mid = len(batch) // 2
        return self._predict(batch[:mid], offset) + self._predict(batch[mid:], offset + mid)


def _count(stats: dict[str, list[Any]], message: str, shard: Shard, offset: int) -> None:
    entry = stats.get(message)
    if entry is None:
        stats[message] = [1, f"{shard.path} at byte {offset}"]
    else:
        entry[0] += 1


# -- the plan, resume and the end of a job -----------------------------------------------


def _plan_path(output: str) -> Path:
    return Path(output) / STATE_DIR / "plan.json"


def prepare_output(output: str, identity: dict[str, Any], shards: list[Shard]) -> list[Shard]:
    """Create the output folder and record the plan, or reload an unfinished identical one.

    ``identity`` says which job this is (a job id, or the CLI's inputs and settings): when
    the folder holds an unfinished plan of the same identity, that plan is kept and the
    job resumes; prediction files of anything else are an :class:`OutputConflictError`.
    Stale temporary files of a crashed run are removed.

    :return: the plan to run (every shard, done ones included).
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATE_DIR).mkdir(exist_ok=True)
    plan_file = _plan_path(output)
    if plan_file.is_file():
        saved = orjson.loads(plan_file.read_bytes())
        if saved.get("identity") == identity:
            _remove_temporaries(out)
            return [Shard(**s) for s in saved["shards"]]
        raise OutputConflictError(
            f"output folder {output} holds an unfinished job with other inputs or settings; "
            "choose another folder or remove it"
        )
    if any(
        p.name.startswith(("prediction.results-", "prediction.errors_stats-"))
        for p in out.iterdir()
    ):
        raise OutputConflictError(
            f"output folder {output} already holds prediction files; choose an empty folder"
        )
    _remove_temporaries(out)
    tmp = plan_file.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-plan.json")
    tmp.write_bytes(orjson.dumps({"identity": identity, "shards": [asdict(s) for s in shards]}))
    os.replace(tmp, plan_file)
    return shards


def _remove_temporaries(out: Path) -> None:
    for folder in (out, out / STATE_DIR):
        for p in folder.glob(TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                p.unlink()


def done_result(output: str, shard: Shard, total: int) -> ShardResult | None:
    """The counts of a finished shard (None while it is not finished)."""
    out = Path(output)
    if not (out / shard_name(RESULTS, shard.index, total)).is_file():
        return None
    counts = out / STATE_DIR / f"shard-{shard.index:05d}.json"
    if counts.is_file():
        data = orjson.loads(counts.read_bytes())
        return ShardResult(shard.index, int(data["predictions"]), int(data["errors"]))
    # finished by an older run whose counts file is gone: count the files themselves
    with open(out / shard_name(RESULTS, shard.index, total), "rb") as fh:
        predictions = sum(1 for _ in fh)
    errors = 0
    err_file = out / shard_name(ERRORS, shard.index, total)
    if err_file.is_file():
        for line in err_file.read_bytes().splitlines():
            if line.strip():
                errors += int(orjson.loads(line)["count"])
    return ShardResult(shard.index, predictions, errors)


def finish_output(output: str) -> None:
    """Remove the job's bookkeeping folder once every shard is written."""
    import shutil

    shutil.rmtree(Path(output) / STATE_DIR, ignore_errors=True)
