"""A task's ``url`` input: read a predict body or JSON Lines of instances from a local
path, a ``file://`` URI or an ``http(s)://`` URL.

Local paths honour ``--allow-paths`` (symlinks resolved; a refusal names the rule, never
the path's content); ``http(s)://`` honours ``--no-fetch-urls``. The content is either a
JSON predict body (``{"instances": [...], ...}``) or JSON Lines, one instance per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import codecs
from ..errors import InvalidRequestError, PredictorRuntimeError
from ..server.paths import check_allowed

#: most bytes read from one ``url``
URL_MAX_BYTES = 64 * 1024 * 1024
FETCH_TIMEOUT = 30.0


class UrlInputError(PredictorRuntimeError):
    """The ``url`` cannot be read or is not a predict body / JSON Lines (400)."""

    status = 400


async def read_url(url: str, *, allow_paths: Sequence[str] = (), fetch_urls: bool = True) -> bytes:
    """The predict request body that ``url`` names."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not fetch_urls:
            raise UrlInputError(
                "url: http(s) inputs are turned off on this server (--no-fetch-urls)"
            )
        data = await _fetch(url)
    elif parts.scheme in ("", "file") or (len(parts.scheme) == 1 and url[1:3] == ":\\"):
        raw = unquote(parts.path) if parts.scheme == "file" else url
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise UrlInputError("url: file:// URIs must name a local file (file:///path)")
        path = check_allowed(raw, allow_paths, what="url")
        data = _read_file(path)
    else:
        raise UrlInputError(
            f"url: unsupported scheme {parts.scheme!r}; use a local path, file:// or http(s)://"
        )
    return to_body(data)


def _read_file(path: Path) -> bytes:
    try:
        if not path.is_file():
            raise UrlInputError("url: no such file")
        if path.stat().st_size > URL_MAX_BYTES:
            raise UrlInputError(f"url: the file is larger than {URL_MAX_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise UrlInputError(f"url: cannot read the file ({exc.strerror})") from None


async def _fetch(url: str) -> bytes:
    import httpx

    from .callbacks import trust_context

    try:
        async with (
            httpx.AsyncClient(verify=trust_context(), timeout=FETCH_TIMEOUT) as client,
            client.stream("GET", url) as r,
        ):
            if r.status_code != 200:
                raise UrlInputError(f"url: the server answered HTTP {r.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > URL_MAX_BYTES:
                    raise UrlInputError(f"url: the content is larger than {URL_MAX_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise UrlInputError(f"url: cannot fetch it ({type(exc).__name__})") from None


def to_body(data: bytes) -> bytes:
    """A JSON predict body as is, or JSON Lines of instances wrapped into one."""
    text = data.lstrip(b"\xef\xbb\xbf").strip()
    if not text:
        raise UrlInputError("url: the content is empty")
    if text.startswith(b"{"):
        try:
            value = codecs.parse_json(text)
        except InvalidRequestError:
            value = None  # maybe JSON Lines of objects
        if isinstance(value, dict) and "instances" in value:
            return text
    lines: list[bytes] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            codecs.parse_json(line)  # checked here; kept verbatim (NaN literals survive)
            lines.append(line.strip())
        except InvalidRequestError:
            raise UrlInputError(
                f"url: line {lineno} is not JSON (expected a predict body or JSON Lines "
                "of instances)"
            ) from None
    return b'{"instances":[' + b",".join(lines) + b"]}"


__all__ = ["URL_MAX_BYTES", "UrlInputError", "read_url", "to_body"]
