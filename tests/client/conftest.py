"""Fixtures for the client tests: one ``serve`` subprocess per module, model directories."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_helpers import start_echo_server, stop, write_model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``serve`` subprocess per test module, serving model ``echo``."""
    root = tmp_path_factory.mktemp("client_server")
    srv = start_echo_server(root)
    srv.root = root
    try:
        yield srv
    finally:
        stop(srv)


@pytest.fixture
def model_factory(server: Any, tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Write a model directory for ``create_version`` (``config.json`` from keywords)."""

    def make(name: str, **config: Any) -> tuple[Path, Path]:
        return write_model(tmp_path, name, **config)

    return make
