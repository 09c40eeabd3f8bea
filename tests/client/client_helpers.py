"""Helpers for the client tests: a real ``serve`` subprocess, model directories for it.

The server helpers come from ``tests/server/conftest.py`` (loaded under another module
name, so both conftest files stay independent).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "_server_fixtures", HERE.parent / "server" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
server_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = server_fixtures
_spec.loader.exec_module(server_fixtures)
CliServer = server_fixtures.CliServer
start_cli_server = server_fixtures.start_cli_server


def write_model(root: Path, name: str, **config: Any) -> tuple[Path, Path]:
    """A model directory (``config.json`` = ``config``) and the package dir with the predictor."""
    pkg = root / "pkg"
    if not pkg.exists():
        pkg.mkdir(parents=True)
        shutil.copy(HERE / "client_predictors.py", pkg / "client_predictors.py")
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir, pkg


def version_body(name: str, model_dir: Path, pkg: Path) -> dict[str, Any]:
    """A Version body for the ``Echo`` predictor in ``model_dir``."""
    return {
        "name": name,
        "deploymentUri": str(model_dir),
        "predictionClass": "client_predictors.Echo",
        "packageUris": [str(pkg)],
    }


def stop(server: Any) -> None:
    """Stop a CLI server and close its pipes."""
    try:
        server.stop(timeout=20)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)
        for stream in (server.proc.stdout, server.proc.stderr):
            if stream is not None:
                stream.close()


def start_echo_server(root: Path, *extra: str) -> Any:
    """``serve`` with model ``echo`` (default version ``v1``) and its state under ``root``."""
    model_dir, pkg = write_model(root, "echo_v1", slow_seconds=1.5)
    return start_cli_server(
        [
            "--model-dir", str(model_dir),
            "--model-name", "echo",
            "--prediction-class", "client_predictors.Echo",
            "--package", str(pkg),
            "--state-dir", str(root / "state"),
            *extra,
        ],
        cwd=root,
    )  # fmt: skip


def requests_counted(model: str, version: str, code: int, url: str) -> float:
    """``predictor_requests_total`` for one model/version/status from the server's metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("predictor_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if (labels.get("model"), labels.get("version"), labels.get("code")) == (
            model,
            version,
            str(code),
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total
