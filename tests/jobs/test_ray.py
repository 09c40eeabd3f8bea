"""Ray Data jobs and Ray Serve serving on a local Ray started once for this module.

Bounded: one ``ray.init(num_cpus=2)`` (no dashboard) for the module, a few seconds per
application, and the whole cluster shut down in the fixture's teardown. Skipped when the
``ray`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

from predictor_runtime.jobs import JobSpec, ModelRef, make_plan, run_job

pytestmark = [
    pytest.mark.slow,
    # Ray's own modules warn on import (pydantic v1 API, deprecated config fields)
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.timeout(240),
]

DOUBLER = '''
class Doubler:
    """Doubles numbers; records nothing (runs inside Ray actors and replicas)."""

    def predict(self, instances, **kwargs):
        return [[2 * v for v in row] for row in instances]

    @classmethod
    def from_path(cls, model_dir):
        return cls()
'''


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def doubler(tmp_path_factory: pytest.TempPathFactory) -> ModelRef:
    root = tmp_path_factory.mktemp("doubler")
    (root / "pkg").mkdir()
    (root / "pkg" / "doubler.py").write_text(textwrap.dedent(DOUBLER))
    (root / "model").mkdir()
    return ModelRef(
        str(root / "model"), prediction_class="doubler.Doubler", packages=[str(root / "pkg")]
    )


def results(out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob("prediction.results-*")):
        rows.extend(json.loads(line) for line in f.read_text().splitlines())
    return rows


def test_ray_data_job_matches_local_job(ray_cluster, doubler, tmp_path: Path) -> None:
    from predictor_runtime.jobs.ray_data import actor_cpus, run_on_ray

    for k in range(3):
        (tmp_path / f"in-{k}.jsonl").write_text(
            "".join(json.dumps([k, i]) + "\n" for i in range(500)) + "not json\n"
        )
    inputs = [str(tmp_path / "in-*.jsonl")]
    spec = JobSpec(inputs, str(tmp_path / "ray"), batch_size=64, workers=2)
    result = run_on_ray(spec, make_plan(spec), doubler, address="ignored: already connected")
    assert (result.predictions, result.errors, result.shards) == (1500, 3, 3)
    local = run_job(JobSpec(inputs, str(tmp_path / "local"), batch_size=64), model=doubler)
    assert local.predictions == 1500
    got = results(tmp_path / "ray")
    assert got == results(tmp_path / "local")
    assert got[1] == {"instance": [0, 1], "prediction": [0, 2]}
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir()
    )
    # two actors on 2 CPUs leave a CPU free for Ray Data's tasks (no deadlock)
    assert actor_cpus(2) == 0.5 and actor_cpus(1) == 1.0
    assert ray_cluster.is_initialized()  # joined, not started: left running


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ray_serve_app_serves_the_http_api_on_replicas(ray_cluster, doubler, tmp_path) -> None:
    import httpx
    from ray import serve

    from predictor_runtime.deploy.ray_serve import build_app
    from predictor_runtime.server.main import ServeConfig

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ServeConfig(
        model_dir=doubler.model_dir,
        model_name="double",
        prediction_class="doubler.Doubler",
        packages=list(doubler.packages),
        state_dir=str(tmp_path / "state"),
    )
    app = build_app(config, manual_scaling={"nodes": 2}, num_cpus=0.5)
    serve.run(app, name="predictor-runtime", route_prefix="/")
    try:
        status = serve.status().applications["predictor-runtime"]
        replicas = status.deployments["PredictorRuntime"].replica_states
        assert replicas.get("RUNNING") == 2
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/v1/models/double:predict", json={"instances": [[1, 2], [3, 4]]})
            assert r.status_code == 200 and r.json() == {"predictions": [[2, 4], [6, 8]]}
            r = http.post("/v1/models/nope:predict", json={"instances": [[1]]})
            assert r.status_code == 404 and "error" in r.json()
            assert http.get("/readyz").status_code == 200
            models = http.get("/v1/projects/p/models").json()["models"]
            assert [m["name"] for m in models] == ["projects/p/models/double"]
    finally:
        serve.delete("predictor-runtime")
