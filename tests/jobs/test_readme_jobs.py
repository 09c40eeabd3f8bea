"""The README's batch-predict example runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_batch_predict_block_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(# batch-predict example\n.*?)```", text, re.S)
    assert block is not None
    # `python` in the block is this interpreter (the venv's)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("batch-predict: 150 predictions, 0 errors (none), 1 shards")
    first = json.loads(lines[1])
    assert first == {"instance": [5.1, 3.5, 1.4, 0.2], "prediction": 0}
