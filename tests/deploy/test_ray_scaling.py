"""AI Platform scaling fields -> Ray Serve deployment options (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

from predictor_runtime.deploy.ray_serve import scaling_options, stored_scaling
from predictor_runtime.server.store import Store


def test_manual_and_auto_scaling_map_to_serve_options() -> None:
    assert scaling_options({"nodes": 3}) == {"num_replicas": 3}
    assert scaling_options(None, None, default_replicas=2) == {"num_replicas": 2}
    auto = scaling_options(None, {"minNodes": 1, "maxNodes": 4})["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 4)
    assert auto["upscale_delay_s"] <= 5  # Serve's 30 s default would not react in time
    zero = scaling_options(None, {"minNodes": 0})["autoscaling_config"]
    assert (zero["min_replicas"], zero["max_replicas"], zero["initial_replicas"]) == (0, 1, 1)


def test_stored_versions_decide_the_app_scaling(tmp_path: Path) -> None:
    assert stored_scaling(str(tmp_path), 2) == {"num_replicas": 2}
    store = Store(tmp_path)
    store.put_version("m", {"name": "a", "manualScaling": {"nodes": 3}})
    store.put_version("m", {"name": "cli", "manualScaling": {"nodes": 9}, "ephemeral": True})
    store.close()
    assert stored_scaling(str(tmp_path), 1) == {"num_replicas": 3}
    store = Store(tmp_path)
    store.put_version("m", {"name": "b", "autoScaling": {"minNodes": 2, "maxNodes": 5}})
    store.close()
    auto = stored_scaling(str(tmp_path), 1)["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (2, 5)


def test_ray_address_flags_reach_the_ray_code_paths(tmp_path: Path) -> None:
    """Without Ray importable, both commands say what to install, in one line."""
    import os

    from predictor_runtime.testing import run_cli

    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('no Ray here')\n")
    path = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    served = run_cli("serve", "--ray-address", "local", "--port", "0", cwd=tmp_path, env=env)
    assert served.returncode == 1
    assert served.stderr.startswith("error: --ray-address needs Ray (no Ray here)")
    (tmp_path / "in.jsonl").write_text("[1]\n")
    (tmp_path / "m").mkdir()
    args = ["--model-dir", "m", "--input", "in.jsonl", "--output", "out", "--ray-address", "auto"]
    batch = run_cli("batch-predict", *args, cwd=tmp_path, env=env)
    assert batch.returncode == 1
    assert batch.stderr.startswith("error: --ray-address needs Ray (no Ray here)")
    assert not (tmp_path / "out").exists()  # refused before touching the output
