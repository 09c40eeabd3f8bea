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
