"""Helpers of the Launch tests: a model dir for the test predictor, an SSE reader, polling."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
LAUNCH = ["--prediction-class", "launch_predictor.LaunchPredictor"]


def launch_model(root: Path, **config: Any) -> list[str]:
    """Write the test predictor's package and model dir under ``root``; ``serve`` args."""
    pkg = root / "pkg"
    pkg.mkdir(parents=True, exist_ok=True)
    for name in ("launch_predictor.py", "echo_predictor.py"):
        shutil.copy(HERE / name, pkg / name)
    model_dir = root / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config))
    return ["--model-dir", str(model_dir), "--package", str(pkg), *LAUNCH]


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse Server-Sent Events as Launch's client does (``data:`` lines, blank line ends)."""
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield json.loads("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    if data:
        yield json.loads("\n".join(data))


def wait_task(
    client: httpx.Client, task_id: str, timeout: float = 30, until: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Poll ``GET /v1/async-tasks/{id}`` until it finished (or a custom condition)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/async-tasks/{task_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("SUCCESS", "FAILURE") and all(body.get(k) for k in until):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def wait_for(condition: Any, timeout: float = 10, message: str = "") -> None:
    """Wait until ``condition()`` is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message or "condition not met in time"
        time.sleep(0.01)
