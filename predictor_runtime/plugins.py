"""The plugin manager: built-in and third-party frameworks, found the same way.

Third-party plugins come from the entry-point group ``predictor_runtime``; the built-in
plugins named in :data:`DEFAULT_PLUGINS` are registered through the same manager. The
manager is built by :func:`get_plugin_manager` (tests build fresh ones) and the process-wide
one is created lazily, once, by :func:`plugin_manager`.

Set ``PREDICTOR_RUNTIME_BLOCK_PLUGINS`` to a comma-separated list of plugin names
(entry-point names, e.g. ``xgboost``, or built-in module names) to keep them from loading.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, cast

import pluggy

from . import hookspecs
from .errors import FrameworkNotFoundError, PluginError
from .predictor import FrameworkClass, validate_predictor_class

ENTRYPOINT_GROUP = hookspecs.PROJECT_NAME
BLOCK_ENV = "PREDICTOR_RUNTIME_BLOCK_PLUGINS"
DEFAULT_PLUGINS: tuple[str, ...] = ("predictor_runtime.default_plugins.custom",)


@dataclass(frozen=True)
class FrameworkInfo:
    """A registered framework class and where it came from."""

    cls: type[FrameworkClass]
    plugin: str
    distribution: str

    @property
    def name(self) -> str:
        return str(self.cls.name)

    @property
    def api_name(self) -> str | None:
        return getattr(self.cls, "api_name", None)

    @property
    def model_files(self) -> tuple[str, ...]:
        return tuple(getattr(self.cls, "model_files", ()))


@dataclass
class FrameworkRegistry:
    """The table of frameworks, filled by the ``register_frameworks`` hook."""

    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)

    def register(self, cls: type[Any], *, plugin: str, distribution: str) -> None:
        """Validate ``cls`` and add it; a name registered twice names both plugins."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            msg = f"Plugin {plugin!r} registered {cls!r} without a string 'name' attribute"
            raise PluginError(msg)
        files = getattr(cls, "model_files", ())
        if isinstance(files, str) or not all(isinstance(f, str) for f in files):
            msg = f"Plugin {plugin!r}: {name}.model_files must be a sequence of file names"
            raise PluginError(msg)
        try:
            validate_predictor_class(cls)
        except Exception as exc:
            raise PluginError(f"Plugin {plugin!r} registered an invalid framework: {exc}") from exc
        if name in self.frameworks:
            first = self.frameworks[name].plugin
            msg = f"Framework {name!r} is registered twice: by plugin {first!r} and by {plugin!r}"
            raise PluginError(msg)
        self.frameworks[name] = FrameworkInfo(
            cast("type[FrameworkClass]", cls), plugin, distribution
        )

    def get(self, name: str) -> FrameworkInfo:
        """The framework called ``name`` (CLI name or AI Platform ``api_name``)."""
        if name in self.frameworks:
            return self.frameworks[name]
        wanted = name.upper().replace("-", "_")
        for info in self.frameworks.values():
            if info.api_name == wanted or info.name.upper() == wanted:
                return info
        known = ", ".join(sorted(self.frameworks)) or "none"
        msg = f"Unknown framework {name!r}; installed frameworks: {known}"
        raise FrameworkNotFoundError(msg)

    def match_files(self, model_dir: str | Path) -> dict[str, list[str]]:
        """Framework name -> the files of ``model_dir`` matching its ``model_files``."""
        try:
            entries = sorted(p.name for p in Path(model_dir).iterdir())
        except OSError:
            return {}
        found: dict[str, list[str]] = {}
        for info in self.frameworks.values():
            hits = [e for e in entries if any(fnmatch.fnmatch(e, pat) for pat in info.model_files)]
            if hits:
                found[info.name] = hits
        return found


