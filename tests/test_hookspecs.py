"""Meta-tests: every hook is documented in its spec and in the README, and is tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from predictor_runtime import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "predictor_runtime_spec")
)


def test_there_are_hooks() -> None:
    assert HOOKS == ["detect_framework", "register_frameworks"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_docstring_with_params_and_return(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    for param in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f":param {param}:" in doc
    assert ":return:" in doc
    opts = getattr(hookspecs, hook).predictor_runtime_spec
    if opts.get("firstresult"):
        assert "Stops at first non-None result." in doc


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_readme(hook: str) -> None:
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"`{hook}({params})`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_tests(hook: str) -> None:
    sources = [
        p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != Path(__file__).name
    ]
    assert any(f"def {hook}(" in src for src in sources), f"no test implements {hook}"
