"""Confinement of caller-named paths (``--allow-paths``): one check for every protocol.

The management API loads models (pickles run code when loaded) and installs packages
from paths the caller names; tasks and jobs read and write files at caller-named paths.
With ``--allow-paths DIR[,DIR...]`` every such path must lie inside one of those folders
once symlinks are resolved, so a symlink inside an allowed folder that points outside it
is refused too. Call :func:`check_allowed` on each path a request names, before touching
it::

    from predictor_runtime.server.paths import check_allowed

    path = check_allowed(body["url"], ctx.options.allow_paths, field="task.url")

A refusal is :class:`PathNotAllowedError`, a 400 ``INVALID_ARGUMENT`` naming the rule and
the field; it never names the refused path, what it holds, nor which folders are allowed.
An empty ``allow`` confines nothing (the default of a local tool bound to 127.0.0.1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .http import HttpError

FILE_SCHEME = "file://"


class PathNotAllowedError(HttpError):
    """A caller-named path lies outside every ``--allow-paths`` folder (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, google_status="INVALID_ARGUMENT")


def local_path(uri: str) -> str:
    """A local path from a path or ``file://`` URI (``file:///a/b`` and ``file://localhost/a/b``)."""
    if uri.startswith(FILE_SCHEME):
        rest = uri[len(FILE_SCHEME) :]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        return rest
    return uri


def resolve_allowed(allow: Sequence[str]) -> tuple[Path, ...]:
    """The allowed folders with symlinks resolved (what :func:`check_allowed` compares to)."""
    return tuple(Path(os.path.expanduser(a)).resolve() for a in allow)


def check_allowed(
    path: str | os.PathLike[str],
    allow: Sequence[str],
    rule_name: str = "--allow-paths",
    *,
    field: str = "path",
    what: str | None = None,
) -> Path:
    """``path`` (a local path or ``file://`` URI) resolved, if ``allow`` permits it.

    :param path: what the caller named; relative paths are taken from the server's
        working directory.
    :param allow: the allowed folders (``ServerOptionsView.allow_paths``); empty: any path.
    :param rule_name: the rule named in a refusal (the flag that set ``allow``).
    :param field: the request field that held ``path`` (``version.deploymentUri``);
        ``what`` is the same (the name the task routes use).
    :returns: the absolute path with symlinks resolved (use it, not ``path``, so that a
        symlink swapped after the check cannot redirect the access).
    :raises PathNotAllowedError: 400 ``INVALID_ARGUMENT`` when ``path`` lies outside
        every folder.
    """
    resolved = Path(os.path.expanduser(local_path(os.fspath(path)))).resolve()
    if not allow:
        return resolved
    for root in resolve_allowed(allow):
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise PathNotAllowedError(
        f"Field: {what or field} Error: the path is outside the folders this server allows "
        f"({rule_name}); symlinks are followed before the check. Move the files into an "
        f"allowed folder or ask the server's operator to extend {rule_name}."
    )


def check_source(
    url: str,
    allow: Sequence[str],
    fetch_urls: bool,
    *,
    field: str = "url",
) -> str | Path:
    """An input a caller named: an ``http(s)://`` URL (returned as is, unless
    ``--no-fetch-urls``) or a local path or ``file://`` URI (checked by
    :func:`check_allowed` and returned resolved).

    :param fetch_urls: ``ServerOptionsView.fetch_urls`` (False under ``--no-fetch-urls``).
    :raises HttpError: 400 ``INVALID_ARGUMENT`` naming the rule that refused it.
    """
    lowered = url[:8].lower()
    if lowered.startswith(("http://", "https://")):
        if not fetch_urls:
            raise HttpError(
                400,
                f"Field: {field} Error: this server does not fetch http(s) urls "
                "(--no-fetch-urls); name a local file instead",
                google_status="INVALID_ARGUMENT",
            )
        return url
    if "://" in url and not url.startswith(FILE_SCHEME):
        raise HttpError(
            400,
            f"Field: {field} Error: expected a local path, a file:// URI or an http(s) url, "
            f"got {url!r}",
            google_status="INVALID_ARGUMENT",
        )
    return check_allowed(url, allow, field=field)


__all__ = [
    "PathNotAllowedError",
    "check_allowed",
    "check_source",
    "local_path",
    "resolve_allowed",
]
