"""The prediction server behind ``python -m predictor_runtime serve``.

Stack, chosen by measurement (see ``benchmarks/README.md``): uvicorn with
its ``httptools`` HTTP parser and the ``uvloop`` event loop, running a thin hand-written
ASGI application (:mod:`.app`). Measured on this project's 2-core machine, server pinned
to one core, ``wrk -c16`` POSTing a one-instance JSON body to an endpoint that parses it
with orjson and answers a small JSON body (``/tmp``-built comparison, same run):

=====================================  ===========
stack                                  requests/s
=====================================  ===========
uvicorn + httptools + uvloop, raw ASGI       8,941
Starlette 1.10 on the same uvicorn           6,589
FastAPI 0.165 on the same uvicorn            3,328
uvicorn + h11 + asyncio loop, raw ASGI       3,007
=====================================  ===========

Framework cost is paid on every request while model cost is amortised by adaptive
batching, so for small requests the HTTP layer is the limit: we keep frameworks out of
the hot path (the app is ~300 lines and resolves routes with a cached path split).

Pieces:

- :mod:`.app`: ASGI routing, body limits, predict, health, metrics, error bodies
  (``{"error": ...}`` on predict, Google's envelope elsewhere);
- :mod:`.management`: the models/versions/operations routes (create, patch with
  ``updateMask`` and ``etag``, setDefault, delete, long-running operations), validation;
- :mod:`.state`: the SQLite store <-> registry sync (persistence, restart, several
  workers), background loading, request logging, lazy ``lastUseTime``;
- :mod:`.registry`: models, versions, states, AI Platform resource shapes;
- :mod:`predictor_runtime.batching`: adaptive ("continuous") batching per version;
- :mod:`.metrics`: Prometheus metrics (multiprocess-aware);
- :mod:`.runner`: socket, ``gc.freeze``, pre-fork workers, signals, graceful drain;
- :mod:`.main`: the ``serve`` command's orchestration (flags -> running server).
"""

from __future__ import annotations

__all__ = ["ServeConfig", "serve"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import main as _main

        return getattr(_main, name)
    raise AttributeError(f"module 'predictor_runtime.server' has no attribute {name!r}")
