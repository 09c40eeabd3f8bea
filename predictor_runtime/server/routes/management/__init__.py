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

The resource routes also answer under the short ``/v1/models/...`` form (project ``-``).
Every write is one transaction of the store, run in the store's thread (never on the
event loop), that re-reads what it changes (so the existence and ``etag`` checks hold
across worker processes); then the local registry is re-synced from the store. Errors use
Google's envelope, with messages that name the field or resource at fault.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...context import ServerContext
from ...http import Request, Response
from ...router import Router
from .handlers import Management

_P = "/v1/projects/{project}"
_S = "/v1"


def register(router: Router, ctx: ServerContext) -> None:
    """Add the models, versions and operations routes."""
    mgmt = Management(ctx.state, ctx.options.allow_paths)
    ctx.extensions["management"] = mgmt

    def project(req: Request) -> str:
        return req.params.get("project", "-")

    def reader(kind: str, *names: str) -> Any:
        async def handler(req: Request) -> Response:
            args = tuple(req.params[n] for n in names)
            return Response(200, orjson.dumps(await mgmt.read(kind, project(req), args)))

        return handler

    def writer(method: Any, *names: str) -> Any:
        async def handler(req: Request) -> Response:
            args = tuple(req.params[n] for n in names)
            body = await req.body() if req.method in ("POST", "PATCH", "PUT") else b""
            out = await mgmt.write(method, project(req), *args, body=body, query=req.query)
            return Response(200, orjson.dumps(out))

        return handler

    def both(path: str) -> list[str]:
        return [_P + path, _S + path]

    router.add("GET", both("/models"), reader("models"))
    router.add("POST", both("/models"), writer(mgmt._post_models))
    router.add("GET", both("/models/{model}"), reader("model", "model"))
    router.add("PATCH", both("/models/{model}"), writer(mgmt._patch_model, "model"))
    router.add("DELETE", both("/models/{model}"), writer(mgmt._delete_model, "model"))
    router.add("GET", both("/models/{model}/versions"), reader("versions", "model"))
    router.add("POST", both("/models/{model}/versions"), writer(mgmt._post_versions, "model"))
    v = "/models/{model}/versions/{version}"
    router.add("GET", both(v), reader("version", "model", "version"))
    router.add("PATCH", both(v), writer(mgmt._patch_version, "model", "version"))
    router.add("DELETE", both(v), writer(mgmt._delete_version, "model", "version"))
    router.add("POST", both(v + ":setDefault"), writer(mgmt._post_setdefault, "model", "version"))
    router.add("GET", _P + "/operations", reader("operations"))
    router.add("GET", _P + "/operations/{operation}", reader("operation", "operation"))
