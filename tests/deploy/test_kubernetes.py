"""The example Kubernetes manifests parse and agree with each other and with the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from predictor_runtime.cli import build_parser
from predictor_runtime.server.main import ServeConfig

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def docs(name: str) -> dict[str, dict[str, Any]]:
    with open(K8S / name) as fh:
        return {d["kind"]: d for d in yaml.safe_load_all(fh) if d}


def test_serve_deployment_service_and_state_volume() -> None:
    found = docs("predictor-runtime.yaml")
    assert set(found) == {"PersistentVolumeClaim", "Deployment", "Service"}
    pvc, dep, svc = found["PersistentVolumeClaim"], found["Deployment"], found["Service"]
    assert pvc["spec"]["resources"]["requests"]["storage"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert dep["apiVersion"] == "apps/v1"
    assert dep["spec"]["strategy"]["type"] == "Recreate"  # one RWO volume, one pod at a time
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])  # the CLI accepts them as written
    assert args.command == "serve" and args.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == args.port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("http", args.port)
    assert svc["spec"]["ports"][0]["targetPort"] in ("http", args.port)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state_volume = next(n for n, p in mounts.items() if p == args.state_dir)
    claim = volumes[state_volume]["persistentVolumeClaim"]["claimName"]
    assert claim == pvc["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] > args.graceful_timeout


def test_rayservice_points_at_the_app_builder() -> None:
    found = docs("rayservice.yaml")
    svc = found["RayService"]
    assert svc["apiVersion"] == "ray.io/v1"
    config = yaml.safe_load(svc["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    module_name, attr = app["import_path"].split(":")
    import importlib

    builder = getattr(importlib.import_module(module_name), attr)
    assert list(inspect.signature(builder).parameters) == ["args"]
    extra = {"manualScaling", "autoScaling", "num_cpus"}
    assert set(app["args"]) <= set(ServeConfig.__dataclass_fields__) | extra
    auto = app["args"]["autoScaling"]
    assert 1 <= auto["minNodes"] <= auto["maxNodes"]
    cluster = svc["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert any(p["containerPort"] == 8000 for p in head["ports"])  # Serve's HTTP proxy
    workers = cluster["workerGroupSpecs"][0]
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]


def test_dockerfile_entrypoint_runs_the_cli() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "predictor_runtime"]' in text
    assert "[ray]" in text and "plugins/sklearn" in text
