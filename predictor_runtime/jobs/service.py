"""Jobs of the HTTP API: validated, persisted (:mod:`.store`), run in the background.

Every ``serve`` worker process starts a :class:`JobService` thread (never on the event
loop); the one holding the store's ``jobs`` lease runs jobs, oldest first, one at a time,
each with its own ``maxWorkerCount`` workers. A job moves QUEUED -> PREPARING (waits for
its version to be READY, plans shards) -> RUNNING -> SUCCEEDED | FAILED, or through
CANCELLING to CANCELLED. A job found PREPARING or RUNNING at start (the process was
killed) runs again: finished shards are kept (:mod:`.shards`), unfinished ones redone.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from ..errors import PredictorRuntimeError
from .runner import StopFlag, make_plan, run_plan
from .shards import JobCancelled, ShardResult
from .spec import (
    CANCELLED,
    CANCELLING,
    DATA_FORMATS,
    DEFAULT_BATCH_SIZE,
    FAILED,
    MAX_WORKERS,
    PREPARING,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    JobSpec,
    JobSpecError,
    ModelRef,
    as_int,
    check_allowed,
    expand_inputs,
    local_path,
)
from .store import JobStore

logger = logging.getLogger("predictor_runtime.jobs")

INPUT_FIELDS = {
    "dataFormat", "outputDataFormat", "inputPaths", "outputPath", "region", "modelName",
    "versionName", "uri", "maxWorkerCount", "runtimeVersion", "batchSize", "signatureName",
}  # fmt: skip
#: seconds a PREPARING job waits for a version that is not in this process's registry yet.
VERSION_APPEAR_WAIT = 30.0


def now_rfc3339() -> str:
    """The current time as RFC 3339 UTC."""
    from ..server.registry import rfc3339

    return rfc3339(time.time()) or ""


def _bad(field: str, message: str) -> JobSpecError:
    return JobSpecError(f"Field: {field} Error: {message}")


def model_target(inp: dict[str, Any]) -> tuple[str, str | None] | None:
    """``(model, version or None)`` named by ``modelName``/``versionName``; None for ``uri``."""
    if inp.get("versionName"):
        parts = str(inp["versionName"]).split("/")
        if len(parts) >= 6 and parts[-4] == "models" and parts[-2] == "versions":
            return parts[-3], parts[-1]
        if len(parts) == 3 and parts[1] == "versions":
            return parts[0], parts[2]
        raise _bad(
            "predictionInput.versionName",
            "expected projects/PROJECT/models/MODEL/versions/VERSION",
        )
    if inp.get("modelName"):
        parts = str(inp["modelName"]).split("/")
        if len(parts) == 1 or (len(parts) == 4 and parts[2] == "models"):
            return parts[-1], None
        raise _bad("predictionInput.modelName", "expected projects/PROJECT/models/MODEL")
    return None


def validate_input(inp: Any, allow_paths: tuple[str, ...]) -> dict[str, Any]:
    """Check a ``predictionInput``; returns it normalised (defaults filled in)."""
    if not isinstance(inp, dict):
        raise _bad("predictionInput", "required: an object")
    unknown = sorted(set(inp) - INPUT_FIELDS)
    if unknown:
        raise _bad(f"predictionInput.{unknown[0]}", "unknown field")
    out = dict(inp)
    fmt = out.setdefault("dataFormat", "JSON")
    if fmt not in DATA_FORMATS:
        raise _bad("predictionInput.dataFormat", f"{fmt!r} is not supported; use JSON or TEXT")
    if out.get("outputDataFormat", "JSON") != "JSON":
        raise _bad("predictionInput.outputDataFormat", "only JSON is supported")
    paths = out.get("inputPaths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise _bad("predictionInput.inputPaths", "required: a list of paths or globs")
    for i, p in enumerate(paths):
        field = f"predictionInput.inputPaths[{i}]"
        try:
            check_allowed(local_path(p), allow_paths, field)
            for found in expand_inputs([p]):  # a link inside may point outside
                check_allowed(found, allow_paths, field)
        except JobSpecError as exc:
            if exc.message.startswith("Field:"):
                raise
            raise _bad(field, exc.message) from None
    output = out.get("outputPath")
    if not isinstance(output, str) or not output:
        raise _bad("predictionInput.outputPath", "required: a local folder or file:// URI")
    try:
        check_allowed(local_path(output), allow_paths, "predictionInput.outputPath")
        JobSpec(list(paths), output).validate()
    except JobSpecError as exc:
        if exc.message.startswith("Field:"):
            raise
        raise _bad("predictionInput.outputPath", exc.message) from None
    named = [k for k in ("modelName", "versionName", "uri") if out.get(k)]
    if len(named) != 1:
        raise _bad("predictionInput.modelName", "give exactly one of modelName, versionName, uri")
    if out.get("uri"):
        uri = out["uri"]
        try:
            check_allowed(local_path(uri), allow_paths, "predictionInput.uri")
        except JobSpecError:
            raise
        if not isinstance(uri, str) or ("://" in uri and not uri.startswith("file://")):
            raise _bad("predictionInput.uri", "only local folders and file:// URIs")
    model_target(out)
    batch = as_int(out.get("batchSize"), "predictionInput.batchSize", DEFAULT_BATCH_SIZE)
    if not 1 <= batch <= 1_000_000:
        raise _bad("predictionInput.batchSize", f"must be 1..1000000, got {batch}")
    workers = as_int(out.get("maxWorkerCount"), "predictionInput.maxWorkerCount", 1)
    if not 1 <= workers <= MAX_WORKERS:
        raise _bad("predictionInput.maxWorkerCount", f"must be 1..{MAX_WORKERS}, got {workers}")
    out["batchSize"], out["maxWorkerCount"] = str(batch), str(workers)
    return out


def spec_of(inp: dict[str, Any]) -> JobSpec:
    """The :class:`JobSpec` of a validated ``predictionInput``."""
    kwargs = {"signature_name": inp["signatureName"]} if inp.get("signatureName") else {}
    return JobSpec(
        inputs=list(inp["inputPaths"]),
        output=inp["outputPath"],
        data_format=inp["dataFormat"],
        batch_size=int(inp["batchSize"]),
        workers=int(inp["maxWorkerCount"]),
        kwargs=kwargs,
    )


class JobService:
    """Runs the API's jobs in a background thread of whichever process holds the lease.

    :param registry: the process's registry (versions named by jobs are looked up here).
    :param state_dir: where ``jobs.sqlite3`` lives (None: in memory).
    :param poll: seconds between looks for work (creating or cancelling a job wakes it).
    :param lease_ttl: seconds a silent runner keeps the lease (renewed every second).
    """

    def __init__(
        self,
        registry: Any,
        state_dir: str | None,
        *,
        poll: float = 1.0,
        lease_ttl: float = 20.0,
    ) -> None:
        self.registry = registry
        self.state_dir = state_dir
        self.poll = poll
        self.lease_ttl = lease_ttl
        self.owner = uuid.uuid4().hex
        self.store: JobStore | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._flag: StopFlag | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> JobStore:
        """Open the store (in this process, after any fork)."""
        if self.store is None:
            self.store = JobStore(self.state_dir)
        return self.store

    def start(self) -> None:
        """Open the store and start the runner thread."""
        self.open()
        self._thread = threading.Thread(target=self._loop, name="predictor-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (an interrupted job stays RUNNING and resumes at the next start)."""
        self._closing.set()
        self._wake.set()
        if self._flag is not None:
            self._flag.set("shutdown")
        if self._thread is not None:
            self._thread.join(timeout)
        if self.store is not None:
            try:
                self.store.release(self.owner)
            except Exception:
                logger.exception("could not release the jobs lease")
            self.store.close()
            self.store = None

    def notify(self) -> None:
        """Look for work now (a job was created or cancelled)."""
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        held_until = 0.0  # (monotonic) the lease is ours with time to spare until then
        while not self._closing.is_set():
            try:
                store = self.open()
                if time.monotonic() < held_until or store.lead(self.owner, self.lease_ttl):
                    # renewed once half the lease is gone, not at every idle look
                    if time.monotonic() >= held_until:
                        held_until = time.monotonic() + self.lease_ttl / 2
                    found = store.next_active()
                    if found is not None:
                        self._run(*found)
                        held_until = 0.0  # the job's heartbeat kept (or lost) the lease
                        continue
            except Exception:
                logger.exception("batch job runner error")
            self._wake.wait(self.poll)
            self._wake.clear()

    def _run(self, project: str, job: dict[str, Any]) -> None:
        store = self.open()
        job_id = job["jobId"]
        if job["state"] == CANCELLING:
            self._finish(project, job_id, CANCELLED)
            return

        def prepare(r: dict[str, Any]) -> None:
            if r["state"] == QUEUED:
                r["state"] = PREPARING
                r["startTime"] = now_rfc3339()

        store.update(project, job_id, prepare)
        flag = self._flag = StopFlag()
        beat = threading.Thread(target=self._heartbeat, args=(project, job_id, flag), daemon=True)
        beat.start()
        try:
            self._execute(project, job_id, job["predictionInput"], flag)
            self._finish(project, job_id, SUCCEEDED)
        except JobCancelled:
            if flag.reason == "cancel":
                self._finish(project, job_id, CANCELLED)
            # shutdown or a lost lease: left as is; the next runner resumes it
        except Exception as exc:
            message = (
                exc.message
                if isinstance(exc, PredictorRuntimeError)
                else f"{type(exc).__name__}: {exc}"
            )
            self._finish(project, job_id, FAILED, message)
        finally:
            flag.set("done")
            beat.join(5)
            self._flag = None

    def _heartbeat(self, project: str, job_id: str, flag: StopFlag) -> None:
        store = self.open()
        renewed = 0.0
        while not flag():
            try:
                if time.monotonic() - renewed >= 1.0:
                    renewed = time.monotonic()
                    if not store.lead(self.owner, self.lease_ttl):
                        flag.set("lost")
                job = store.get(project, job_id)
                if job is None or job["state"] == CANCELLING:
                    flag.set("cancel")
            except Exception:
                logger.exception("jobs heartbeat failed")
            time.sleep(0.25 if flag.reason == "" else 0)
            if self._closing.is_set():
                flag.set("shutdown")

    def _execute(self, project: str, job_id: str, inp: dict[str, Any], flag: StopFlag) -> None:
        store = self.open()
        spec = spec_of(inp)
        dispatcher, ref = self._model(inp, flag)
        plan = make_plan(spec, identity={"project": project, "jobId": job_id})
        output = {"outputPath": inp["outputPath"], "predictionCount": "0", "errorCount": "0"}
        counts: dict[int, ShardResult] = dict(plan.done)

        def save(r: dict[str, Any]) -> None:
            r["state"] = RUNNING if r["state"] == PREPARING else r["state"]
            r["predictionOutput"] = {
                **output,
                "predictionCount": str(sum(c.predictions for c in counts.values())),
                "errorCount": str(sum(c.errors for c in counts.values())),
            }

        store.update(project, job_id, save)

        def on_shard(result: ShardResult) -> None:
            counts[result.index] = result
            store.update(project, job_id, save)

        if flag():
            raise JobCancelled
        run_plan(spec, plan, dispatcher=dispatcher, model=ref, should_stop=flag, on_shard=on_shard)
        store.update(project, job_id, save)

    def _model(self, inp: dict[str, Any], flag: StopFlag) -> tuple[Any, ModelRef]:
        """The dispatcher to use in this thread (None: load one) and how workers load it."""
        target = model_target(inp)
        if target is None:
            return None, ModelRef(local_path(inp["uri"]), state_dir=self.state_dir)
        from ..errors import NotFoundError
        from ..server.registry import FAILED as V_FAILED
        from ..server.registry import READY

        model, version_name = target
        appear_by = time.monotonic() + VERSION_APPEAR_WAIT
        while True:
            if flag():
                raise JobCancelled
            try:
                v = self.registry.version(model, version_name)
            except NotFoundError as exc:
                if time.monotonic() > appear_by:
                    raise PredictorRuntimeError(exc.message) from None
                v = None
            if v is not None and v.state == READY and v.pipeline is not None:
                ref = ModelRef(
                    v.deployment_uri,
                    framework=v.framework,
                    prediction_class=v.prediction_class,
                    packages=list(v.package_uris),
                    state_dir=self.state_dir,
                )
                return v.pipeline.dispatcher, ref
            if v is not None and v.state == V_FAILED:
                raise PredictorRuntimeError(
                    f"Version {v.name} of model {model} failed to load: {v.error_message}"
                )
            time.sleep(0.2)

    def _finish(self, project: str, job_id: str, state: str, error: str = "") -> None:
        def change(r: dict[str, Any]) -> None:
            if r["state"] in TERMINAL:
                return
            r["state"] = state
            r["endTime"] = now_rfc3339()
            r.setdefault("startTime", r["endTime"])
            if error:
                r["errorMessage"] = error

        self.open().update(project, job_id, change)
