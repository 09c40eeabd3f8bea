"""The shared state behind the models/versions API: store <-> in-memory registry.

The store (:mod:`predictor_runtime.server.store`: SQLite under the state dir, or PostgreSQL
with ``--state-url``) is the source of truth; each process's :class:`~.registry.Registry`
mirrors it:

- **Writes** (the management routes) run one store transaction that re-reads the
  resource, checks it (existence, ``etag``), writes it, and then :meth:`ManagedState.sync`
  applies the store to the local registry.
- **Other workers** (``--workers N``, or other machines on PostgreSQL) notice those
  writes through the store's ``changed_since`` (SQLite's ``PRAGMA data_version``, a
  revision counter on PostgreSQL), checked every ``sync_interval`` (0.5 s) by a
  background task (woken at once by PostgreSQL's notifications), before every management
  request and when a predict names an unknown model/version; on a change they re-read the
  (small) tables and reconcile: new versions are added in state
  CREATING and loaded in the background, deleted ones are dropped, patched fields are
  copied (so a patched ``requestLoggingConfig`` applies to the next request).
- **Loading** runs in a thread of the worker's event loop; when it ends the worker records
  READY / FAILED (+ ``errorMessage``) in the store if it is still CREATING there, and
  completes the pending CREATE_VERSION operations. Every worker loads its own copy; a
  predict that reaches a worker whose copy is still loading while the store already says
  READY waits for that local load instead of answering 503.
- **Command-line models** (``--model-dir`` or the bundled example) are loaded by the
  parent before forking. With SQLite they are recorded in the store flagged
  ``ephemeral`` (so the API can patch them, add versions to them, set defaults) and
  dropped from the store at the next start, which re-registers them from the flags. With
  a shared store (PostgreSQL) they stay local to their process: never written, kept by
  :meth:`ManagedState._reconcile`, and a version's ``state`` is this process's view.
  API-created models and versions persist.
- **Restart**: :meth:`ManagedState.prepare` (parent, before fork) resets every persisted
  version to CREATING (SQLite only: on a shared store other processes are serving them);
  each worker then reloads them in the background.
- ``lastUseTime`` is updated in memory per request and persisted lazily (every
  ``touch_interval`` seconds and at shutdown), off the request path.

Fork safety: the parent closes its store connection before workers are forked; each
worker opens its own in :meth:`ManagedState.start` (run by the ASGI lifespan startup),
and starts its own request-log writer thread there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import PredictorRuntimeError
from .registry import (
    CREATING,
    FAILED,
    READY,
    Model,
    Registry,
    Version,
    parse_rfc3339,
    rfc3339,
)
from .request_log import RequestLogger
from .resources import (
    VERSION_TYPE,
    apply_version_record,
    model_record,
    version_from_record,
    version_record,
    version_resource,
)
from .store import StateStore, open_store

logger = logging.getLogger("predictor_runtime.server")
T = TypeVar("T")


#: The fields whose change changes an etag (settable content; not state, times, flags).
VERSION_CONTENT = (
    "deploymentUri", "framework", "predictionClass", "packageUris", "description", "labels",
    "requestLoggingConfig", "autoScaling", "manualScaling", "extra",
)  # fmt: skip
MODEL_CONTENT = ("description", "labels", "extra", "defaultVersion")


def content_of(rec: dict[str, Any], fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The settable content of a stored record (what its etag stands for)."""
    return tuple(repr(rec.get(f)) for f in fields)


class StoreBusyError(PredictorRuntimeError):
    """The state database stayed locked by another process: 503, retry."""

    status = 503


#: How long a predict waits for this worker's copy of a version the store calls READY.
LOCAL_LOAD_WAIT = 120.0