def _blocked_names() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def get_plugin_manager(
    *, load_entrypoints: bool = True, default_plugins: Iterable[str] = DEFAULT_PLUGINS
) -> pluggy.PluginManager:
    """Build a plugin manager: hookspecs, entry points, then the built-in plugins.

    Plugins listed in ``PREDICTOR_RUNTIME_BLOCK_PLUGINS`` are blocked before loading.
    ``check_pending()`` runs last so a misspelled hook fails here, not silently later.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in _blocked_names():
        pm.set_blocked(name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRYPOINT_GROUP)
    for dotted in default_plugins:
        if pm.is_blocked(dotted) or pm.has_plugin(dotted):
            continue
        pm.register(importlib.import_module(dotted), name=dotted)
    pm.check_pending()
    return pm


def plugin_distributions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Plugin name -> ``"distribution version"`` for every registered plugin."""
    by_plugin = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out: dict[str, str] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist: Any = by_plugin.get(id(plugin))
        if dist is not None:
            out[name] = f"{dist.metadata['name']} {dist.version}"
        else:
            from . import __version__

            out[name] = f"predictor-runtime {__version__}"
    return out


class FrameworkRegistrar:
    """The ``register`` argument of the ``register_frameworks`` hook.

    Calling it (``register(cls)``) or :meth:`framework` validates the class and adds it
    to :attr:`registry`, attributed to the plugin whose hook implementation made the call.
    The hook runs through pluggy's hook caller (so hook wrappers, tracing and call
    monitoring see it); the plugin is found by walking the caller's stack up to a
    frame of one of the hook's implementations.

    :param pm: the plugin manager whose ``register_frameworks`` implementations call it.
    :param registry: the table to fill (a fresh one by default).
    """

    def __init__(self, pm: pluggy.PluginManager, registry: FrameworkRegistry | None = None):
        self.registry = registry if registry is not None else FrameworkRegistry()
        self._dists = plugin_distributions(pm)
        self._impls: dict[CodeType, list[tuple[object, str]]] = {}
        for impl in pm.hook.register_frameworks.get_hookimpls():
            fn: Any = impl.function
            owner = getattr(fn, "__self__", None)
            code = getattr(getattr(fn, "__func__", fn), "__code__", None)
            if code is not None:
                self._impls.setdefault(code, []).append((owner, impl.plugin_name))

    def __call__(self, cls: type[FrameworkClass]) -> None:
        """Register one framework class (``register(cls)``)."""
        self._add(cls, sys._getframe(1))

    def framework(self, cls: type[FrameworkClass]) -> None:
        """Register one framework class."""
        self._add(cls, sys._getframe(1))

    def _add(self, cls: type[Any], frame: FrameType | None) -> None:
        plugin = self._plugin_of(frame)
        self.registry.register(cls, plugin=plugin, distribution=self._dists.get(plugin, "?"))

    def _plugin_of(self, frame: FrameType | None) -> str:
        while frame is not None:
            candidates = self._impls.get(frame.f_code)
            if candidates:
                if len(candidates) == 1:
                    return candidates[0][1]
                code = frame.f_code  # one method shared by several plugin instances
                first = frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None
                for owner, name in candidates:
                    if owner is first:
                        return name
                return candidates[0][1]
            frame = frame.f_back
        return "?"


def collect_frameworks(pm: pluggy.PluginManager) -> FrameworkRegistry:
    """Call the ``register_frameworks`` hook (through pluggy) into a fresh registry.

    Each registration knows which plugin made it, for duplicate errors and ``plugins``.
    """
    registrar = FrameworkRegistrar(pm)
    pm.hook.register_frameworks(register=registrar)
    return registrar.registry


class _Runtime:
    """The process-wide plugin manager and framework table, built on first use."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._registry: FrameworkRegistry | None = None

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = get_plugin_manager()
        return self._pm

    @property
    def registry(self) -> FrameworkRegistry:
        if self._registry is None:
            self._registry = collect_frameworks(self.pm)
        return self._registry

    def reset(self) -> None:
        self._pm = None
        self._registry = None


_runtime = _Runtime()


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built lazily, once)."""
    return _runtime.pm


def framework_registry() -> FrameworkRegistry:
    """The process-wide framework table (built lazily, once)."""
    return _runtime.registry


def reset() -> None:
    """Forget the process-wide manager, e.g. after installing a plugin at run time."""
    _runtime.reset()
