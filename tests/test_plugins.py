"""``predictor_runtime.plugins``: manager factory, entry points, registration rules."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

import predictor_runtime
from predictor_runtime import hookimpl
from predictor_runtime.errors import PluginError
from predictor_runtime.plugins import (
    BLOCK_ENV,
    DEFAULT_PLUGINS,
    collect_frameworks,
    get_plugin_manager,
)


class EchoFramework:
    name = "echo"
    api_name = "ECHO"
    model_files = ("model.echo", "*.echo2")
    decode_b64 = False

    @classmethod
    def from_path(cls, model_dir):
        return cls()

    def predict(self, instances, **kwargs):
        return instances


class EchoPlugin:
    @hookimpl
    def register_frameworks(self, register):
        register(EchoFramework)


def test_default_plugins_registered(pm: pluggy.PluginManager) -> None:
    for name in DEFAULT_PLUGINS:
        assert pm.has_plugin(name)
    registry = collect_frameworks(pm)
    assert "custom" in registry.frameworks
    custom = registry.frameworks["custom"]
    assert custom.plugin == "predictor_runtime.default_plugins.custom"
    assert custom.distribution.startswith("predictor-runtime ")


def test_inline_plugin_registers_framework(pm: pluggy.PluginManager) -> None:
    pm.register(EchoPlugin(), name="echo-plugin")
    registry = collect_frameworks(pm)
    info = registry.get("echo")
    assert info.cls is EchoFramework and info.plugin == "echo-plugin"
    assert registry.get("ECHO") is info  # AI Platform enum spelling
    assert info.model_files == ("model.echo", "*.echo2")


def test_register_frameworks_hook_receives_a_register_callable(pm: pluggy.PluginManager) -> None:
    seen = []

    class Spy:
        @hookimpl
        def register_frameworks(self, register):
            seen.append(register)

    pm.register(Spy())
    collect_frameworks(pm)
    assert len(seen) == 1 and callable(seen[0])


def test_duplicate_name_names_both_plugins(pm: pluggy.PluginManager) -> None:
    pm.register(EchoPlugin(), name="first-echo")
    pm.register(EchoPlugin(), name="second-echo")
    with pytest.raises(PluginError, match="'echo' is registered twice: by plugin '.*-echo' and by"):
        collect_frameworks(pm)


def test_frameworks_are_collected_through_the_hook_caller(pm: pluggy.PluginManager) -> None:
    """Hook wrappers and pluggy's tracing see the ``register_frameworks`` call."""
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def register_frameworks(self, register):
            seen.append("before")
            register.framework(type("Wrapped", (EchoFramework,), {"name": "wrapped"}))
            result = yield
            seen.append("after")
            return result

    traced: list[tuple[str, ...]] = []
    pm.trace.root.setwriter(lambda msg: traced.append(tuple(msg.split())))
    undo = pm.enable_tracing()
    try:
        pm.register(EchoPlugin(), name="echo-plugin")
        pm.register(Wrapper(), name="wrapper")
        registry = collect_frameworks(pm)
    finally:
        undo()
    assert seen == ["before", "after"]
    assert registry.get("echo").plugin == "echo-plugin"
    assert registry.get("wrapped").plugin == "wrapper"  # registered by the wrapper itself
    assert any("register_frameworks" in " ".join(m) for m in traced)


def test_registration_from_a_helper_is_attributed_to_its_plugin(
    pm: pluggy.PluginManager,
) -> None:
    def helper(register):
        register(EchoFramework)

    class ViaHelper:
        @hookimpl
        def register_frameworks(self, register):
            helper(register)

    pm.register(ViaHelper(), name="via-helper")
    assert collect_frameworks(pm).get("echo").plugin == "via-helper"


def test_duplicate_of_builtin(pm: pluggy.PluginManager) -> None:
    class Shadow:
        @hookimpl
        def register_frameworks(self, register):
            register(type("Custom2", (EchoFramework,), {"name": "custom"}))

    pm.register(Shadow(), name="shadow")
    with pytest.raises(PluginError, match="'custom' is registered twice"):
        collect_frameworks(pm)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": None}, "without a string 'name' attribute"),
        ({"model_files": "model.x"}, "model_files must be a sequence"),
        ({"predict": None}, "invalid framework.*missing the required predict"),
    ],
)
def test_invalid_framework_class(pm: pluggy.PluginManager, attrs: dict, message: str) -> None:
    bad = type("Bad", (EchoFramework,), attrs)

    class BadPlugin:
        @hookimpl
        def register_frameworks(self, register):
            register(bad)

    pm.register(BadPlugin(), name="bad")
    with pytest.raises(PluginError, match=message):
        collect_frameworks(pm)


def test_misspelled_hook_fails_at_startup() -> None:
    class Typo:
        @hookimpl
        def register_framework(self, register):  # missing "s"
            pass

    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'register_framework'"):
        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(Typo())
        pm.check_pending()


def test_detect_framework_first_result_wins(pm: pluggy.PluginManager) -> None:
    class Never:
        @hookimpl
        def detect_framework(self, model_dir):
            return None

    class Claims:
        @hookimpl
        def detect_framework(self, model_dir):
            return "echo" if model_dir.endswith("mine") else None

    pm.register(Never())
    pm.register(Claims())
    assert pm.hook.detect_framework(model_dir="/x/mine") == "echo"
    assert pm.hook.detect_framework(model_dir="/x/other") is None


@pytest.fixture
def fake_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A third-party plugin installed as distribution 'predictor-runtime-fake'."""
    (tmp_path / "fake_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            import predictor_runtime

            class FakeFramework:
                name = "fake"
                api_name = None
                model_files = ("model.fake",)

                @classmethod
                def from_path(cls, model_dir):
                    return cls()

                def predict(self, instances, **kwargs):
                    return ["fake"] * len(instances)

            @predictor_runtime.hookimpl
            def register_frameworks(register):
                register(FakeFramework)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_plugin_mod", raising=False)

    class FakeDist(importlib.metadata.Distribution):
        def read_text(self, filename):
            if filename == "METADATA":
                return "Metadata-Version: 2.1\nName: predictor-runtime-fake\nVersion: 9.9\n"
            if filename == "entry_points.txt":
                return "[predictor_runtime]\nfake = fake_plugin_mod\n"
            return None

        def locate_file(self, path):
            return tmp_path / path

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [FakeDist()])
    return "fake"


def test_entry_point_plugin_is_loaded(fake_entry_point: str) -> None:
    pm = get_plugin_manager()
    assert pm.has_plugin(fake_entry_point)
    info = collect_frameworks(pm).get("fake")
    assert info.plugin == "fake"
    assert info.distribution == "predictor-runtime-fake 9.9"


def test_block_env_blocks_plugins(fake_entry_point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, "fake, predictor_runtime.default_plugins.custom")
    pm = get_plugin_manager()
    assert not pm.has_plugin("fake")
    assert collect_frameworks(pm).frameworks == {}


def test_version_is_package_metadata() -> None:
    assert predictor_runtime.__version__ == importlib.metadata.version("predictor-runtime")
