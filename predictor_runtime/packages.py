"""User code packages (``--package`` / a Version's ``packageUris``) made importable.

Accepted: a directory (put on ``sys.path``), a single ``.py`` file (its folder on
``sys.path``), a wheel, or a source distribution ``.tar.gz`` such as the AI Platform
custom-routine ones built from ``setup(name=..., scripts=["predictor.py"])``.

Wheels and sdists are installed with pip (``--no-deps``) into a cache under the state
directory, keyed by the archive's SHA-256, never into the user's site-packages; the
install's ``bin/`` folder goes on ``sys.path`` too, since AI Platform routines ship
their modules as ``scripts``. Dependencies of those packages must already be installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from .errors import UserCodeError
from .statedir import state_dir as resolve_state_dir

ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip")


#: Held while a version's packages are put on ``sys.path`` and its code is imported and
#: loaded: ``sys.path`` and ``sys.modules`` are process-wide, and versions load in
#: parallel threads (re-entrant: activation may happen inside a caller's hold).
ACTIVATION_LOCK = threading.RLock()


def default_state_dir() -> Path:
    """The state directory (see :func:`predictor_runtime.statedir.state_dir`)."""
    return resolve_state_dir()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_install(archive: Path, target: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        str(target),
    ]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.append("--no-build-isolation")  # no network needed for plain setuptools sdists
    cmd.append(str(archive))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        msg = f"User-provided package {archive.name} failed to install: {' '.join(tail)}"
        raise UserCodeError(msg)


def install_package(package: str | Path, cache_dir: Path) -> list[Path]:
    """Make one package importable; returns the folders that belong on ``sys.path``."""
    path = Path(package).expanduser()
    if not path.exists():
        raise UserCodeError(f"Package {str(package)!r} does not exist")
    path = path.resolve()
    if path.is_dir():
        return [path]
    if path.suffix == ".py":
        return [path.parent]
    if not path.name.endswith(ARCHIVE_SUFFIXES):
        msg = (
            f"Package {path.name!r} is not a directory, a .py file, a wheel (.whl) or a "
            "source distribution (.tar.gz)"
        )
        raise UserCodeError(msg)
    target = cache_dir / _sha256(path)[:32]
    if not (target / ".complete").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=cache_dir))
        try:
            _pip_install(path, staging)
            (staging / ".complete").write_text(path.name)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return [p for p in (target, target / "bin") if p.is_dir()]


_ACTIVATED: set[str] = set()


def activate_packages(packages: Iterable[str | Path], state_dir: str | Path | None = None) -> None:
    """Install (if needed) and put every package at the front of ``sys.path``.

    AI Platform routines of different versions often share module names (every one has a
    ``predictor.py``). Modules imported earlier from *other* activated packages are
    dropped from ``sys.modules`` first, so this version's code is the one imported;
    objects already built from the earlier modules keep working. Hold
    :data:`ACTIVATION_LOCK` around this and the imports that must see this version's code.
    """
    cache = resolve_state_dir(state_dir) / "packages"
    folders: list[str] = []
    for package in packages:
        folders.extend(str(p) for p in install_package(package, cache))
    with ACTIVATION_LOCK:
        _activate(folders)


def _activate(folders: list[str]) -> None:
    others = tuple(f + os.sep for f in _ACTIVATED - set(folders))
    if others:
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if origin.startswith(others):
                del sys.modules[name]
    for folder in reversed(folders):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    _ACTIVATED.update(folders)
    importlib.invalidate_caches()