class ManagedState:
    """Keeps a registry in sync with the store; loads versions; request logging.

    :param registry: the process's registry (holding the command-line models, if any).
    :param state_dir: the ``--state-dir``; None for an in-memory store (tests; no request
        logging, nothing persists) unless ``state_url`` is given.
    :param state_url: ``--state-url``: a PostgreSQL URL shared with other processes.
    :param metrics: for ``predictor_request_log_dropped_total`` (optional).
    :param sync_interval: seconds between ``data_version`` checks of the background task.
    :param touch_interval: seconds between lazy writes of ``lastUseTime``.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        state_dir: str | Path | None = None,
        state_url: str | None = None,
        metrics: Any = None,
        sync_interval: float = 0.5,
        touch_interval: float = 5.0,
    ) -> None:
        self.registry = registry
        self.state_dir = str(state_dir) if state_dir is not None else None
        self.state_url = state_url or None
        self.metrics = metrics
        self.sync_interval = sync_interval
        self.touch_interval = touch_interval
        self.request_logger: RequestLogger | None = None
        self._store: StateStore | None = None
        self._prepared = False
        self._token: Any = None
        self._wake: asyncio.Event | None = None
        self._loading: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_touch = time.monotonic()
        self._store_executor: ThreadPoolExecutor | None = None

    async def run_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (store work) in the store's own thread, off the event loop.

        One thread: writes are serialised anyway, and a slow or locked database then
        delays store work only, never the requests being served meanwhile.
        :raises StoreBusyError: the database stayed locked or is unreachable (503).
        """
        if self._store_executor is None:
            self._store_executor = ThreadPoolExecutor(1, thread_name_prefix="predictor-store")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._store_executor, functools.partial(fn, *args))
        except Exception as exc:
            reason = self._store.transient(exc) if self._store is not None else None
            if reason is None:
                raise
            raise StoreBusyError(f"{reason[:1].upper()}{reason[1:]}; retry shortly") from None

    async def refresh(self, *, force: bool = False) -> bool:
        """:meth:`sync` with the store read in the store's thread, applied on the loop.

        :return: whether the registry was reconciled.
        """
        read = await self.run_store(self._read_changes, force)
        if read is None:
            return False
        self._reconcile(*read)
        return True

    def _read_changes(
        self, force: bool
    ) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]] | None:
        store = self.store
        changed, self._token = store.changed_since(self._token)
        if not (changed or force):
            return None
        return store.models(), store.versions()

    @property
    def store(self) -> StateStore:
        """This process's store connection (opened by :meth:`start`)."""
        if self._store is None:
            self._store = open_store(self.state_dir, self.state_url)
        return self._store

    @property
    def shared(self) -> bool:
        """Whether other processes (machines) share the store (``--state-url``)."""
        return self.state_url is not None

    @property
    def persistent(self) -> bool:
        """Whether the state outlives the process (a state dir or a database)."""
        return self.state_dir is not None or self.state_url is not None

    # -- lifecycle ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Before forking: open the store (migrating it), record the command-line models.

        SQLite: drops the previous run's ephemeral rows, marks every persisted version
        CREATING (it will be reloaded), and writes the registry's current models and
        versions as ephemeral. Shared store: only marks the command-line models local.
        Closes the connection afterwards when the state persists.
        """
        store = self.store
        if self.shared:
            for m in self.registry.models.values():
                m.ephemeral = True
                for v in m.versions.values():
                    v.ephemeral = True
        else:
            self._record_local_models(store)
        self._prepared = True
        if self.persistent:
            store.close()
            self._store = None

    def _record_local_models(self, store: StateStore) -> None:
        # etags change only with settable content: a command-line version re-created with
        # the same content as in the previous run keeps that run's etag
        old: dict[tuple[str, str | None], tuple[tuple[Any, ...], str]] = {}
        with store.transaction() as tx:
            kept: dict[str, list[str]] = {}
            for model, rec in store.versions(conn=tx):
                if rec.get("ephemeral"):
                    old[(model, rec["name"])] = (content_of(rec, VERSION_CONTENT), rec["etag"])
                    store.delete_version(model, rec["name"], tx)
                    continue
                kept.setdefault(model, []).append(rec["name"])
                rec.update(state=CREATING, errorMessage="")
                store.put_version(model, rec, tx)
            for rec in store.models(conn=tx):
                names = kept.get(rec["name"], [])
                if rec.get("ephemeral") and not names:
                    old[(rec["name"], None)] = (content_of(rec, MODEL_CONTENT), rec["etag"])
                    store.delete_model(rec["name"], tx)
                elif rec.get("defaultVersion") not in names:
                    rec["defaultVersion"] = names[0] if names else None
                    store.put_model(rec, tx)
            for m in self.registry.models.values():
                m.ephemeral = True
                mrec = store.get_model(m.name, tx) or model_record(m)
                for v in m.versions.values():
                    v.ephemeral = True
                    if mrec.get("defaultVersion") is None:
                        mrec["defaultVersion"] = v.name
                for v in m.versions.values():
                    is_default = mrec["defaultVersion"] == v.name
                    vrec = version_record(v, is_default=is_default)
                    before = old.get((m.name, v.name))
                    if before is not None and before[0] == content_of(vrec, VERSION_CONTENT):
                        v.etag = vrec["etag"] = before[1]
                    store.put_version(m.name, vrec, tx)
                before = old.get((m.name, None))
                if before is not None and before[0] == content_of(mrec, MODEL_CONTENT):
                    m.etag = mrec["etag"] = before[1]
                store.put_model(mrec, tx)

    async def start(self) -> None:
        """In each worker (after any fork): open the store, sync, start background work."""
        if not self._prepared:
            self.prepare()
        loop = asyncio.get_running_loop()
        if self.persistent:
            on_drop = self.metrics.log_dropped if self.metrics is not None else None
            sink = await self.run_store(lambda: self.store.request_log_sink())
            self.request_logger = RequestLogger(sink=sink, on_drop=on_drop)
            self.request_logger.start()
        wake = self._wake = asyncio.Event()
        await self.run_store(self.store.subscribe, lambda: loop.call_soon_threadsafe(wake.set))
        await self.refresh(force=True)
        self._task = loop.create_task(self._periodic())

    async def aclose(self) -> None:
        """Persist ``lastUseTime``, flush the request log, close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.metrics is not None:
            self.metrics.flush()
        with contextlib.suppress(Exception):
            await self.run_store(self.persist_last_use)
        if self.request_logger is not None:
            await asyncio.to_thread(self.request_logger.close)
        if self._store is not None and self.persistent:
            await self.run_store(self._store.close)
            self._store = None
        if self._store_executor is not None:
            self._store_executor.shutdown(wait=False)
            self._store_executor = None

    async def _periodic(self) -> None:
        wake = self._wake
        outage = False
        while True:
            if wake is None:
                await asyncio.sleep(self.sync_interval)
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.sync_interval)
                wake.clear()
            if self.metrics is not None:
                self.metrics.flush()
            try:
                await self.refresh()
                if time.monotonic() - self._last_touch >= self.touch_interval:
                    await self.run_store(self.persist_last_use)
                if outage:
                    logger.warning("state store reachable again; synced")
                    outage = False
            except StoreBusyError as exc:  # one line per outage, not one per tick
                if not outage:
                    logger.warning("state sync paused: %s", exc.message)
                outage = True
            except Exception:
                logger.exception("state sync failed")

    # -- syncing ------------------------------------------------------------------------

    def sync(self, *, force: bool = False) -> bool:
        """Apply the store to the registry if another connection changed it (or ``force``).

        :return: whether the registry was reconciled.
        """
        read = self._read_changes(force)
        if read is None:
            return False
        self._reconcile(*read)
        return True

    def _reconcile(
        self, models: list[dict[str, Any]], versions: list[tuple[str, dict[str, Any]]]
    ) -> None:
        with self.registry.lock:
            self._reconcile_locked(models, versions)

    def _reconcile_locked(
        self, models: list[dict[str, Any]], versions: list[tuple[str, dict[str, Any]]]
    ) -> None:
        reg = self.registry
        stored = {rec["name"]: rec for rec in models}
        by_model: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in stored}
        for model, rec in versions:
            if model in by_model:
                by_model[model][rec["name"]] = rec
        for name in list(reg.models):
            if name not in stored and not (self.shared and reg.models[name].ephemeral):
                for v in reg.models.pop(name).versions.values():
                    self._drop(v)
        for name, rec in stored.items():
            m = reg.models.get(name)
            if m is not None and self.shared and m.ephemeral:
                continue  # this process's command-line model shadows a shared one
            if m is None:
                m = reg.models[name] = Model(name=name)
                m.create_time = parse_rfc3339(rec.get("createTime")) or m.create_time
            m.description = rec.get("description") or ""
            m.labels = dict(rec.get("labels") or {})
            m.extra = dict(rec.get("extra") or {})
            m.etag = rec.get("etag") or m.etag
            m.ephemeral = bool(rec.get("ephemeral"))
            wanted = by_model[name]
            for vname in list(m.versions):
                local = m.versions[vname]
                vrec = wanted.get(vname)
                if vrec is None or vrec.get("createTime") != rfc3339(local.create_time):
                    del m.versions[vname]
                    self._drop(local)
            for vname, vrec in wanted.items():
                known = m.versions.get(vname)
                if known is None:
                    new = m.versions[vname] = version_from_record(name, vrec)
                    new.report_local = self.shared
                    self._schedule_load(new)
                else:
                    apply_version_record(known, vrec)
            m.default_version = rec.get("defaultVersion")

    def _drop(self, v: Version) -> None:
        loading = self._loading.pop((v.model, v.name), None)
        if loading is not None:
            loading.cancel()
            self._keep(loading)  # until its cancellation has run
        if v.pipeline is not None:
            with contextlib.suppress(RuntimeError):  # no running loop (tests)
                self._keep(asyncio.get_running_loop().create_task(v.pipeline.aclose()))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a reference to a background task until it ends (the loop keeps weak ones)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- loading ------------------------------------------------------------------------

    def _schedule_load(self, v: Version) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loading[(v.model, v.name)] = loop.create_task(self._load(v))

    async def _load(self, v: Version) -> None:
        load = functools.partial(
            self.registry.load_version, v, state_dir=self.state_dir, confined=True
        )
        with contextlib.suppress(Exception):  # the version records its own FAILED state
            await asyncio.get_running_loop().run_in_executor(None, load)
        try:
            read = await self.run_store(self._finish_load, v)
            if read is not None:
                self._reconcile(*read)
        except Exception:
            logger.exception("could not record the load of %s/%s", v.model, v.name)
        finally:
            if self._loading.get((v.model, v.name)) is asyncio.current_task():
                del self._loading[(v.model, v.name)]

    def _finish_load(
        self, v: Version
    ) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]] | None:
        """Record READY/FAILED in the store (if still CREATING) and finish operations.

        Runs in the store's thread; returns the re-read tables for the caller to apply.
        """
        store = self.store
        now = rfc3339(time.time())
        with store.transaction() as tx:
            rec = store.get_version(v.model, v.name, tx)
            if rec is None or rec.get("createTime") != rfc3339(v.create_time):
                return None  # deleted (or deleted and re-created) while loading
            if rec.get("state") == CREATING:
                rec.update(
                    state=v.state,
                    errorMessage=v.error_message,
                    detectedFramework=v.framework_api_name,
                )
                store.put_version(v.model, rec, tx)
            apply_version_record(v, rec)
            model = store.get_model(v.model, tx) or {}
            is_default = model.get("defaultVersion") == v.name
            for op in store.pending_operations(v.model, v.name, tx):
                project = op.get("_project", "-")
                resource = version_resource(project, v.model, rec, is_default=is_default)
                op["done"] = True
                op["metadata"]["endTime"] = now
                op["metadata"]["version"] = resource
                if rec["state"] == FAILED:
                    op["error"] = {"code": 3, "message": rec.get("errorMessage") or "failed"}
                else:
                    op["response"] = {"@type": VERSION_TYPE, **resource}
                store.put_operation(op, tx)
        return self._read_changes(True)

    async def resolve(self, model: str, version: str | None) -> Version:
        """Slow path of predict when the fast lookup failed: sync, or wait for a local load.

        :raises NotFoundError: still unknown after a sync.
        """
        await self.refresh()  # cheap when nothing changed (see StateStore.changed_since)
        v = self.registry.version(model, version)
        if v.state == CREATING and v.shared_state == READY:
            task = self._loading.get((v.model, v.name))
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), LOCAL_LOAD_WAIT)
        return v

    # -- lastUseTime --------------------------------------------------------------------

    def persist_last_use(self) -> None:
        """Write the ``lastUseTime`` of versions used since the last call (one transaction)."""
        self._last_touch = time.monotonic()
        items: list[tuple[str, str, str]] = []
        for m in list(self.registry.models.values()):
            for v in list(m.versions.values()):
                t = v.last_use_time
                key = (v.model, v.name)
                if t is not None and self._touched.get(key) != t:
                    self._touched[key] = t
                    items.append((v.model, v.name, rfc3339(t) or ""))
        self.store.touch_versions(items)
