"""The README's V2 example runs as written against the Quick start's server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tritonclient.http")

README = Path(__file__).resolve().parents[2] / "README.md"


def v2_example() -> str:
    text = README.read_text()
    section = text.split("## Open Inference Protocol V2", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_readme_tritonclient_example(cli_server: Any, tmp_path: Path) -> None:
    code = v2_example()
    assert "127.0.0.1:8080" in code
    srv = cli_server(["--state-dir", str(tmp_path / "state")])  # the bundled iris example
    try:
        code = code.replace("127.0.0.1:8080", srv.url.removeprefix("http://"))
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["custom", "[b'setosa' b'virginica']"]
    finally:
        assert srv.stop() == 0
