"""The models / versions / operations routes of AI Platform's ``ml v1`` API.

=====================================================  ======================================
route                                                  methods
=====================================================  ======================================
``/v1/projects/{p}/models``                            GET (list), POST (create Model)
``/v1/projects/{p}/models/{m}``                        GET, PATCH (Operation), DELETE (Operation)
``/v1/projects/{p}/models/{m}/versions``               GET (list), POST (create: Operation)
``/v1/projects/{p}/models/{m}/versions/{v}``           GET, PATCH (Operation), DELETE (Operation)
``/v1/projects/{p}/models/{m}/versions/{v}:setDefault``  POST (Version)
``/v1/projects/{p}/operations[/{id}]``                 GET
=====================================================  ======================================

Every write is one transaction of the SQLite store that re-reads what it changes (so the
existence and ``etag`` checks hold across worker processes), then the local registry is
re-synced from the store (:mod:`.state`). Errors use Google's envelope, with messages that
name the field or resource at fault.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from typing import Any

from ...paths import check_allowed
from ...registry import CREATING, Version, new_etag, rfc3339
from ...state import ManagedState, version_record
from .validation import (
    ApiError,
    check_etag,
    check_framework,
    check_labels,
    check_logging,
    check_name,
    check_scaling,
    check_str,
    check_uri,
    invalid,
    not_found,
    parse_body,
    update_mask,
)

META_TYPE = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
MODEL_TYPE = "type.googleapis.com/google.cloud.ml.v1.Model"
VERSION_TYPE = "type.googleapis.com/google.cloud.ml.v1.Version"

MODEL_FIELDS = {"name", "description", "labels"}
MODEL_PASSTHROUGH = {"regions", "onlinePredictionLogging", "onlinePredictionConsoleLogging"}
MODEL_OUTPUT_ONLY = {"etag", "defaultVersion"}
VERSION_FIELDS = {
    "name", "deploymentUri", "framework", "predictionClass", "packageUris", "labels",
    "description", "requestLoggingConfig", "autoScaling", "manualScaling",
}  # fmt: skip
VERSION_PASSTHROUGH = {
    "runtimeVersion", "pythonVersion", "machineType", "serviceAccount", "acceleratorConfig",
    "explanationConfig", "container", "routes",
}  # fmt: skip
VERSION_OUTPUT_ONLY = {
    "createTime", "lastUseTime", "state", "isDefault", "etag", "errorMessage",
    "lastMigrationModelId", "lastMigrationTime",
}  # fmt: skip
MODEL_MASK = ("description", "labels")
VERSION_MASK = ("description", "labels", "requestLoggingConfig", "autoScaling", "manualScaling")

#: A write handler returns the answer, or a callable that renders it (possibly async)
#: once the local registry has been re-synced from the store.
Outcome = Any | Callable[[], Any]


class Management:
    """Handles the resource routes over a :class:`~.state.ManagedState`."""

    def __init__(self, state: ManagedState, allow_paths: tuple[str, ...] = ()) -> None:
        self.state = state
        #: ``--allow-paths``: deploymentUri and packageUris must lie in these folders.
        self.allow_paths = allow_paths

    async def read(self, kind: str, project: str, args: tuple[str, ...]) -> Any:
        """Serve a GET of ``kind`` (``models``, ``model``, ``versions``, ``version``,
        ``operations``, ``operation``) after a cheap check for other workers' writes."""
        await self.state.refresh()
        if kind == "operations":
            return await self.state.run_store(self._operations, project, None)
        if kind == "operation":
            return await self.state.run_store(self._operations, project, args[0])
        return self._get(kind, project, args)

    async def write(
        self,
        handler: Callable[..., Outcome],
        project: str,
        *args: str,
        body: bytes,
        query: dict[str, str],
    ) -> Any:
        """Run a write handler in the store's thread (one transaction), re-sync the
        registry on the event loop, then render the answer."""
        await self.state.refresh()
        out = await self.state.run_store(lambda: handler(project, *args, body=body, query=query))
        await self.state.refresh(force=True)
        if callable(out):
            out = out()
            if inspect.isawaitable(out):
                out = await out
        return out

    # -- reads --------------------------------------------------------------------------

    def _get(self, kind: str, project: str, args: tuple[str, ...]) -> dict[str, Any]:
        reg = self.state.registry
        if kind == "models":
            return {"models": [m.resource(project) for m in reg.models.values()]}
        m = self._model(args[0])
        if kind == "model":
            return m.resource(project)
        if kind == "versions":
            vs = m.versions.values()
            return {
                "versions": [
                    v.resource(project, is_default=v.name == m.default_version) for v in vs
                ]
            }
        v = self._version(m.name, args[1])
        return v.resource(project, is_default=v.name == m.default_version)

    def _model(self, name: str) -> Any:
        m = self.state.registry.models.get(name)
        if m is None:
            raise not_found(f'Field: name Error: The model resource: "{name}" was not found.')
        return m

    def _version(self, model: str, name: str) -> Version:
        v = self._model(model).versions.get(name)
        if v is None:
            raise not_found(
                f'Field: name Error: The version resource: "{name}" (model {model}) was not found.'
            )
        return v  # type: ignore[no-any-return]

    def _operations(self, project: str, op_id: str | None) -> dict[str, Any]:
        store = self.state.store
        if op_id is not None:
            op = store.operation(op_id)
            if op is None:
                raise not_found(f'Field: name Error: The operation "{op_id}" was not found.')
            return render_operation(op, project)
        return {"operations": [render_operation(op, project) for op in store.operations()]}

    # -- models -------------------------------------------------------------------------

    def _post_models(self, project: str, *, body: bytes, query: dict[str, str]) -> Any:
        obj = parse_body(body, "model", MODEL_FIELDS | MODEL_PASSTHROUGH | MODEL_OUTPUT_ONLY)
        name = check_name(obj.get("name"), "model")
        rec: dict[str, Any] = {
            "name": name,
            "description": check_str(obj.get("description", ""), "model.description"),
            "labels": check_labels(obj.get("labels", {}), "model.labels"),
            "extra": {k: obj[k] for k in MODEL_PASSTHROUGH if k in obj},
            "defaultVersion": None,
            "etag": new_etag(),
            "createTime": rfc3339(time.time()),
            "ephemeral": False,
        }
        store = self.state.store
        with store.transaction() as tx:
            if store.get_model(name, tx) is not None:
                raise ApiError(
                    409,
                    "ALREADY_EXISTS",
                    f"Field: model.name Error: A model with the same name ({name}) already exists.",
                )
            store.put_model(rec, tx)
        return lambda: self.state.registry.model(name).resource(project)

    def _patch_model(self, project: str, name: str, *, body: bytes, query: dict[str, str]) -> Any:
        obj = parse_body(body, "model", MODEL_FIELDS | MODEL_PASSTHROUGH | MODEL_OUTPUT_ONLY)
        paths = update_mask(query, MODEL_MASK)
        store = self.state.store
        with store.transaction() as tx:
            rec = store.get_model(name, tx)
            if rec is None:
                raise not_found(f'Field: name Error: The model resource: "{name}" was not found.')
            check_etag(obj, rec, f"model {name}")
            if "description" in paths:
                rec["description"] = check_str(obj.get("description", ""), "model.description")
            if "labels" in paths:
                rec["labels"] = check_labels(obj.get("labels", {}), "model.labels")
            rec["etag"] = new_etag()
            store.put_model(rec, tx)
            op = new_operation(project, "UPDATE_MODEL", name, None, done=True)
            store.put_operation(op, tx)

        async def finish() -> dict[str, Any]:
            op["response"] = {
                "@type": MODEL_TYPE,
                **self.state.registry.model(name).resource(project),
            }
            await self.state.run_store(store.put_operation, op)
            return render_operation(op, project)

        return finish

    def _delete_model(self, project: str, name: str, *, body: bytes, query: dict[str, str]) -> Any:
        store = self.state.store
        with store.transaction() as tx:
            if store.get_model(name, tx) is None:
                raise not_found(f'Field: name Error: The model resource: "{name}" was not found.')
            versions = [rec["name"] for _, rec in store.versions(name, tx)]
            if versions:
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"A model with versions cannot be deleted: model {name} still has "
                    f"version(s) {', '.join(versions)}; delete them first.",
                )
            store.delete_model(name, tx)
            op = new_operation(project, "DELETE_MODEL", name, None, done=True)
            op["response"] = {"@type": EMPTY_TYPE}
            store.put_operation(op, tx)
        return render_operation(op, project)

    # -- versions -----------------------------------------------------------------------

    def _post_versions(
        self, project: str, model: str, *, body: bytes, query: dict[str, str]
    ) -> Any:
        obj = parse_body(
            body, "version", VERSION_FIELDS | VERSION_PASSTHROUGH | VERSION_OUTPUT_ONLY
        )
        name = check_name(obj.get("name"), "version")
        uri = check_uri(obj.get("deploymentUri"))
        check_allowed(uri, self.allow_paths, field="version.deploymentUri")
        v = Version(model=model, name=name, deployment_uri=uri)
        v.framework = check_framework(obj.get("framework"))
        v.prediction_class = (
            check_str(obj.get("predictionClass", ""), "version.predictionClass") or None
        )
        packages = obj.get("packageUris", [])
        if not isinstance(packages, list):
            raise invalid("Field: version.packageUris Error: must be a list of strings")
        v.package_uris = [check_uri(p, "version.packageUris") for p in packages]
        for i, p in enumerate(v.package_uris):
            check_allowed(p, self.allow_paths, field=f"version.packageUris[{i}]")
        v.description = check_str(obj.get("description", ""), "version.description")
        v.labels = check_labels(obj.get("labels", {}), "version.labels")
        v.request_logging_config = check_logging(obj.get("requestLoggingConfig"))
        v.auto_scaling, v.manual_scaling = check_scaling(obj)
        v.extra = {k: obj[k] for k in VERSION_PASSTHROUGH if k in obj}
        v.state = CREATING
        store = self.state.store
        with store.transaction() as tx:
            mrec = store.get_model(model, tx)
            if mrec is None:
                raise not_found(
                    f'Field: parent Error: The model resource: "{model}" was not found.'
                )
            if store.get_version(model, name, tx) is not None:
                raise ApiError(
                    409,
                    "ALREADY_EXISTS",
                    f"Field: version.name Error: A version with the same name ({name}) already "
                    f"exists in model {model}.",
                )
            is_default = not mrec.get("defaultVersion")
            if is_default:
                mrec["defaultVersion"] = name
                mrec["etag"] = new_etag()
                store.put_model(mrec, tx)
            store.put_version(model, version_record(v, is_default=is_default), tx)
            op = new_operation(project, "CREATE_VERSION", model, name, done=False)
            op["metadata"]["version"] = v.resource(project, is_default=is_default)
            store.put_operation(op, tx)
        return render_operation(op, project)

    def _patch_version(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> Any:
        obj = parse_body(
            body, "version", VERSION_FIELDS | VERSION_PASSTHROUGH | VERSION_OUTPUT_ONLY
        )
        paths = update_mask(query, VERSION_MASK)
        changes: dict[str, Any] = {}
        if "description" in paths:
            changes["description"] = check_str(obj.get("description", ""), "version.description")
        if "labels" in paths:
            changes["labels"] = check_labels(obj.get("labels", {}), "version.labels")
        if "requestLoggingConfig" in paths:
            changes["requestLoggingConfig"] = check_logging(obj.get("requestLoggingConfig"))
        if "autoScaling" in paths or "manualScaling" in paths:
            auto, manual = check_scaling(obj)
            if "autoScaling" in paths:
                changes["autoScaling"] = auto
            if "manualScaling" in paths:
                changes["manualScaling"] = manual
        store = self.state.store
        with store.transaction() as tx:
            rec = store.get_version(model, name, tx)
            if rec is None:
                raise not_found(
                    f'Field: name Error: The version resource: "{name}" (model {model}) was not found.'
                )
            check_etag(obj, rec, f"version {name} of model {model}")
            rec.update(changes)
            if rec.get("autoScaling") is not None and rec.get("manualScaling") is not None:
                raise invalid(
                    "Field: version.autoScaling Error: a version has autoScaling or "
                    "manualScaling, not both; put both in updateMask to switch"
                )
            rec["etag"] = new_etag()
            store.put_version(model, rec, tx)
            op = new_operation(project, "UPDATE_VERSION", model, name, done=True)
            store.put_operation(op, tx)

        async def finish() -> dict[str, Any]:
            m = self.state.registry.model(model)
            resource = m.versions[name].resource(project, is_default=m.default_version == name)
            op["metadata"]["version"] = resource
            op["response"] = {"@type": VERSION_TYPE, **resource}
            await self.state.run_store(store.put_operation, op)
            return render_operation(op, project)

        return finish

    def _post_setdefault(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> Any:
        if body.strip():
            parse_body(body, "setDefaultVersionRequest", set())
        store = self.state.store
        with store.transaction() as tx:
            mrec, rec = _model_and_version(store, tx, model, name)
            old = mrec.get("defaultVersion")
            if old and old != name:
                old_rec = store.get_version(model, old, tx)
                if old_rec is not None:
                    old_rec.update(isDefault=False, etag=new_etag())
                    store.put_version(model, old_rec, tx)
            rec.update(isDefault=True, etag=new_etag())
            store.put_version(model, rec, tx)
            mrec.update(defaultVersion=name, etag=new_etag())
            store.put_model(mrec, tx)
        return lambda: self._get("version", project, (model, name))

    def _delete_version(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> Any:
        store = self.state.store
        with store.transaction() as tx:
            mrec, rec = _model_and_version(store, tx, model, name)
            others = [r["name"] for _, r in store.versions(model, tx) if r["name"] != name]
            if mrec.get("defaultVersion") == name:
                if others:
                    raise ApiError(
                        400,
                        "FAILED_PRECONDITION",
                        f"Cannot delete the default version {name} of model {model} while it "
                        f"has other versions ({', '.join(others)}); make another one the "
                        "default first (:setDefault).",
                    )
                mrec.update(defaultVersion=None, etag=new_etag())
                store.put_model(mrec, tx)
            store.delete_version(model, name, tx)
            op = new_operation(project, "DELETE_VERSION", model, name, done=True)
            op["metadata"]["version"] = {
                "name": f"projects/{project}/models/{model}/versions/{name}",
                "deploymentUri": rec.get("deploymentUri"),
            }
            op["response"] = {"@type": EMPTY_TYPE}
            store.put_operation(op, tx)
        return render_operation(op, project)


# -- operations ---------------------------------------------------------------------------


def new_operation(
    project: str, op_type: str, model: str, version: str | None, *, done: bool
) -> dict[str, Any]:
    """A new Operation record (``name`` is the short id; ``_``-keys are internal)."""
    now = rfc3339(time.time())
    op_id = (
        f"{op_type.lower()}_{model}_{version or ''}-{time.time_ns() // 1000}{os.urandom(2).hex()}"
    )
    meta: dict[str, Any] = {
        "@type": META_TYPE,
        "createTime": now,
        "startTime": now,
        "operationType": op_type,
        "modelName": f"projects/{project}/models/{model}",
    }
    if done:
        meta["endTime"] = now
    return {
        "name": op_id,
        "done": done,
        "metadata": meta,
        "_project": project,
        "_model": model,
        "_version": version,
    }


def render_operation(op: dict[str, Any], project: str) -> dict[str, Any]:
    """The API form of a stored operation, named under ``project``."""
    out = {k: v for k, v in op.items() if not k.startswith("_")}
    out["name"] = f"projects/{project}/operations/{op['name']}"
    return out


def _model_and_version(store: Any, tx: Any, model: str, name: str) -> tuple[dict, dict]:
    """The model and version records, read inside ``tx``; 404 naming the version if absent."""
    mrec = store.get_model(model, tx)
    rec = store.get_version(model, name, tx) if mrec is not None else None
    if mrec is None or rec is None:
        raise not_found(
            f'Field: name Error: The version resource: "{name}" (model {model}) was not found.'
        )
    return mrec, rec
