"""One module per protocol; each exposes ``register(router, ctx)``.

:func:`register_all` imports every module (and sub-package) of this package, in name
order, and lets it add its routes: a new protocol is a new module here, touching none of
the others. Modules must import nothing heavy at import time (frameworks, Ray, HTTP
clients): they are imported by every ``serve``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..context import ServerContext
from ..router import Router


def register_all(router: Router, ctx: ServerContext) -> None:
    """Import each protocol module of this package and call its ``register``."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(router, ctx)
