"""Every shape of a Model, Version and Operation, and the conversions between them.

Three forms exist, and only these functions translate between them:

- the **stored form** (a JSON object per row of :mod:`.store`): AI Platform field names
  plus internal ones (``extra``, ``ephemeral``, ``detectedFramework``; ``_``-keys of
  operations);
- the **registry objects** (:class:`~.registry.Model`, :class:`~.registry.Version`): what
  predict uses, mirrored from the stored form by :mod:`.state`
  (:func:`version_from_record`, :func:`apply_version_record`);
- the **API resources**: built by :func:`version_resource`, :func:`model_resource` and
  :func:`operation_resource` from the stored form only. A GET reads the registry
  (converted back by :func:`version_record` / :func:`model_record`), a write answers from
  the records it just wrote, so both show the same JSON.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .http import HttpError
from .registry import Model, Version, parse_rfc3339, rfc3339

META_TYPE = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
MODEL_TYPE = "type.googleapis.com/google.cloud.ml.v1.Model"
VERSION_TYPE = "type.googleapis.com/google.cloud.ml.v1.Version"

Record = dict[str, Any]


def not_found(kind: str, name: str, *, model: str | None = None, field: str = "name") -> HttpError:
    """404 NOT_FOUND for a ``model``, ``version`` or ``operation`` of the management API.

    :param model: the version's model (versions only).
    :param field: the request field that named it (``parent`` when creating a version).
    """
    if kind == "operation":
        message = f'Field: {field} Error: The operation "{name}" was not found.'
    else:
        where = f" (model {model})" if model is not None else ""
        message = f'Field: {field} Error: The {kind} resource: "{name}"{where} was not found.'
    return HttpError(404, message, google_status="NOT_FOUND")


# -- API resources (from the stored form) ---------------------------------------------------


def version_resource(project: str, model: str, rec: Record, *, is_default: bool) -> Record:
    """The AI Platform ``Version`` JSON of a stored version record."""
    out: Record = {
        "name": f"projects/{project}/models/{model}/versions/{rec['name']}",
        "deploymentUri": rec.get("deploymentUri"),
        "createTime": rec.get("createTime"),
        "state": rec.get("state"),
        "isDefault": is_default,
        "etag": rec.get("etag"),
    }
    if rec.get("lastUseTime"):
        out["lastUseTime"] = rec["lastUseTime"]
    if rec.get("detectedFramework"):
        out["framework"] = rec["detectedFramework"]
    for key in ("predictionClass", "packageUris", "description", "labels", "requestLoggingConfig"):
        if rec.get(key):
            out[key] = rec[key]
    for key in ("autoScaling", "manualScaling"):
        if rec.get(key) is not None:
            out[key] = rec[key]
    for key, value in (rec.get("extra") or {}).items():
        out.setdefault(key, value)
    if rec.get("errorMessage"):
        out["errorMessage"] = rec["errorMessage"]
    return out


def model_resource(project: str, rec: Record, default: Record | None) -> Record:
    """The AI Platform ``Model`` JSON of a stored model record.

    :param default: the stored record of its default version (``defaultVersion``), if any.
    """
    out: Record = {"name": f"projects/{project}/models/{rec['name']}"}
    if rec.get("description"):
        out["description"] = rec["description"]
    if rec.get("labels"):
        out["labels"] = rec["labels"]
    if default is not None:
        out["defaultVersion"] = version_resource(project, rec["name"], default, is_default=True)
    out["regions"] = ["local"]
    for key, value in (rec.get("extra") or {}).items():
        out.setdefault(key, value)
    out["etag"] = rec.get("etag")
    return out


def new_operation(
    project: str, op_type: str, model: str, version: str | None, *, done: bool
) -> Record:
    """A new stored Operation (``name`` is the short id; ``_``-keys are internal)."""
    now = rfc3339(time.time())
    op_id = (
        f"{op_type.lower()}_{model}_{version or ''}-{time.time_ns() // 1000}{os.urandom(2).hex()}"
    )
    meta: Record = {
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


def operation_resource(op: Record, project: str) -> Record:
    """The API form of a stored operation, named under ``project``."""
    out = {k: v for k, v in op.items() if not k.startswith("_")}
    out["name"] = f"projects/{project}/operations/{op['name']}"
    return out


# -- registry objects <-> stored form -------------------------------------------------------


def model_record(m: Model) -> Record:
    """The stored form of a registry model."""
    return {
        "name": m.name,
        "description": m.description,
        "labels": dict(m.labels),
        "extra": dict(m.extra),
        "defaultVersion": m.default_version,
        "etag": m.etag,
        "createTime": rfc3339(m.create_time),
        "ephemeral": m.ephemeral,
    }


def version_record(v: Version, *, is_default: bool, shared: bool = False) -> Record:
    """The stored form of a registry version: settings, state, etag, default flag, times.

    :param shared: report the state recorded in the shared store (what the API shows;
        with several workers this worker's own copy may still be loading) instead of
        this process's own.
    """
    state, error = v.state, v.error_message
    if shared and v.shared_state and not v.report_local:
        state, error = v.shared_state, v.shared_error
    return {
        "name": v.name,
        "deploymentUri": v.deployment_uri,
        "framework": v.framework,
        "detectedFramework": v.framework_api_name,
        "predictionClass": v.prediction_class,
        "packageUris": list(v.package_uris),
        "description": v.description,
        "labels": dict(v.labels),
        "requestLoggingConfig": v.request_logging_config,
        "autoScaling": v.auto_scaling,
        "manualScaling": v.manual_scaling,
        "extra": dict(v.extra),
        "createTime": rfc3339(v.create_time),
        "lastUseTime": rfc3339(v.last_use_time),
        "etag": v.etag,
        "state": state,
        "errorMessage": error,
        "isDefault": is_default,
        "ephemeral": v.ephemeral,
    }


def version_from_record(model: str, rec: Record) -> Version:
    """A new (not yet loaded, CREATING) registry :class:`Version` from its stored form."""
    v = Version(
        model=model,
        name=rec["name"],
        deployment_uri=rec["deploymentUri"],
        framework=rec.get("framework"),
        prediction_class=rec.get("predictionClass"),
        package_uris=list(rec.get("packageUris") or []),
        create_time=parse_rfc3339(rec.get("createTime")) or time.time(),
        ephemeral=bool(rec.get("ephemeral")),
    )
    apply_version_record(v, rec)
    return v


def apply_version_record(v: Version, rec: Record) -> None:
    """Copy the mutable stored fields of a version onto the registry object."""
    v.description = rec.get("description") or ""
    v.labels = dict(rec.get("labels") or {})
    v.request_logging_config = rec.get("requestLoggingConfig") or None
    v.auto_scaling = rec.get("autoScaling")
    v.manual_scaling = rec.get("manualScaling")
    v.extra = dict(rec.get("extra") or {})
    v.etag = rec.get("etag") or v.etag
    v.shared_state = rec.get("state") or None
    v.shared_error = rec.get("errorMessage") or ""
    if v.framework_api_name is None:
        v.framework_api_name = rec.get("detectedFramework")
    stored_use = parse_rfc3339(rec.get("lastUseTime"))
    if stored_use is not None and (v.last_use_time is None or stored_use > v.last_use_time):
        v.last_use_time = stored_use


# -- API resources of registry objects (what GET shows) ----------------------------------------


def registry_version_resource(project: str, m: Model, v: Version) -> Record:
    """The ``Version`` JSON of a registry version (through its stored form)."""
    is_default = m.default_version == v.name
    rec = version_record(v, is_default=is_default, shared=True)
    return version_resource(project, m.name, rec, is_default=is_default)


def registry_model_resource(project: str, m: Model) -> Record:
    """The ``Model`` JSON of a registry model (through its stored form)."""
    default = m.versions.get(m.default_version or "")
    default_rec = version_record(default, is_default=True, shared=True) if default else None
    return model_resource(project, model_record(m), default_rec)
