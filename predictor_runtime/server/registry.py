"""The models and versions a server serves, with their state and predict pipelines.

Kept free of HTTP and of SQLite: :mod:`.state` mirrors the store into these objects
(and the management routes write the store), then :meth:`Registry.load_version` runs in
the background. Their API shapes are built in :mod:`.resources`.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..batching import Batcher, BatchHook
from ..dispatcher import DEFAULT_MAX_BATCH_SIZE, DecodeRule, Dispatcher
from ..errors import NotFoundError, NotReadyError, PredictorRuntimeError
from ..pipeline import Pipeline

CREATING = "CREATING"
READY = "READY"
FAILED = "FAILED"
DELETING = "DELETING"


def new_etag() -> str:
    """A fresh random etag (AI Platform's optimistic-concurrency token)."""
    return base64.b64encode(os.urandom(8)).decode()


def parse_rfc3339(text: str | None) -> float | None:
    """The inverse of :func:`rfc3339` (None stays None)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rfc3339(ts: float | None) -> str | None:
    """A POSIX time as RFC 3339 UTC with microseconds (``2024-01-02T03:04:05.123456Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class BatchSettings:
    """How versions batch: rows per model call, extra wait, b64 rule."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_delay_ms: float = 0.0
    decode_b64: DecodeRule = "auto"


@dataclass
class Version:
    """One model version: where it comes from, its state, and (once READY) its batcher."""

    model: str
    name: str
    deployment_uri: str
    framework: str | None = None
    prediction_class: str | None = None
    package_uris: list[str] = field(default_factory=list)
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: str = CREATING
    error_message: str = ""
    create_time: float = field(default_factory=time.time)
    last_use_time: float | None = None
    framework_api_name: str | None = None
    #: the predict pipeline once READY (None before).
    pipeline: Pipeline | None = None
    #: ``requestLoggingConfig`` (validated) or None; read once per predict request.
    request_logging_config: dict[str, Any] | None = None
    auto_scaling: dict[str, Any] | None = None
    manual_scaling: dict[str, Any] | None = None
    #: other AI Platform fields given at creation (runtimeVersion, machineType...), reported.
    extra: dict[str, Any] = field(default_factory=dict)
    #: changes when the settable content changes (a patch, setDefault), never on a
    #: state change or a restart.
    etag: str = field(default_factory=new_etag)
    #: request keys applied when a request does not give them (``serve --signature-name``).
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    #: registered from command-line flags (re-created at each start, not restored).
    ephemeral: bool = False
    #: state/error as recorded in the shared store (set when a store drives the registry);
    #: with several workers each loads its own copy, so the local ``state`` may lag.
    shared_state: str | None = None
    shared_error: str = ""
    #: report this process's ``state`` rather than the stored one (shared PostgreSQL state,
    #: where "state" is the answering process's view).
    report_local: bool = False

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The pipeline's dispatcher (None until loaded)."""
        return self.pipeline.dispatcher if self.pipeline is not None else None

    @property
    def batcher(self) -> Batcher | None:
        """The pipeline's batcher (None until loaded)."""
        return self.pipeline.batcher if self.pipeline is not None else None

    def ready(self) -> Pipeline:
        """The pipeline to predict with; :class:`NotReadyError` unless READY."""
        if self.state != READY or self.pipeline is None:
            detail = (
                f": {self.error_message}" if self.state == FAILED and self.error_message else ""
            )
            raise NotReadyError(
                f"Version {self.name} of model {self.model} is not ready (state {self.state}){detail}"
            )
        return self.pipeline


@dataclass
class Model:
    """A model: a name, its versions and which one is the default."""

    name: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    versions: dict[str, Version] = field(default_factory=dict)
    default_version: str | None = None
    create_time: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    etag: str = field(default_factory=new_etag)
    ephemeral: bool = False


class Registry:
    """Every model and version served; resolves predict targets.

    :param settings: batching settings applied to every version.
    :param on_batch: ``factory(model, version) -> hook`` for per-batch metrics.
    """

    def __init__(
        self,
        settings: BatchSettings | None = None,
        *,
        on_batch: Any = None,
    ) -> None:
        self.settings = settings or BatchSettings()
        self.models: dict[str, Model] = {}
        self._on_batch = on_batch
        self._lock = threading.RLock()
        #: ``--allow-paths`` for versions created through the API (set by the app).
        self.allow_paths: tuple[str, ...] = ()

    @property
    def lock(self) -> threading.RLock:
        """Held by every change to :attr:`models` and to a model's versions or default.

        Lookups do not take it (single dict reads are atomic in CPython): predict stays
        lock-free; writers (the command line, the store sync) hold it.
        """
        return self._lock

    # -- building ---------------------------------------------------------------------

    def add_model(self, name: str, *, description: str = "") -> Model:
        """Create (or return) model ``name``."""
        with self._lock:
            model = self.models.get(name)
            if model is None:
                model = self.models[name] = Model(name=name, description=description)
            return model

    def add_version(
        self,
        model: str,
        name: str,
        *,
        deployment_uri: str,
        framework: str | None = None,
        prediction_class: str | None = None,
        package_uris: list[str] | None = None,
        description: str = "",
    ) -> Version:
        """Register a version in state CREATING; the first version becomes the default."""
        m = self.add_model(model)
        with self._lock:
            if name in m.versions:
                raise PredictorRuntimeError(
                    f"Version {name} of model {model} already exists", status=409
                )
            version = Version(
                model=model,
                name=name,
                deployment_uri=deployment_uri,
                framework=framework,
                prediction_class=prediction_class,
                package_uris=list(package_uris or []),
                description=description,
            )
            m.versions[name] = version
            if m.default_version is None:
                m.default_version = name
            return version

    def load_version(
        self, version: Version, *, state_dir: str | None = None, confined: bool = False
    ) -> Version:
        """Load the version's model (blocking); READY on success, FAILED with the message.

        :param confined: a caller of the API named the paths: check them against
            :attr:`allow_paths` (again, in case of a restart or a swapped symlink) and keep
            folder listings out of error messages.
        """
        from ..loader import load_model
        from ..plugins import framework_registry
        from .paths import check_allowed, local_path

        try:
            model_dir = local_path(version.deployment_uri)
            packages = [local_path(p) for p in version.package_uris]
            if confined:
                allow = self.allow_paths
                model_dir = str(check_allowed(model_dir, allow, field="version.deploymentUri"))
                packages = [
                    str(check_allowed(p, allow, field=f"version.packageUris[{i}]"))
                    for i, p in enumerate(packages)
                ]
            loaded = load_model(
                model_dir,
                framework=version.framework,
                prediction_class=version.prediction_class,
                packages=packages,
                state_dir=state_dir,
                reveal_files=not confined,
            )
            self.attach(version, loaded)
        except PredictorRuntimeError as exc:
            version.error_message = exc.message
            version.state = FAILED
            raise
        except Exception as exc:
            version.error_message = f"{type(exc).__name__}: {exc}"
            version.state = FAILED
            raise
        try:
            version.framework_api_name = framework_registry().get(loaded.framework).api_name
        except PredictorRuntimeError:
            version.framework_api_name = None
        return version

    def attach(self, version: Version, loaded: Any) -> Version:
        """Make ``version`` READY with an already loaded model (a ``LoadedModel``)."""
        s = self.settings
        hook: BatchHook | None = None
        if self._on_batch is not None:
            hook = self._on_batch(version.model, version.name)
        version.pipeline = Pipeline(
            loaded,
            max_batch_size=s.max_batch_size,
            max_batch_delay_ms=s.max_batch_delay_ms,
            decode_b64=s.decode_b64,
            on_batch=hook,
            default_kwargs=version.default_kwargs,
        )
        version.error_message = ""
        version.state = READY
        return version

    # -- lookups ----------------------------------------------------------------------

    def model(self, name: str) -> Model:
        """Model ``name``; :class:`NotFoundError` if unknown."""
        model = self.models.get(name)
        if model is None:
            raise NotFoundError(f"Model not found: {name}")
        return model

    def version(self, model: str, name: str | None = None) -> Version:
        """Version ``name`` of ``model`` (its default when ``name`` is None)."""
        m = self.model(model)
        if name is None:
            name = m.default_version
            if name is None:
                raise NotFoundError(f"Model {model} has no default version")
        version = m.versions.get(name)
        if version is None:
            raise NotFoundError(f"Version not found: {name} (model {model})")
        return version

    def settled(self) -> bool:
        """True once every version is READY or FAILED (what ``/readyz`` reports)."""
        return all(
            v.state in (READY, FAILED) for m in self.models.values() for v in m.versions.values()
        )

    async def aclose(self) -> None:
        """Stop every version's batcher."""
        for m in self.models.values():
            for v in m.versions.values():
                if v.pipeline is not None:
                    await v.pipeline.aclose()
