"""The README's Python client examples run as written against ``serve`` (bundled iris)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import start_cli_server, stop

pytestmark = pytest.mark.slow  # a serve subprocess per module

README = Path(__file__).resolve().parents[2] / "README.md"


def client_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Python client", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("readme_iris")
    srv = start_cli_server(["--state-dir", str(root / "state")], cwd=root, timeout=120)
    try:
        yield srv
    finally:
        stop(srv)


def test_the_readme_has_three_client_examples():
    assert len(client_blocks()) == 3


@pytest.mark.parametrize("index", [0, 1, 2])
def test_readme_client_example_runs(iris, index, tmp_path):
    code = client_blocks()[index].replace("http://127.0.0.1:8080", iris.url)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if index == 0:
        assert lines[0] == "['versicolor', 'setosa']" and lines[1] == "['versicolor']"
        assert any("iris" in line for line in lines) and lines[-1].startswith("404 ")
    elif index == 1:
        assert lines == ["200 ['versicolor']"]
    else:
        assert "['versicolor']" in lines
