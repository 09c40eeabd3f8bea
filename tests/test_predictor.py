"""``predictor_runtime.predictor``: the interface and loading of user classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from predictor_runtime import Predictor
from predictor_runtime.errors import UserCodeError
from predictor_runtime.predictor import accepts_kwargs, import_class, validate_predictor_class


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, write_module: Callable[[str, str], Path]):
    def write(name: str, code: str) -> None:
        folder = write_module(name, code)
        monkeypatch.syspath_prepend(str(folder))

    return write


def test_aip_class_without_importing_predictor_runtime(on_path) -> None:
    on_path(
        "aip_predictor",
        """
        class MyPredictor(object):
            def __init__(self, model):
                self._model = model

            def predict(self, instances, **kwargs):
                return [x * 2 for x in instances]

            @classmethod
            def from_path(cls, model_dir):
                return cls(None)
        """,
    )
    for path in ("aip_predictor.MyPredictor", "aip_predictor:MyPredictor"):
        cls = import_class(path)
        validate_predictor_class(cls)
        assert cls.from_path("/tmp").predict([1, 2]) == [2, 4]


def test_subclass_of_base() -> None:
    class Doubler(Predictor):
        def predict(self, instances, **kwargs):
            return [2 * x for x in instances]

        @classmethod
        def from_path(cls, model_dir):
            return cls()

    validate_predictor_class(Doubler)
    assert Doubler.batching is True and Doubler.decode_b64 is True
    with pytest.raises(TypeError):
        Predictor()  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nomodule_xyz.Cls", "cannot be found: no module named 'nomodule_xyz'"),
        ("justaname", "expected 'module.Class' or 'module:Class'"),
        ("json.NoSuchClass", "module 'json' has no 'NoSuchClass'"),
        ("json.dumps", "is a function, not a class"),
    ],
)
def test_import_errors(path: str, message: str) -> None:
    with pytest.raises(UserCodeError, match=message):
        import_class(path)


def test_import_error_inside_user_module(on_path) -> None:
    on_path("broken_mod", "raise RuntimeError('boom at import')\n")
    with pytest.raises(UserCodeError, match="Importing module 'broken_mod'.*RuntimeError: boom"):
        import_class("broken_mod.X")


class NoFromPath:
    def predict(self, instances, **kwargs):
        return instances


class NoPredict:
    @classmethod
    def from_path(cls, model_dir):
        return cls()


class TwoPositional:
    def predict(self, instances, extra, **kwargs):
        return instances

    @classmethod
    def from_path(cls, model_dir):
        return cls()


class NoInstances:
    def predict(self, **kwargs):
        return []

    @classmethod
    def from_path(cls, model_dir):
        return cls()


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (NoFromPath, "NoFromPath must implement the from_path classmethod"),
        (NoPredict, "NoPredict is missing the required predict method"),
        (
            TwoPositional,
            r"invalid signature.*User signature: \(self, instances, extra, \*\*kwargs\)",
        ),
        (NoInstances, r"invalid signature.*Expected signature: \(self, instances, \*\*kwargs\)"),
    ],
)
def test_validation_names_class_and_problem(cls: type, message: str) -> None:
    with pytest.raises(UserCodeError, match=message):
        validate_predictor_class(cls)


def test_predict_without_kwargs_is_accepted() -> None:
    class Plain:
        def predict(self, instances):
            return instances

        @classmethod
        def from_path(cls, model_dir):
            return cls()

    validate_predictor_class(Plain)
    assert not accepts_kwargs(Plain)
    assert accepts_kwargs(NoFromPath)
