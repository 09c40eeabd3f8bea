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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import FrameworkNotFoundError, PluginError
from .predictor import validate_predictor_class

ENTRYPOINT_GROUP = hookspecs.PROJECT_NAME
BLOCK_ENV = "PREDICTOR_RUNTIME_BLOCK_PLUGINS"
DEFAULT_PLUGINS: tuple[str, ...] = ("predictor_runtime.default_plugins.custom",)


@dataclass(frozen=True)
class FrameworkInfo:
    """A registered framework class and where it came from."""

    cls: type
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

    def register(self, cls: type, *, plugin: str, distribution: str) -> None:
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
        self.frameworks[name] = FrameworkInfo(cls, plugin, distribution)

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


def collect_frameworks(pm: pluggy.PluginManager) -> FrameworkRegistry:
    """Run every ``register_frameworks`` implementation into a fresh registry.

    Implementations are called one by one (in pluggy's call order) so that each
    registration knows which plugin made it, for duplicate errors and ``plugins``.
    """
    registry = FrameworkRegistry()
    dists = plugin_distributions(pm)
    for impl in reversed(pm.hook.register_frameworks.get_hookimpls()):
        plugin = impl.plugin_name
        dist = dists.get(plugin, "?")

        def register(cls: type, _plugin: str = plugin, _dist: str = dist) -> None:
            registry.register(cls, plugin=_plugin, distribution=_dist)

        impl.function(register=register)
    return registry


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
