"""numpy, imported where it is first used rather than when the core is imported.

``serve`` answers ``/readyz`` sooner when the server's own modules do not import numpy
(about 0.1 s here): the framework adapters import it with the framework, and a custom
predictor that never touches an array never pays for it. A module that needs numpy (the
core's, or a framework adapter's whose discovery must stay cheap) writes::

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_numpy(globals())

The first attribute read (``np.asarray``...) imports numpy and puts the real module in
the module's globals under ``np``, so every later read is an ordinary global lookup.
"""

from __future__ import annotations

from typing import Any


class _LazyNumpy:
    """Stands in for numpy in one module's globals until an attribute is first read."""

    __slots__ = ("_namespace",)

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._namespace = namespace

    def __getattr__(self, name: str) -> Any:
        import numpy

        self._namespace["np"] = numpy
        return getattr(numpy, name)


def lazy_numpy(namespace: dict[str, Any]) -> Any:
    """A stand-in for ``numpy`` bound as ``np`` in ``namespace`` (a module's ``globals()``)."""
    return _LazyNumpy(namespace)
