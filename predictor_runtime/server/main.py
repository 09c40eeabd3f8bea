"""``serve``: flags -> registry with the loaded model -> running server.

With no model flags, serves the bundled iris example (a scikit-learn model behind an AI
Platform custom prediction routine), trained into ``<state-dir>/example/iris`` on first
use, so the first command a newcomer runs works. ``--example generative`` serves the
bundled generative example instead (a small word-level language model with embeddings,
learnt from the standard library's docstrings into ``<state-dir>/example/generative``).

Models and versions created through the API persist in ``<state-dir>/state.sqlite3`` (or
in the PostgreSQL database of ``--state-url``, shared with other processes) and are
restored (and reloaded in the background) at the next start. The command-line model is
*not* persisted: it is re-registered from the flags at every start (changes made to it
through the API last until the server stops); see :mod:`.state`.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..dispatcher import DEFAULT_MAX_BATCH_SIZE, DecodeRule
from ..errors import PredictorRuntimeError
from ..statedir import state_dir as resolve_state_dir
from .context import ServerOptionsView
from .defaults import DEFAULT_MAX_BATCH_DELAY_MS, DEFAULT_MODEL_NAME, DEFAULT_VERSION_NAME
from .runner import ServerOptions, bind_socket, enable_multiprocess_metrics, serve_forever
from .security import bind_warning

if TYPE_CHECKING:
    from .app import App

EXAMPLE_MODEL = "iris"
EXAMPLE_CLASS = "predictor.IrisPredictor"
GENERATIVE_MODEL = "generative"
GENERATIVE_CLASS = "wordlm.WordLMPredictor"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ServeError(PredictorRuntimeError):
    """A bad ``serve`` setting (the CLI prints it as one line and exits non-zero)."""


@dataclass
class ServeConfig:
    """Everything ``serve`` needs; mirrors its command-line flags."""

    model_dir: str | None = None
    model_name: str = DEFAULT_MODEL_NAME
    version_name: str = DEFAULT_VERSION_NAME
    framework: str | None = None
    prediction_class: str | None = None
    packages: list[str] = field(default_factory=list)
    #: None: ``$PREDICTOR_RUNTIME_STATE_DIR`` or ``./.predictor_runtime`` (see
    #: :mod:`predictor_runtime.statedir`).
    state_dir: str | None = None
    decode_b64: DecodeRule = "auto"
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_delay_ms: float = DEFAULT_MAX_BATCH_DELAY_MS
    server: ServerOptions = field(default_factory=ServerOptions)
    #: ``--signature-name``: the TensorFlow signature of requests that name none.
    signature_name: str | None = None
    #: a bundled example to serve (``iris``, ``generative``); iris when no model is given.
    example: str | None = None
    #: settings the protocol modules read (security, tasks, state, scale-out).
    options: ServerOptionsView = field(default_factory=ServerOptionsView)

    def validate(self) -> None:
        """Raise :class:`ServeError` naming the first bad setting."""
        s = self.server
        checks = [
            (s.workers >= 1, f"--workers must be at least 1, got {s.workers}"),
            (0 <= s.port <= 65535, f"--port must be 0..65535, got {s.port}"),
            (self.max_batch_size >= 1, f"--max-batch-size must be >= 1, got {self.max_batch_size}"),
            (
                self.max_batch_delay_ms >= 0,
                f"--max-batch-delay-ms must be >= 0, got {self.max_batch_delay_ms}",
            ),
            (
                s.max_request_bytes >= 1,
                f"--max-request-bytes must be >= 1, got {s.max_request_bytes}",
            ),
            (
                s.timeout_keep_alive > 0,
                f"--timeout-keep-alive must be > 0, got {s.timeout_keep_alive}",
            ),
            (s.timeout_headers > 0, f"--timeout-headers must be > 0, got {s.timeout_headers}"),
            (s.timeout_body > 0, f"--timeout-body must be > 0, got {s.timeout_body}"),
            (
                s.limit_concurrency is None or s.limit_concurrency >= 1,
                f"--limit-concurrency must be at least 1, got {s.limit_concurrency}",
            ),
            (bool(_NAME.match(self.model_name)), f"invalid --model-name {self.model_name!r}"),
            (bool(_NAME.match(self.version_name)), f"invalid --version-name {self.version_name!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ServeError(message)
        if self.options.state_url:
            from .store import check_state_url

            try:
                check_state_url(self.options.state_url)
            except ValueError as exc:
                raise ServeError(str(exc)) from None
        if self.example is not None and self.model_dir is not None:
            raise ServeError("--example serves a bundled model: drop --model-dir, or --example")
        if self.example not in (None, EXAMPLE_MODEL, GENERATIVE_MODEL):
            raise ServeError(f"unknown --example {self.example!r} (iris or generative)")
        if self.model_dir is None and (self.framework or self.prediction_class or self.packages):
            raise ServeError(
                "--framework, --prediction-class and --package need --model-dir "
                "(without any of them the bundled example is served)"
            )


def _trained(
    state_dir: str, name: str, is_trained: Callable[[Path], bool], train: Callable[[Path], object]
) -> str:
    """``<state_dir>/example/<name>``, trained into a temporary folder first if absent."""
    model_dir = Path(state_dir) / "example" / name
    if not is_trained(model_dir):
        tmp = model_dir.with_name(name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            train(tmp)
        except ImportError as exc:
            raise ServeError(
                f"the bundled {name} example needs scikit-learn to train ({exc}); install "
                "'predictor-runtime[example]' or pass --model-dir"
            ) from exc
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)
    return str(model_dir)


def example_model(state_dir: str) -> tuple[str, str]:
    """``(model_dir, package_dir)`` of the bundled iris example, trained if absent."""
    from ..examples.iris import train as iris_train

    def is_trained(d: Path) -> bool:
        return (d / "model.joblib").is_file() and (d / "preprocessor.pkl").is_file()

    package = str(Path(iris_train.__file__).resolve().parent)
    return _trained(state_dir, EXAMPLE_MODEL, is_trained, iris_train.train), package


def generative_model(state_dir: str) -> tuple[str, str]:
    """``(model_dir, package_dir)`` of the bundled generative example, trained if absent."""
    from ..examples.generative import wordlm

    package = str(Path(wordlm.__file__).resolve().parent)
    return _trained(state_dir, GENERATIVE_MODEL, wordlm.is_trained, wordlm.train), package


def serve(config: ServeConfig, out: TextIO | None = None) -> int:
    """Load the model, then serve until SIGTERM/SIGINT; returns the exit status."""
    out = out or sys.stdout
    config.validate()
    if config.options.ray_address:
        from ..deploy.ray_serve import serve_on_ray

        return serve_on_ray(config, out)
    opts = config.server
    state_dir = str(resolve_state_dir(config.state_dir))
    if config.options.state_url:
        check_database(config.options.state_url)
    metrics_dir = enable_multiprocess_metrics() if opts.workers > 1 else None
    try:
        try:
            sock = bind_socket(opts.host, opts.port, opts.backlog)
        except OSError as exc:
            raise ServeError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from exc
        with sock:
            return _serve_on(config, sock, state_dir, out)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def check_database(url: str) -> None:
    """Open (and migrate) the state database before loading any model: fail fast.

    :raises ServeError: one line naming the masked URL.
    """
    from .store import StoreUnavailableError, open_store

    try:
        open_store(None, url).close()
    except StoreUnavailableError as exc:
        raise ServeError(str(exc)) from None


def _serve_on(config: ServeConfig, sock: object, state_dir: str, out: TextIO) -> int:
    opts = config.server
    host, port = sock.getsockname()[:2]  # type: ignore[attr-defined]
    url_host = f"[{host}]" if ":" in host else host
    base = f"http://{url_host}:{port}"
    build_app, info = prepare_app(config, state_dir, base, out)

    def announce() -> None:
        if config.options.state_url:
            from .store import mask_url

            out.write(f"Shared state: {mask_url(config.options.state_url)}\n")
        what = "generate" if config.example == GENERATIVE_MODEL else "predict"
        out.write(
            f"Listening on {base} (workers: {opts.workers}; {what}: POST {info['predict_url']})\n"
        )
        out.flush()

    return serve_forever(build_app, sock, opts, announce)  # type: ignore[arg-type]


def prepare_app(
    config: ServeConfig, state_dir: str, base: str, out: TextIO | None
) -> tuple[Callable[[], App], dict[str, str]]:
    """Load the command-line model (or the example) and prepare the state store.

    Shared by ``serve`` and by each Ray Serve replica (:mod:`predictor_runtime.deploy`).

    :return: ``(build_app, info)``: a factory of the ASGI app and a few names for messages
        (``model``, ``predict_url``).
    """
    from .app import App
    from .metrics import Metrics
    from .registry import BatchSettings, Registry
    from .state import ManagedState
    from .store import StoreUnavailableError, mask_url
    from .store.base import scrub

    opts = config.server
    model_dir, model_name, prediction_class, packages = (
        config.model_dir,
        config.model_name,
        config.prediction_class,
        list(config.packages),
    )
    example = model_dir is None
    generative = config.example == GENERATIVE_MODEL
    if generative:
        model_dir, package = generative_model(state_dir)
        model_name, prediction_class, packages = GENERATIVE_MODEL, GENERATIVE_CLASS, [package]
    elif example:
        model_dir, package = example_model(state_dir)
        model_name, prediction_class, packages = EXAMPLE_MODEL, EXAMPLE_CLASS, [package]

    assert model_dir is not None
    metrics = Metrics()
    settings = BatchSettings(
        max_batch_size=config.max_batch_size,
        max_batch_delay_ms=config.max_batch_delay_ms,
        decode_b64=config.decode_b64,
    )
    registry = Registry(settings, on_batch=metrics.batch_hook)
    assert model_dir is not None  # given, or the example's
    version = registry.add_version(
        model_name,
        config.version_name,
        deployment_uri=str(Path(model_dir).resolve()),
        framework=config.framework,
        prediction_class=prediction_class,
        package_uris=packages,
    )
    if config.signature_name:
        version.default_kwargs = {"signature_name": config.signature_name}
    from ..plugins import plugin_manager

    plugin_manager()  # plugin discovery is the server's own start-up, not the model's
    load_started = time.perf_counter()
    registry.load_version(version, state_dir=state_dir)
    load_seconds = time.perf_counter() - load_started
    framework = version.dispatcher.model.framework if version.dispatcher else "?"
    predict_url = f"{base}/v1/models/{model_name}:predict"
    if generative:
        predict_url = f"{base}/v1beta/models/{model_name}:generateContent"
    if out is not None:
        if generative:
            out.write(
                f"Serving the bundled generative example: model {model_name} version "
                f"{version.name} (word-level language model and embeddings learnt from the "
                f"standard library's docstrings) from {model_dir}\n"
                f"Try: curl -s -X POST {predict_url} -d "
                '\'{"contents": [{"parts": [{"text": "Return the"}]}]}\'\n'
            )
        elif example:
            out.write(
                f"Serving the bundled example: model {model_name} version {version.name} "
                f"(iris classifier, custom prediction routine) from {model_dir}\n"
                f"Try: curl -s -X POST {predict_url} -d "
                "'{\"instances\": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}'\n"
            )
        else:
            out.write(
                f"Serving model {model_name} version {version.name} ({framework}) from "
                f"{model_dir} (framework import and model load: {load_seconds:.2f} s)\n"
            )
        out.flush()

    options = config.options
    state = ManagedState(
        registry, state_dir=state_dir, state_url=options.state_url, metrics=metrics
    )
    try:
        state.prepare()  # before any fork: migrates, then closes its connection
    except StoreUnavailableError as exc:
        raise ServeError(str(exc)) from None
    except Exception as exc:
        if options.state_url:
            where = f"the state database {mask_url(options.state_url)}"
            raise ServeError(f"cannot use {where}: {scrub(str(exc), options.state_url)}") from None
        raise ServeError(f"cannot use the state directory {state_dir}: {exc}") from exc

    options.state_dir = state_dir
    options.host = opts.host
    warning = bind_warning(opts.host, options.api_key)
    if warning:
        sys.stderr.write(warning)
        sys.stderr.flush()

    def build_app() -> App:
        return App(
            registry,
            metrics=metrics,
            max_request_bytes=opts.max_request_bytes,
            state=state,
            options=options,
        )

    return build_app, {"model": model_name, "predict_url": predict_url}
