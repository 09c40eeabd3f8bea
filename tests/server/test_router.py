"""Route patterns: literal text and ``{name}`` segments, matched without regular expressions."""

from __future__ import annotations

import re

import pytest

from predictor_runtime.server.router import PathPattern


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/readyz", "/readyz", {}),
        ("/readyz", "/readyz/x", None),
        ("/v1/models/{model}:predict", "/v1/models/m:predict", {"model": "m"}),
        ("/v1/models/{model}:predict", "/v1/models/m:predictx", None),
        ("/v1/models/{model}:predict", "/v1/models/:predict", None),
        ("/v1/models/{model}:predict", "/v1/models/a/b:predict", None),
        ("/v1/models/{model}:predict", "/v1/models/a:b:predict", None),
        (
            "/v1/models/{model}/versions/{version}:predict",
            "/v1/models/m/versions/v1:predict",
            {"model": "m", "version": "v1"},
        ),
        ("/v1/async-tasks/{task_id}", "/v1/async-tasks/abc-123", {"task_id": "abc-123"}),
        ("/v1/async-tasks/{task_id}", "/v1/async-tasks/abc/", None),
        ("/v2/models/{model}/ready", "/v2/models/m.x_1/ready", {"model": "m.x_1"}),
    ],
)
def test_matches_like_the_regular_expression_it_replaces(
    pattern: str, path: str, expected: dict[str, str] | None
) -> None:
    assert PathPattern(pattern).match(path) == expected
    # the regex the router compiled before: each placeholder is one [^/:]+ segment
    parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/:]+)" for i, p in enumerate(parts))
    m = re.match(regex + r"\Z", path)
    assert (m.groupdict() if m else None) == expected


@pytest.mark.parametrize("pattern", ["v1/models", "/v1/{a}{b}", "/v1/{model}-x", "/v1/{a}b/c"])
def test_ambiguous_or_relative_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="route pattern"):
        PathPattern(pattern)
