"""Every plugin hook of predictor-runtime, in one place.

Plugins implement these with :data:`hookimpl` and are found through the entry-point group
``predictor_runtime``::

    [project.entry-points.predictor_runtime]
    myframework = "my_package.plugin"

First-party frameworks (``custom`` built in; ``sklearn``, ``xgboost``, ``tensorflow`` as
their own distributions) register through exactly the same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from .predictor import FrameworkClass

PROJECT_NAME = "predictor_runtime"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin hook implementations: ``@predictor_runtime.hookimpl``."""


class Registrar(Protocol):
    """What ``register_frameworks`` receives: call it (or its ``framework``) with a class.

    The concrete object is :class:`predictor_runtime.plugins.FrameworkRegistrar`; it
    validates each class and records which plugin registered it.
    """

    def __call__(self, cls: type[FrameworkClass]) -> None:
        """Register one framework class (same as :meth:`framework`)."""
        ...

    def framework(self, cls: type[FrameworkClass]) -> None:
        """Register one framework class."""
        ...


@hookspec
def register_frameworks(register: Registrar) -> None:
    """Register framework classes: call ``register(cls)`` once per framework.

    A framework class is a Predictor (``from_path`` classmethod and ``predict``) with
    class attributes ``name`` (the CLI name, e.g. ``"sklearn"``), ``api_name`` (the AI
    Platform ``framework`` enum value, e.g. ``"SCIKIT_LEARN"``, or None) and
    ``model_files`` (file names or globs it recognises in a model directory). Optional
    class attributes: ``decode_b64`` (bool, whether ``{"b64": ...}`` is decoded to bytes
    under the default ``auto`` rule), ``batching`` (bool, whether requests may be
    split or merged into batches) and ``nan_as_null`` (bool, True when ``null`` and ``NaN``
    both mean a missing value to the framework, which lets ``NaN`` bodies take the fast
    parser).

    Every implementation runs. Registering a name twice is an error naming both plugins.

    :param register: validates the class and adds it to the framework table.
    :return: nothing; return values are ignored.
    """


@hookspec(firstresult=True)
def detect_framework(model_dir: str) -> str | None:
    """Claim a model directory by its content, before file-name matching is tried.

    Use it when file names alone cannot tell (e.g. a ``model.joblib`` that holds an
    XGBoost model). Keep it cheap: it runs for every auto-detected load, and must not
    import a heavy framework unless the directory's files make that necessary.

    Stops at first non-None result.

    :param model_dir: local directory holding the model files.
    :return: the registered ``name`` of the framework that should load it, or None.
    """
