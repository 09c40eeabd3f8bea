"""``--allow-paths``: confine the paths callers name (model dirs, packages, task urls, job
files) to a few folders.

:func:`check_allowed` is the one check every protocol uses: it resolves the path
(symlinks included, so a link inside an allowed folder cannot point outside it) and
refuses it with a 400 ``INVALID_ARGUMENT`` that names the rule, never the refused path or
its content.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import PredictorRuntimeError


class PathNotAllowedError(PredictorRuntimeError):
    """A caller-named path lies outside every ``--allow-paths`` folder (400)."""

    status = 400


def check_allowed(
    path: str | os.PathLike[str], allow_paths: Sequence[str], *, what: str = "path"
) -> Path:
    """The resolved ``path``, if it lies inside one of ``allow_paths`` (or none is set).

    :param what: how the path is named in the refusal (``url``, ``deploymentUri``...).
    :raises PathNotAllowedError: outside every allowed folder.
    """
    resolved = Path(path).expanduser().resolve()
    if not allow_paths:
        return resolved
    for root in allow_paths:
        base = Path(root).expanduser().resolve()
        if resolved == base or resolved.is_relative_to(base):
            return resolved
    raise PathNotAllowedError(
        f"{what}: the path is outside the folders this server allows (--allow-paths)"
    )


__all__ = ["PathNotAllowedError", "check_allowed"]
