"""The one place that decides the state directory.

Everything the runtime keeps on disk lives under it: ``state.sqlite3`` and
``request_logs.sqlite3`` of ``serve``, the trained bundled example, the package cache of
installed wheels and sdists (``predict`` and ``serve`` alike), and later batch-job
outputs. An explicit ``--state-dir`` wins; otherwise ``PREDICTOR_RUNTIME_STATE_DIR``;
otherwise ``./.predictor_runtime``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the state directory when ``--state-dir`` is not given.
STATE_DIR_ENV = "PREDICTOR_RUNTIME_STATE_DIR"
#: The state directory when neither ``--state-dir`` nor the environment names one.
DEFAULT_STATE_DIR = ".predictor_runtime"


def state_dir(explicit: str | Path | None = None) -> Path:
    """``explicit`` if given, else ``$PREDICTOR_RUNTIME_STATE_DIR``, else the default."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
