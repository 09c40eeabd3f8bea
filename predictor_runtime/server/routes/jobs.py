"""AI Platform ``projects.jobs`` (batch prediction): create, get, list, cancel.

==========================================  =========================================
route                                       methods
==========================================  =========================================
``/v1/projects/{p}/jobs``                   POST (create a Job), GET (list)
``/v1/projects/{p}/jobs/{id}``              GET
``/v1/projects/{p}/jobs/{id}:cancel``       POST (answers ``{}``)
==========================================  =========================================

Shapes are AI Platform's (``jobId``, ``predictionInput``, ``state``, ``predictionOutput``
with int64 counts as strings), so ``googleapiclient``'s ``projects().jobs()`` drives them.
Jobs persist in ``<state-dir>/jobs.sqlite3`` and run in a background thread of one
process (:mod:`predictor_runtime.jobs.service`); store work runs off the event loop.
Errors use Google's envelope.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..context import ServerContext
from ..http import HttpError, Request, Response
from ..router import Router

JOB_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
BODY_FIELDS = {"jobId", "predictionInput", "labels", "trainingInput", "etag"}


def _invalid(message: str, status: str = "INVALID_ARGUMENT") -> HttpError:
    return HttpError(400, message, google_status=status)


def register(router: Router, ctx: ServerContext) -> None:
    """Add the jobs routes and start the job runner with each worker."""
    from ...jobs.service import JobService  # light: no framework, no Ray

    service = JobService(ctx.registry, ctx.options.state_dir)
    ctx.extensions["jobs"] = service
    allow = tuple(ctx.options.allow_paths)

    async def startup() -> None:
        await ctx.state.run_store(service.start)

    async def shutdown() -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, service.stop)

    ctx.on_startup(startup)
    ctx.on_shutdown(shutdown)

    def store() -> Any:
        return service.open()

    async def create(req: Request) -> Response:
        project = req.params["project"]
        body = await req.body()
        try:
            obj = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise _invalid(f"Invalid JSON payload received (job): {exc}") from None
        if not isinstance(obj, dict):
            raise _invalid("Invalid JSON payload received: the job must be an object")
        unknown = sorted(set(obj) - BODY_FIELDS)
        if unknown:
            raise _invalid(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'job'")
        if "trainingInput" in obj:
            raise _invalid(
                "Field: job.trainingInput Error: only batch prediction jobs (predictionInput) "
                "are supported"
            )
        job_id = obj.get("jobId")
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise _invalid(
                "Field: job.jobId Error: required; must start with a letter and contain only "
                f"letters, numbers and underscores; got {job_id!r}"
            )
        labels = obj.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise _invalid("Field: job.labels Error: labels must map strings to strings")
        from ...jobs.service import model_target, now_rfc3339, validate_input
        from ...jobs.spec import QUEUED

        inp = await ctx.state.run_store(validate_input, obj.get("predictionInput"), allow)
        target = model_target(inp)
        if target is not None:
            await ctx.state.refresh()
            try:
                ctx.registry.version(*target)
            except Exception as exc:
                field = "versionName" if target[1] else "modelName"
                raise _invalid(f"Field: predictionInput.{field} Error: {exc}") from None
        from ..registry import new_etag

        job: dict[str, Any] = {
            "jobId": job_id,
            "predictionInput": inp,
            "createTime": now_rfc3339(),
            "state": QUEUED,
            "etag": new_etag(),
        }
        if labels:
            job["labels"] = labels
        from ...jobs.store import JobExistsError

        try:
            await ctx.state.run_store(store().create, project, job)
        except JobExistsError:
            raise HttpError(
                409,
                f"Job {job_id} already exists in project {project}",
                google_status="ALREADY_EXISTS",
            ) from None
        service.notify()
        return Response(200, orjson.dumps(job))

    async def get(req: Request) -> Response:
        project, job_id = req.params["project"], req.params["job"]
        job = await ctx.state.run_store(store().get, project, job_id)
        if job is None:
            raise HttpError(404, f"Job not found: projects/{project}/jobs/{job_id}")
        return Response(200, orjson.dumps(job))

    async def list_jobs(req: Request) -> Response:
        project = req.params["project"]
        jobs = await ctx.state.run_store(store().list, project)
        flt = (req.query.get("filter") or "").strip()
        if flt:
            m = re.fullmatch(r"(state|jobId)\s*[=:]\s*\"?([A-Za-z0-9_]+)\"?", flt)
            if m is None:
                raise _invalid(
                    f"Field: filter Error: unsupported filter {flt!r}; use state=STATE or jobId=ID"
                )
            jobs = [j for j in jobs if j.get(m.group(1)) == m.group(2)]
        try:
            size = int(req.query.get("pageSize") or 0)
            start = int(req.query.get("pageToken") or 0)
        except ValueError:
            raise _invalid("Field: pageSize/pageToken Error: must be integers") from None
        out: dict[str, Any] = {}
        if size > 0:
            page = jobs[start : start + size]
            if start + size < len(jobs):
                out["nextPageToken"] = str(start + size)
        else:
            page = jobs[start:]
        out["jobs"] = page
        return Response(200, orjson.dumps(out))

    async def cancel(req: Request) -> Response:
        project, job_id = req.params["project"], req.params["job"]
        from ...jobs.service import now_rfc3339
        from ...jobs.spec import CANCELLED, CANCELLING, QUEUED, TERMINAL

        def change(r: dict[str, Any]) -> None:
            if r["state"] in TERMINAL:
                raise _invalid(
                    f"Job {job_id} is already in terminal state {r['state']}", "FAILED_PRECONDITION"
                )
            if r["state"] == QUEUED:
                r["state"] = CANCELLED
                r["endTime"] = now_rfc3339()
            elif r["state"] != CANCELLING:
                r["state"] = CANCELLING

        job = await ctx.state.run_store(store().update, project, job_id, change)
        if job is None:
            raise HttpError(404, f"Job not found: projects/{project}/jobs/{job_id}")
        service.notify()
        return Response(200, b"{}")

    base = "/v1/projects/{project}/jobs"
    router.add("POST", base, create)
    router.add("GET", base, list_jobs)
    router.add("GET", base + "/{job}", get)
    router.add("POST", base + "/{job}:cancel", cancel)
