"""Helpers for testing predictors and framework plugins the way predictor-runtime tests its own.

For a plugin author::

    from predictor_runtime import testing

    def test_my_framework(tmp_path):
        train_tiny_model_into(tmp_path)
        pm = testing.plugin_manager(my_plugin_module)        # only built-ins + yours
        status, body = testing.predict(tmp_path, [[1.0, 2.0]], pm=pm)
        assert status == 200 and body["predictions"] == [...]

        proc = testing.run_cli("predict", "--model-dir", str(tmp_path),
                               "--json-instances", str(instances_file))
        assert proc.returncode == 0

Every helper goes through the real loader, dispatcher and command line; nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pluggy

from . import codecs
from .dispatcher import DEFAULT_MAX_BATCH_SIZE, DecodeRule
from .errors import PredictorRuntimeError
from .loader import LoadedModel, load_model
from .plugins import get_plugin_manager

__all__ = ["load", "plugin_manager", "predict", "run_cli"]


def plugin_manager(*plugins: object, load_entrypoints: bool = False) -> pluggy.PluginManager:
    """A fresh plugin manager: the built-in plugins plus ``plugins`` (modules or objects).

    Installed entry points are left out unless ``load_entrypoints`` is True, so a test
    sees exactly the frameworks it names.
    """
    pm = get_plugin_manager(load_entrypoints=load_entrypoints)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def load(
    model_dir: str | Path, *, pm: pluggy.PluginManager | None = None, **options: Any
) -> LoadedModel:
    """Load ``model_dir`` like the CLI does (``framework=``, ``prediction_class=``...)."""
    return load_model(model_dir, pm=pm, **options)


def predict(
    model: str | Path | LoadedModel,
    instances: Sequence[Any],
    *,
    pm: pluggy.PluginManager | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    decode_b64: DecodeRule = "auto",
    load_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    """One predict request through the real dispatcher: ``(HTTP status, response JSON)``.

    ``model`` is a model directory (loaded with ``load_options``) or a loaded model;
    ``kwargs`` become the request's other top-level keys.
    """
    from .pipeline import Pipeline

    loaded = model if isinstance(model, LoadedModel) else load(model, pm=pm, **(load_options or {}))
    pipeline = Pipeline(loaded, max_batch_size=max_batch_size, decode_b64=decode_b64)
    request = orjson.dumps({"instances": list(instances), **kwargs})

    async def call(p: Pipeline) -> tuple[int, bytes]:
        try:
            return 200, await p.predict_body(request)
        except PredictorRuntimeError as exc:
            return exc.status, codecs.error_body(exc.message)

    status, body = pipeline.run(call)
    return status, orjson.loads(body)


def run_cli(
    *args: str,
    stdin: str | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m predictor_runtime ARGS`` in a subprocess and capture its output.

    ``env`` replaces the environment (default: this process's).
    """
    return subprocess.run(
        [sys.executable, "-m", "predictor_runtime", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )
