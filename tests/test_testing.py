"""``predictor_runtime.testing``: the helpers offered to plugin authors work as documented."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from predictor_runtime import hookimpl, testing

from .conftest import ECHO_PREDICTOR


class Upper:
    name = "upper"
    api_name = None
    model_files = ("model.upper",)
    decode_b64 = False

    @classmethod
    def from_path(cls, model_dir):
        return cls()

    def predict(self, instances, **kwargs):
        return [str(i).upper() for i in instances]


class UpperPlugin:
    @hookimpl
    def register_frameworks(self, register):
        register(Upper)


def test_plugin_manager_and_predict(model_dir: Path) -> None:
    (model_dir / "model.upper").write_text("")
    pm = testing.plugin_manager(UpperPlugin())
    assert pm.hook.register_frameworks.get_hookimpls()
    status, body = testing.predict(model_dir, ["a", "b"], pm=pm)
    assert (status, body) == (200, {"predictions": ["A", "B"]})
    status, body = testing.predict(testing.load(model_dir, pm=pm), [])
    assert status == 400 and "must not be empty" in body["error"]


def test_predict_custom_with_kwargs(
    model_dir: Path, write_module: Callable[[str, str], Path]
) -> None:
    code = write_module("testing_echo", ECHO_PREDICTOR)
    status, body = testing.predict(
        model_dir,
        [[1, 2]],
        pm=testing.plugin_manager(),
        load_options={"prediction_class": "testing_echo.EchoPredictor", "packages": [str(code)]},
        flag=True,
    )
    assert (status, body) == (200, {"predictions": [[1, 2]]})


def test_run_cli() -> None:
    proc = testing.run_cli("plugins", "--json")
    assert proc.returncode == 0 and '"custom"' in proc.stdout
