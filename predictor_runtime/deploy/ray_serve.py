"""``serve --ray-address``: the same HTTP API as a Ray Serve application.

Extra ``predictor-runtime[ray]``; Ray is imported only inside these functions. Each
replica runs the library's own ASGI app (:class:`~predictor_runtime.server.app.App`):
it loads the model, keeps its own adaptive batcher and state connection, and answers
every route (predict, management, jobs, health); Ray Serve adds replicas and routing
only. Replica count: a version's ``manualScaling.nodes``; autoscaling bounds: its
``autoScaling.minNodes`` / ``maxNodes`` (see :func:`scaling_options`).

Ray Serve's proxy costs milliseconds per request (``README.md``, "Scaling out"): on one
machine ``serve --workers N`` is faster; Ray earns its keep across several machines.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ..server.main import ServeConfig
from ..statedir import state_dir as resolve_state_dir

APP_NAME = "predictor-runtime"
#: in-flight requests per replica; at least the batcher's useful batch of requests
#: (Serve's default of 5 starves the batcher: ray_check.md section 3).
MAX_ONGOING_REQUESTS = 64


def scaling_options(
    manual_scaling: dict[str, Any] | None = None,
    auto_scaling: dict[str, Any] | None = None,
    default_replicas: int = 1,
) -> dict[str, Any]:
    """Ray Serve deployment options from AI Platform scaling fields.

    ``autoScaling`` ``{"minNodes": a, "maxNodes": b}`` -> autoscaling between ``a`` and
    ``b`` replicas (with delays short enough to react within seconds; Serve's defaults
    wait about 40 s); ``manualScaling`` ``{"nodes": n}`` -> ``n`` replicas; neither ->
    ``default_replicas``.
    """
    if auto_scaling:
        low = max(0, int(auto_scaling.get("minNodes") or 0))
        high = max(1, low, int(auto_scaling.get("maxNodes") or 0) or max(low, default_replicas))
        return {
            "autoscaling_config": {
                "min_replicas": low,
                "max_replicas": high,
                "initial_replicas": max(low, 1),
                "target_ongoing_requests": 8,
                "upscale_delay_s": 2.0,
                "downscale_delay_s": 60.0,
                "look_back_period_s": 5.0,
            }
        }
    nodes = (manual_scaling or {}).get("nodes")
    return {"num_replicas": max(1, int(nodes or default_replicas))}


def stored_scaling(state_dir: str, default_replicas: int) -> dict[str, Any]:
    """Scaling of the app from the versions stored under ``state_dir`` (API-created).

    Every replica serves every version, so the app takes the largest request: the most
    ``manualScaling.nodes`` (at least ``default_replicas``, i.e. ``--workers``), or
    autoscaling bounds spanning every version's ``autoScaling``.
    """
    manual = {"nodes": default_replicas}
    autos: list[dict[str, Any]] = []
    path = Path(state_dir) / "state.sqlite3"
    if path.is_file():
        from ..server.store import Store

        store = Store(state_dir)
        try:
            for _model, rec in store.versions():
                if rec.get("ephemeral"):
                    continue
                if rec.get("autoScaling"):
                    autos.append(rec["autoScaling"])
                nodes = (rec.get("manualScaling") or {}).get("nodes") or 0
                manual["nodes"] = max(manual["nodes"], int(nodes))
        finally:
            store.close()
    if autos:
        low = max(int(a.get("minNodes") or 0) for a in autos)
        high = max([int(a.get("maxNodes") or 0) for a in autos] + [manual["nodes"], low, 1])
        return scaling_options(None, {"minNodes": low, "maxNodes": high}, default_replicas)
    return scaling_options(manual, None, default_replicas)


def _absolute(config: ServeConfig) -> ServeConfig:
    """Paths made absolute: replicas do not share the driver's working directory."""
    state_dir = str(resolve_state_dir(config.state_dir).resolve())
    model_dir = str(Path(config.model_dir).resolve()) if config.model_dir else None
    packages = [str(Path(p).resolve()) if os.path.exists(p) else p for p in config.packages]
    return replace(config, state_dir=state_dir, model_dir=model_dir, packages=packages)


