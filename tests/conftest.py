"""Shared fixtures for the core tests: fresh plugin managers, user code on disk, the CLI."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

from predictor_runtime.plugins import get_plugin_manager
from predictor_runtime.testing import run_cli

__all__ = ["ECHO_PREDICTOR", "run_cli"]

_databases = itertools.count()

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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One real PostgreSQL server for the session (``initdb`` + ``pg_ctl`` in a temp dir).

    Skips only when the PostgreSQL binaries are not installed.
    """
    from predictor_runtime.testing_postgres import PostgresUnavailable, TempPostgres

    try:
        cluster = TempPostgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: object) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL (dropped afterwards)."""
    name = f"test_{next(_databases)}"
    url = pg_cluster.new_database(name)  # type: ignore[attr-defined]
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)  # type: ignore[attr-defined]
