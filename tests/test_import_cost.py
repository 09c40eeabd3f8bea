"""Import cost: the core and plugin discovery import no machine-learning framework."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "xgboost", "tensorflow", "keras", "torch", "pandas", "joblib", "scipy")
HEAVY += ("psycopg",)  # the PostgreSQL driver: only with --state-url

PROBE = f"""
import json, sys
import predictor_runtime
from predictor_runtime.plugins import framework_registry
import predictor_runtime.dispatcher, predictor_runtime.cli
names = sorted(framework_registry().frameworks)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"frameworks": names, "heavy": heavy}}))
"""


def test_core_and_discovery_import_no_framework() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(proc.stdout)
    assert "custom" in result["frameworks"]
    assert result["heavy"] == []


SERVER_PROBE = r"""
import json, sys, tempfile
from predictor_runtime.plugins import framework_registry
from predictor_runtime.server import main
from predictor_runtime.server.app import App
from predictor_runtime.server.context import ServerOptionsView
from predictor_runtime.server.metrics import Metrics
from predictor_runtime.server.registry import BatchSettings, Registry
from predictor_runtime.server.state import ManagedState
framework_registry()
state_dir = tempfile.mkdtemp()
metrics = Metrics()
registry = Registry(BatchSettings(), on_batch=metrics.batch_hook)
state = ManagedState(registry, state_dir=state_dir, metrics=metrics)
state.prepare()
App(registry, metrics=metrics, state=state, options=ServerOptionsView(state_dir=state_dir))
before = sorted(m for m in ("numpy", "simdjson") if m in sys.modules)
package = tempfile.mkdtemp()
with open(package + "/constant_predictor.py", "w") as f:
    f.write("class Constant:\n"
            "    def predict(self, instances, **kwargs):\n"
            "        return [0.0] * len(instances)\n"
            "    @classmethod\n"
            "    def from_path(cls, model_dir):\n"
            "        return cls()\n")
version = registry.add_version("m", "v1", deployment_uri=package, package_uris=[package],
                               prediction_class="constant_predictor.Constant")
registry.load_version(version)
answer = version.dispatcher.predict_body(b'{"instances": [[1, 2]]}').decode()
served = sorted(m for m in ("numpy", "simdjson") if m in sys.modules)
from predictor_runtime import codecs
array = codecs.to_array([[1, 2]], n_features=2)
print(json.dumps({"before": before, "served": served, "answer": answer,
                  "after": type(array).__module__,
                  "rebound": codecs.np is sys.modules["numpy"]}))
"""


def test_server_start_up_imports_numpy_only_when_used() -> None:
    """Plugin discovery, the server's modules, the app with every route, and loading and
    serving a custom predictor that answers lists import neither numpy nor pysimdjson (a
    framework's import brings numpy); the first use does, and puts the real module in
    place of the stand-in."""
    proc = subprocess.run(
        [sys.executable, "-c", SERVER_PROBE], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result == {
        "before": [],
        "served": [],
        "answer": '{"predictions":[0.0]}',
        "after": "numpy",
        "rebound": True,
    }