def build_app(
    config: ServeConfig,
    *,
    manual_scaling: dict[str, Any] | None = None,
    auto_scaling: dict[str, Any] | None = None,
    num_cpus: float = 1.0,
) -> Any:
    """A Ray Serve application (``serve.run`` it) serving ``config``'s model and state.

    :param manual_scaling: AI Platform ``manualScaling`` (``{"nodes": n}``).
    :param auto_scaling: AI Platform ``autoScaling`` (``{"minNodes", "maxNodes"}``).
    :param num_cpus: CPUs reserved per replica.
    """
    from ray import serve

    config = _absolute(config)

    class PredictorRuntimeReplica:
        """One replica: the model, its batcher and the whole HTTP API."""

        def __init__(self, cfg: ServeConfig) -> None:
            from predictor_runtime.server.main import prepare_app

            state_dir = str(resolve_state_dir(cfg.state_dir))
            build, _ = prepare_app(cfg, state_dir, "", None)
            self._app = build()

        def __serve_build_asgi_app__(self) -> Any:
            return self._app

    ingress = serve.ingress()(PredictorRuntimeReplica)
    options = scaling_options(manual_scaling, auto_scaling, config.server.workers)
    deployment = serve.deployment(
        ingress,
        name="PredictorRuntime",
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": num_cpus},
        **options,
    )
    return deployment.bind(config)  # type: ignore[attr-defined]


def app_builder(args: dict[str, Any]) -> Any:
    """Application builder for a Serve config file / KubeRay ``RayService``.

    ``import_path: predictor_runtime.deploy.ray_serve:app_builder`` with ``args`` such as
    ``{"model_dir": "/models/iris", "model_name": "iris", "state_dir": "/state",
    "manualScaling": {"nodes": 2}}`` (every :class:`ServeConfig` field is accepted).
    """
    args = dict(args or {})
    manual, auto = args.pop("manualScaling", None), args.pop("autoScaling", None)
    num_cpus = float(args.pop("num_cpus", 1.0))
    fields = set(ServeConfig.__dataclass_fields__)
    unknown = sorted(set(args) - fields)
    if unknown:
        raise ValueError(f"unknown app_builder args: {', '.join(unknown)}")
    config = ServeConfig(**args)
    config.validate()
    return build_app(config, manual_scaling=manual, auto_scaling=auto, num_cpus=num_cpus)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_on_ray(config: ServeConfig, out: TextIO) -> int:
    """``serve --ray-address ADDR``: deploy, print the URL, serve until SIGTERM/SIGINT."""
    from ..jobs.ray_data import connect
    from ..server.main import ServeError

    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ServeError(
            f"--ray-address needs Ray ({exc}); install 'predictor-runtime[ray]'"
        ) from exc
    address = config.options.ray_address or "local"
    config = _absolute(config)
    started = connect(address)
    host, port = config.server.host, config.server.port or _free_port(config.server.host)
    stop = threading.Event()
    try:
        serve.start(http_options={"host": host, "port": port})
        scaling = stored_scaling(str(resolve_state_dir(config.state_dir)), config.server.workers)
        app = build_app(
            config,
            manual_scaling={"nodes": scaling["num_replicas"]}
            if "num_replicas" in scaling
            else None,
            auto_scaling=_as_aip(scaling.get("autoscaling_config")),
        )
        serve.run(app, name=APP_NAME, route_prefix="/")
        replicas = scaling.get("num_replicas") or scaling["autoscaling_config"]["max_replicas"]
        name = config.model_name if config.model_dir else "iris"
        out.write(
            f"Listening on http://{host}:{port} (Ray Serve at {address}, replicas: up to "
            f"{replicas}; predict: POST http://{host}:{port}/v1/models/{name}:predict)\n"
        )
        out.flush()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
    finally:
        if started:  # our own Ray: tear all of it down
            serve.shutdown()
            ray.shutdown()
        else:  # a shared cluster: remove only our application
            serve.delete(APP_NAME)
    return 0


def _as_aip(autoscaling: dict[str, Any] | None) -> dict[str, Any] | None:
    if not autoscaling:
        return None
    return {"minNodes": autoscaling["min_replicas"], "maxNodes": autoscaling["max_replicas"]}
