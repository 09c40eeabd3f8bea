"""Handlers of the models / versions / operations routes (the table is in the package
docstring, :mod:`.`).

Every write is one transaction of the SQLite store that re-reads what it changes (so the
existence and ``etag`` checks hold across worker processes) and builds its answer (and
the operation it records) from the records it wrote, with the same functions GET uses
(:mod:`...resources`); then the local registry is re-synced from the store
(:mod:`...state`). Errors use Google's envelope, with messages that name the field or
resource at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ...paths import check_allowed
from ...registry import CREATING, Model, Version, new_etag, rfc3339
from ...resources import (
    EMPTY_TYPE,
    MODEL_TYPE,
    VERSION_TYPE,
    model_resource,
    new_operation,
    not_found,
    operation_resource,
    registry_model_resource,
    registry_version_resource,
    version_record,
    version_resource,
)
from ...state import ManagedState
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
    parse_body,
    update_mask,
)

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


class Management:
    """Handles the resource routes over a :class:`~.state.ManagedState`."""

    def __init__(self, state: ManagedState, allow_paths: tuple[str, ...] = ()) -> None:
        self.state = state
        #: ``--allow-paths``: deploymentUri and packageUris must lie in these folders.
        self.allow_paths = allow_paths

    async def read(self, kind: str, project: str, args: tuple[str, ...]) -> dict[str, Any]:
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
        handler: Callable[..., dict[str, Any]],
        project: str,
        *args: str,
        body: bytes,
        query: dict[str, str],
    ) -> dict[str, Any]:
        """Run a write handler in the store's thread (one transaction), then re-sync the
        registry on the event loop; the handler's answer is built inside its transaction.

        This worker's unsaved ``lastUseTime`` values are saved first, so the resources a
        write answers with show what a GET shows.
        """
        await self.state.refresh()

        def run() -> dict[str, Any]:
            self.state.persist_last_use()
            return handler(project, *args, body=body, query=query)

        out = await self.state.run_store(run)
        await self.state.refresh(force=True)
        return out

    # -- reads --------------------------------------------------------------------------

    def _get(self, kind: str, project: str, args: tuple[str, ...]) -> dict[str, Any]:
        reg = self.state.registry
        if kind == "models":
            return {"models": [registry_model_resource(project, m) for m in reg.models.values()]}
        m = self._model(args[0])
        if kind == "model":
            return registry_model_resource(project, m)
        if kind == "versions":
            vs = list(m.versions.values())
            return {"versions": [registry_version_resource(project, m, v) for v in vs]}
        return registry_version_resource(project, m, self._version(m, args[1]))

    def _model(self, name: str) -> Model:
        m = self.state.registry.models.get(name)
        if m is None:
            raise not_found("model", name)
        return m

    def _version(self, m: Model, name: str) -> Version:
        v = m.versions.get(name)
        if v is None:
            raise not_found("version", name, model=m.name)
        return v

    def _operations(self, project: str, op_id: str | None) -> dict[str, Any]:
        store = self.state.store
        if op_id is not None:
            op = store.operation(op_id)
            if op is None:
                raise not_found("operation", op_id)
            return operation_resource(op, project)
        return {"operations": [operation_resource(op, project) for op in store.operations()]}

    # -- models -------------------------------------------------------------------------

    def _post_models(self, project: str, *, body: bytes, query: dict[str, str]) -> dict[str, Any]:
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
        return model_resource(project, rec, None)

    def _patch_model(
        self, project: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
        obj = parse_body(body, "model", MODEL_FIELDS | MODEL_PASSTHROUGH | MODEL_OUTPUT_ONLY)
        paths = update_mask(query, MODEL_MASK)
        store = self.state.store
        with store.transaction() as tx:
            rec = store.get_model(name, tx)
            if rec is None:
                raise not_found("model", name)
            check_etag(obj, rec, f"model {name}")
            if "description" in paths:
                rec["description"] = check_str(obj.get("description", ""), "model.description")
            if "labels" in paths:
                rec["labels"] = check_labels(obj.get("labels", {}), "model.labels")
            rec["etag"] = new_etag()
            store.put_model(rec, tx)
            default = rec.get("defaultVersion")
            default_rec = store.get_version(name, default, tx) if default else None
            op = new_operation(project, "UPDATE_MODEL", name, None, done=True)
            op["response"] = {"@type": MODEL_TYPE, **model_resource(project, rec, default_rec)}
            store.put_operation(op, tx)
        return operation_resource(op, project)

    def _delete_model(
        self, project: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
        store = self.state.store
        with store.transaction() as tx:
            if store.get_model(name, tx) is None:
                raise not_found("model", name)
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
        return operation_resource(op, project)

    # -- versions -----------------------------------------------------------------------

    def _post_versions(
        self, project: str, model: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
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
                raise not_found("model", model, field="parent")
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
            vrec = version_record(v, is_default=is_default)
            store.put_version(model, vrec, tx)
            op = new_operation(project, "CREATE_VERSION", model, name, done=False)
            op["metadata"]["version"] = version_resource(
                project, model, vrec, is_default=is_default
            )
            store.put_operation(op, tx)
        return operation_resource(op, project)

    def _patch_version(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
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
            mrec, rec = _model_and_version(store, tx, model, name)
            check_etag(obj, rec, f"version {name} of model {model}")
            rec.update(changes)
            if rec.get("autoScaling") is not None and rec.get("manualScaling") is not None:
                raise invalid(
                    "Field: version.autoScaling Error: a version has autoScaling or "
                    "manualScaling, not both; put both in updateMask to switch"
                )
            rec["etag"] = new_etag()
            store.put_version(model, rec, tx)
            is_default = mrec.get("defaultVersion") == name
            resource = version_resource(project, model, rec, is_default=is_default)
            op = new_operation(project, "UPDATE_VERSION", model, name, done=True)
            op["metadata"]["version"] = resource
            op["response"] = {"@type": VERSION_TYPE, **resource}
            store.put_operation(op, tx)
        return operation_resource(op, project)

    def _post_setdefault(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
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
        return version_resource(project, model, rec, is_default=True)

    def _delete_version(
        self, project: str, model: str, name: str, *, body: bytes, query: dict[str, str]
    ) -> dict[str, Any]:
        store = self.state.store
        with store.transaction() as tx:
            mrec, rec = _model_and_version(store, tx, model, name)
            others = [r["name"] for _, r in store.versions(model, tx) if r["name"] != name]
            was_default = mrec.get("defaultVersion") == name
            if was_default:
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
            op["metadata"]["version"] = version_resource(
                project, model, rec, is_default=was_default
            )
            op["response"] = {"@type": EMPTY_TYPE}
            store.put_operation(op, tx)
        return operation_resource(op, project)


def _model_and_version(store: Any, tx: Any, model: str, name: str) -> tuple[dict, dict]:
    """The model and version records, read inside ``tx``; 404 naming the version if absent."""
    mrec = store.get_model(model, tx)
    rec = store.get_version(model, name, tx) if mrec is not None else None
    if mrec is None or rec is None:
        raise not_found("version", name, model=model)
    return mrec, rec
