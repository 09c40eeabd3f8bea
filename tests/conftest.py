"""Shared fixtures for the core tests: fresh plugin managers, user code on disk, the CLI."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest

from predictor_runtime.plugins import get_plugin_manager
from predictor_runtime.testing import run_cli

__all__ = ["ECHO_PREDICTOR", "run_cli"]

ECHO_PREDICTOR = '''
class EchoPredictor:
    """Returns each instance unchanged; records call sizes and kwargs in calls."""

    calls = []

    def __init__(self, model_dir):
        self.model_dir = model_dir

    def predict(self, instances, **kwargs):
        type(self).calls.append((len(instances), dict(kwargs)))
        return list(instances)

    @classmethod
    def from_path(cls, model_dir):
        return cls(model_dir)
'''


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A fresh plugin manager with only the built-in plugins (no entry points)."""
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def write_module(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``code`` as ``<name>.py`` into a fresh package folder; returns the folder."""
    folder = tmp_path / "code"
    folder.mkdir()

    def write(name: str, code: str) -> Path:
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
        return folder

    return write


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """An empty model directory."""
    path = tmp_path / "model"
    path.mkdir()
    return path
