"""What protocol modules get when they register their routes: the server's shared parts.

A protocol module (:mod:`.routes`) exposes ``register(router, ctx)``; it adds its routes
to the router and may keep objects of its own on ``ctx.extensions`` and run background
work through :meth:`ServerContext.on_startup` / :meth:`ServerContext.on_shutdown` (run
by the ASGI lifespan in each worker process, after any fork).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_MAX_PENDING_TASKS, DEFAULT_TASK_LEASE, DEFAULT_TASK_TTL

if TYPE_CHECKING:
    from .metrics import Metrics
    from .registry import Registry
    from .state import ManagedState

LifespanHook = Callable[[], Awaitable[None]]


@dataclass
class ServerOptionsView:
    """Settings protocol modules may need (a read-only view of ``serve``'s flags).

    Fields are added here as protocols need them, each with a safe default, so a server
    built in a test needs none of them.
    """

    #: request bodies over this many bytes are answered 413.
    max_request_bytes: int = int(1.5 * 1024 * 1024)
    #: the state directory (None: in-memory state, nothing persists).
    state_dir: str | None = None
    #: ``--allow-paths``: folders that caller-named paths must lie in (empty: anywhere).
    allow_paths: tuple[str, ...] = ()
    #: ``--no-fetch-urls``: refuse ``http(s)://`` inputs named by callers.
    fetch_urls: bool = True
    #: ``--task-ttl`` seconds (finished async tasks are pruned after this).
    task_ttl: float = DEFAULT_TASK_TTL
    #: ``--max-pending-tasks``.
    max_pending_tasks: int = DEFAULT_MAX_PENDING_TASKS
    #: ``--task-lease`` seconds (a claimed task whose process died is claimed again after it).
    task_lease: float = DEFAULT_TASK_LEASE
    #: ``--api-key`` / ``PREDICTOR_RUNTIME_API_KEY`` (None: no key required).
    api_key: str | None = None
    #: ``--cors-origins``: extra origins allowed to call the API from a browser.
    cors_origins: tuple[str, ...] = ()
    #: ``--state-url`` / ``PREDICTOR_RUNTIME_STATE_URL`` (None: SQLite under ``state_dir``).
    state_url: str | None = None
    #: ``--ray-address`` (None: no Ray).
    ray_address: str | None = None
    #: free-form settings of later protocols (``--ray-address``...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServerContext:
    """The registry, state, metrics and options every protocol module works with."""

    registry: Registry
    state: ManagedState
    metrics: Metrics | None = None
    options: ServerOptionsView = field(default_factory=ServerOptionsView)
    #: per-protocol objects, keyed by the module's short name (``"launch"``, ``"jobs"``).
    extensions: dict[str, Any] = field(default_factory=dict)
    _startup: list[LifespanHook] = field(default_factory=list)
    _shutdown: list[LifespanHook] = field(default_factory=list)

    def on_startup(self, hook: LifespanHook) -> None:
        """Run ``hook`` when a worker starts (after the state store is open)."""
        self._startup.append(hook)

    def on_shutdown(self, hook: LifespanHook) -> None:
        """Run ``hook`` when a worker stops (before the state store closes), in reverse order."""
        self._shutdown.append(hook)

    async def startup(self) -> None:
        """Run the startup hooks in registration order."""
        for hook in self._startup:
            await hook()

    async def shutdown(self) -> None:
        """Run the shutdown hooks in reverse registration order."""
        for hook in reversed(self._shutdown):
            await hook()
