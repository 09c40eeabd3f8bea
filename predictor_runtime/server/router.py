"""The route table: method + path pattern -> handler, built once at start-up.

Patterns are literal paths with ``{name}`` placeholders, each matching one non-empty path
segment without ``/`` or ``:``; a Google-style custom verb is written literally at the end
(``/v1/models/{model}:predict``). One trailing slash on a request path is tolerated.
Every protocol module (:mod:`.routes`) adds its routes with :meth:`Router.add`; 404 and
405 (with ``Allow``) are answered here, once, in the error style of the paths concerned:

- ``"google"``: Google's envelope ``{"error": {"code", "message", "status"}}`` (resource
  routes, Launch routes, generative routes);
- ``"plain"``: ``{"error": "<message>"}`` (AI Platform predict, Open Inference Protocol V2).

Matching is cached per (path) so that the hot predict route costs one dict look-up.

Two protocols may claim the same method and path when one of them is *guarded*
(``when=``, a test of the request's ASGI scope): the guarded route serves the requests it
recognises and the unguarded one the rest. ``GET /v1/models`` is the case: AI Platform's
short form for most callers, Google's Gemini model list for Gemini clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .http import Handler

ErrorStyle = str  # "google" | "plain"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT_END = re.compile(r"[/:]")
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Route:
    """One entry of the table."""

    methods: frozenset[str]
    pattern: str
    handler: Handler
    errors: ErrorStyle = "google"
    #: reachable without the api key (``/healthz``, ``/readyz``).
    public: bool = False
    #: serves only requests whose scope it accepts (tried before unguarded routes).
    when: Callable[[dict[str, Any]], bool] | None = None
    path: PathPattern = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", PathPattern(self.pattern))


@dataclass(frozen=True)
class Match:
    """The outcome of matching a path: the routes whose pattern matched, with parameters."""

    routes: tuple[tuple[Route, dict[str, str]], ...]
    #: ``method -> (route, params)`` for paths without guarded routes (the hot path)
    by_method: dict[str, tuple[Route, dict[str, str]]] = field(default_factory=dict, compare=False)

    def for_method(
        self, method: str, scope: dict[str, Any] | None = None
    ) -> tuple[Route, dict[str, str]] | None:
        """The route serving ``method`` (HEAD falls back to GET), or None.

        :param scope: the request's ASGI scope, for guarded routes (skipped without it).
        """
        found = self.by_method.get(method)
        if found is not None:
            return found
        found = self._find(method, scope)
        if found is not None and all(route.when is None for route, _ in self.routes):
            self.by_method[method] = found
        return found

    def _find(
        self, method: str, scope: dict[str, Any] | None
    ) -> tuple[Route, dict[str, str]] | None:
        for want in (method, "GET") if method == "HEAD" else (method,):
            for route, params in self.routes:
                if want in route.methods and (
                    route.when is None or (scope is not None and route.when(scope))
                ):
                    return route, params
        return None

    def allow(self) -> str:
        """The ``Allow`` header value: every method of the matched routes."""
        methods: set[str] = set()
        for route, _ in self.routes:
            methods |= route.methods
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


class PathPattern:
    """A route pattern split into literal text and ``{name}`` segments, matched with string
    operations (compiling 65 patterns as regular expressions cost about 20 ms of start-up).

    A placeholder ends where the path's segment ends, so it must be followed by the end of
    the pattern, ``/`` or ``:``.
    """

    __slots__ = ("literal", "parts")

    def __init__(self, pattern: str) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        names: list[str] = []
        texts: list[str] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(pattern):
            texts.append(pattern[pos : m.start()])
            names.append(m.group(1))
            pos = m.end()
        texts.append(pattern[pos:])
        for i, text in enumerate(texts[1:]):
            if not (text[:1] in ("/", ":") or (text == "" and i == len(names) - 1)):
                raise ValueError(
                    f"route pattern {pattern!r}: a placeholder must be followed by '/', "
                    "':' or the end"
                )
        #: the text before the first placeholder (the whole pattern when it has none)
        self.literal = texts[0]
        #: (placeholder name, the literal text after it)
        self.parts = list(zip(names, texts[1:], strict=True))

    def match(self, path: str) -> dict[str, str] | None:
        """The placeholders' values when ``path`` matches, else None."""
        literal = self.literal
        if not self.parts:
            return {} if path == literal else None
        if not path.startswith(literal):
            return None
        pos = len(literal)
        params: dict[str, str] = {}
        for name, text in self.parts:
            found = _SEGMENT_END.search(path, pos)
            end = len(path) if found is None else found.start()
            if end == pos:
                return None
            params[name] = path[pos:end]
            if not path.startswith(text, end):
                return None
            pos = end + len(text)
        return params if pos == len(path) else None


class Router:
    """Routes, the error style of unmatched paths, and a per-path match cache."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._styles: list[tuple[str, ErrorStyle]] = []
        self._cache: dict[str, Match] = {}

    def add(
        self,
        methods: str | Iterable[str],
        patterns: str | Iterable[str],
        handler: Handler,
        *,
        errors: ErrorStyle = "google",
        public: bool = False,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Serve ``methods`` on each of ``patterns`` with ``handler``.

        Adding the same method and pattern twice is an error (two modules claiming a
        route), unless one of the two is guarded by ``when`` (a test of the ASGI scope).
        """
        if errors not in ("google", "plain"):
            raise ValueError(f"errors must be 'google' or 'plain', got {errors!r}")
        ms = frozenset([methods] if isinstance(methods, str) else methods)
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            for existing in self.routes:
                if (
                    existing.pattern == pattern
                    and existing.methods & ms
                    and (existing.when is None) == (when is None)
                ):
                    raise ValueError(
                        f"route {sorted(existing.methods & ms)} {pattern} is registered twice"
                    )
            self.routes.append(Route(ms, pattern, handler, errors, public, when))
        self._cache.clear()

    def error_style(self, prefix: str, style: ErrorStyle) -> None:
        """Unmatched paths under ``prefix`` answer 404 in ``style`` (longest prefix wins)."""
        self._styles.append((prefix, style))
        self._styles.sort(key=lambda item: -len(item[0]))

    def style_for(self, path: str) -> ErrorStyle:
        """The error style of an unmatched ``path``."""
        for prefix, style in self._styles:
            if path.startswith(prefix):
                return style
        return "google"

    def match(self, path: str) -> Match:
        """Every route whose pattern matches ``path`` (cached)."""
        found = self._cache.get(path)
        if found is not None:
            return found
        target = path[:-1] if len(path) > 1 and path.endswith("/") else path
        hits: list[tuple[Route, dict[str, str]]] = []
        for route in self.routes:
            params = route.path.match(target)
            if params is not None:
                hits.append((route, params))
        hits.sort(key=lambda hit: hit[0].when is None)  # guarded routes first (stable)
        found = Match(tuple(hits))
        if len(self._cache) < _CACHE_SIZE:
            self._cache[path] = found
        return found
