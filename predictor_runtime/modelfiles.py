"""Helpers for framework plugins that read model files: uniform load errors, pickles.

Kept free of framework imports: joblib is imported only when a pickle is actually read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ModelLoadError


def load_error(framework: str, model_dir: str, detail: str) -> ModelLoadError:
    """``Failed to load model: could not load the <framework> model in <dir>: <detail>``."""
    return ModelLoadError(
        f"Failed to load model: could not load the {framework} model in {model_dir}: {detail}"
    )


def load_pickle(path: Path, model_dir: str, framework: str) -> Any:
    """Unpickle ``path`` with joblib (which reads plain pickles too), with clear errors.

    :raises ModelLoadError: for an empty file, a missing module the pickle needs, or a file
        that cannot be unpickled; each names the file and the directory.
    """
    import joblib

    if path.stat().st_size == 0:
        raise load_error(framework, model_dir, f"{path.name} is empty")
    try:
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        raise load_error(
            framework,
            model_dir,
            f"{path.name} needs the Python module {exc.name!r}, which is not installed "
            "(install the library the model was saved with)",
        ) from exc
    except Exception as exc:
        raise load_error(
            framework,
            model_dir,
            f"{path.name} cannot be unpickled (not a joblib/pickle file, truncated, or saved "
            f"with incompatible library versions): {type(exc).__name__}: {exc}",
        ) from exc
