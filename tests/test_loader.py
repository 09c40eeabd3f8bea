"""``predictor_runtime.loader``: choosing a framework and loading a model directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest

from predictor_runtime import hookimpl
from predictor_runtime.errors import FrameworkNotFoundError, ModelLoadError, UserCodeError
from predictor_runtime.loader import load_model

from .conftest import ECHO_PREDICTOR


class _Base:
    api_name = None
    decode_b64 = False

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir

    @classmethod
    def from_path(cls, model_dir):
        return cls(model_dir)

    def predict(self, instances, **kwargs):
        return [self.name] * len(instances)


class AlphaFramework(_Base):
    name = "alpha"
    api_name = "ALPHA_FW"
    model_files = ("model.alpha",)


class BetaFramework(_Base):
    name = "beta"
    model_files = ("model.beta", "*.b")
    batching = False


class BrokenFramework(_Base):
    name = "broken"
    model_files = ("model.broken",)

    @classmethod
    def from_path(cls, model_dir):
        raise OSError("model.broken is truncated")


class Frameworks:
    @hookimpl
    def register_frameworks(self, register):
        for cls in (AlphaFramework, BetaFramework, BrokenFramework):
            register(cls)


@pytest.fixture
def fw_pm(pm: pluggy.PluginManager) -> pluggy.PluginManager:
    pm.register(Frameworks(), name="test-frameworks")
    return pm


def touch(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_detects_by_file_name(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    touch(model_dir, "model.alpha", "README.txt")
    model = load_model(model_dir, pm=fw_pm)
    assert model.framework == "alpha"
    assert model.predictor.model_dir == str(model_dir.resolve())
    assert model.decode_b64 is False and model.batching is True


def test_glob_patterns_and_class_attributes(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    model = load_model(touch(model_dir, "weights.b"), pm=fw_pm)
    assert model.framework == "beta" and model.batching is False


def test_named_framework_by_cli_or_api_name(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    touch(model_dir, "model.alpha", "model.beta")
    assert load_model(model_dir, framework="beta", pm=fw_pm).framework == "beta"
    assert load_model(model_dir, framework="ALPHA_FW", pm=fw_pm).framework == "alpha"


def test_unknown_framework_lists_installed(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    with pytest.raises(FrameworkNotFoundError, match="Unknown framework 'gamma'.*alpha, beta"):
        load_model(model_dir, framework="gamma", pm=fw_pm)


def test_two_candidates_is_an_error(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    touch(model_dir, "model.alpha", "model.beta")
    with pytest.raises(FrameworkNotFoundError) as info:
        load_model(model_dir, pm=fw_pm)
    message = str(info.value)
    assert "More than one candidate model file" in message
    assert "model.alpha (alpha)" in message and "model.beta (beta)" in message
    assert "--framework" in message


def test_two_files_of_one_framework_is_an_error(
    fw_pm: pluggy.PluginManager, model_dir: Path
) -> None:
    touch(model_dir, "model.beta", "other.b")
    with pytest.raises(FrameworkNotFoundError, match="model.beta \\(beta\\), other.b \\(beta\\)"):
        load_model(model_dir, pm=fw_pm)


def test_nothing_found_lists_files_and_choices(
    fw_pm: pluggy.PluginManager, model_dir: Path
) -> None:
    touch(model_dir, "notes.txt")
    with pytest.raises(FrameworkNotFoundError) as info:
        load_model(model_dir, pm=fw_pm)
    message = str(info.value)
    assert "No model file found" in message and "notes.txt" in message
    assert "alpha: model.alpha" in message and "--prediction-class" in message


def test_detect_hook_claims_before_file_names(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    class ClaimsBeta:
        @hookimpl
        def detect_framework(self, model_dir):
            return "beta"

    fw_pm.register(ClaimsBeta())
    assert load_model(touch(model_dir, "model.alpha"), pm=fw_pm).framework == "beta"


def test_missing_directory(fw_pm: pluggy.PluginManager, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="'.*nope' does not exist"):
        load_model(tmp_path / "nope", pm=fw_pm)


def test_load_failure_is_wrapped(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    touch(model_dir, "model.broken")
    with pytest.raises(ModelLoadError, match="Failed to load model.*broken.*OSError: .*truncated"):
        load_model(model_dir, pm=fw_pm)


def test_prediction_class_selects_custom(
    fw_pm: pluggy.PluginManager, model_dir: Path, write_module: Callable[[str, str], Path]
) -> None:
    code = write_module("echo_predictor", ECHO_PREDICTOR)
    touch(model_dir, "model.alpha")  # ignored: a prediction class wins
    model = load_model(
        model_dir,
        prediction_class="echo_predictor.EchoPredictor",
        packages=[str(code)],
        pm=fw_pm,
        state_dir=model_dir.parent / "state",
    )
    assert model.framework == "custom"
    assert type(model.predictor).__name__ == "EchoPredictor"
    assert model.decode_b64 is True and model.accepts_kwargs


def test_custom_needs_prediction_class(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    with pytest.raises(UserCodeError, match="needs a prediction class"):
        load_model(model_dir, framework="custom", pm=fw_pm)


def test_package_without_prediction_class(fw_pm: pluggy.PluginManager, model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="--package is only used with --prediction-class"):
        load_model(touch(model_dir, "model.alpha"), packages=["x"], pm=fw_pm)


def test_user_from_path_error_is_wrapped(
    fw_pm: pluggy.PluginManager, model_dir: Path, write_module: Callable[[str, str], Path]
) -> None:
    code = write_module(
        "bad_load",
        """
        class P:
            def predict(self, instances, **kwargs):
                return instances

            @classmethod
            def from_path(cls, model_dir):
                open(model_dir + "/missing.pkl", "rb")
        """,
    )
    with pytest.raises(ModelLoadError, match="custom model.*FileNotFoundError.*missing.pkl"):
        load_model(model_dir, prediction_class="bad_load.P", packages=[str(code)], pm=fw_pm)
