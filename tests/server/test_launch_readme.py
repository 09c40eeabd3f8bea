"""The README's Launch example without Launch's client runs as written (against ``serve``)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import start_cli_server

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_async_task_example(tmp_path: Path):
    section = README.read_text().split("## Launch-style tasks", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    (code,) = [b for b in blocks if 'BASE = "http://127.0.0.1:8080"' in b]
    srv = start_cli_server(["--state-dir", str(tmp_path / "state")], tmp_path, timeout=120)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace("http://127.0.0.1:8080", srv.url), "README", "exec"), {})
    finally:
        srv.stop()
        srv.close()
    assert out.getvalue().strip() == "{'result': {'predictions': ['versicolor']}}"
