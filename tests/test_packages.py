"""``predictor_runtime.packages`` and the custom framework's ``--package`` handling."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pluggy
import pytest

from predictor_runtime.errors import UserCodeError
from predictor_runtime.loader import load_model
from predictor_runtime.packages import install_package

PREDICTOR = """
class {cls}:
    def predict(self, instances, **kwargs):
        return ["{tag}" for _ in instances]

    @classmethod
    def from_path(cls, model_dir):
        return cls()
"""


def make_sdist(tmp_path: Path, module: str, cls: str, tag: str) -> Path:
    """An AI Platform-style sdist: setup(name=..., scripts=["<module>.py"])."""
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    (src / f"{module}.py").write_text(PREDICTOR.format(cls=cls, tag=tag))
    (src / "setup.py").write_text(
        textwrap.dedent(
            f"""
            from setuptools import setup
            setup(name="my_custom_code_{tag}", version="0.1", scripts=["{module}.py"])
            """
        )
    )
    dist = tmp_path / f"dist-{tag}"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "--dist-dir", str(dist)],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (archive,) = dist.glob("*.tar.gz")
    return archive


def make_wheel(tmp_path: Path, module: str, cls: str, tag: str) -> Path:
    src = tmp_path / f"wsrc-{tag}"
    (src / "wpkg").mkdir(parents=True)
    (src / "wpkg" / "__init__.py").write_text("")
    (src / "wpkg" / f"{module}.py").write_text(PREDICTOR.format(cls=cls, tag=tag))
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "wpkg-{tag}"\nversion = "0.1"\n'
    )
    out = tmp_path / f"wheels-{tag}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture
def clean_modules():
    before = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = path


@pytest.mark.usefixtures("clean_modules")
def test_aip_sdist_with_scripts(tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path) -> None:
    archive = make_sdist(tmp_path, "sdist_predictor", "SdistPredictor", "sdist")
    state = tmp_path / "state"
    model = load_model(
        model_dir,
        prediction_class="sdist_predictor.SdistPredictor",
        packages=[str(archive)],
        state_dir=state,
        pm=pm,
    )
    assert model.predictor.predict([1, 2]) == ["sdist", "sdist"]
    (installed,) = (state / "packages").iterdir()
    assert (installed / "bin" / "sdist_predictor.py").is_file()
    assert (installed / ".complete").is_file()
    # a second activation uses the cache instead of installing again
    marker = installed / "bin" / "marker"
    marker.write_text("kept")
    assert install_package(archive, state / "packages")[0] == installed
    assert marker.is_file()


@pytest.mark.usefixtures("clean_modules")
def test_wheel(tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path) -> None:
    wheel = make_wheel(tmp_path, "wheel_predictor", "WheelPredictor", "whl")
    model = load_model(
        model_dir,
        prediction_class="wpkg.wheel_predictor:WheelPredictor",
        packages=[str(wheel)],
        state_dir=tmp_path / "state",
        pm=pm,
    )
    assert model.predictor.predict([0]) == ["whl"]


@pytest.mark.usefixtures("clean_modules")
def test_single_py_file(tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path) -> None:
    path = tmp_path / "single_file_predictor.py"
    path.write_text(PREDICTOR.format(cls="Single", tag="py"))
    model = load_model(
        model_dir, prediction_class="single_file_predictor.Single", packages=[str(path)], pm=pm
    )
    assert model.predictor.predict([0]) == ["py"]


@pytest.mark.usefixtures("clean_modules")
def test_two_versions_with_the_same_module_name(
    tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path
) -> None:
    loaded = []
    for tag in ("one", "two"):
        folder = tmp_path / f"code-{tag}"
        folder.mkdir()
        (folder / "shared_name_predictor.py").write_text(PREDICTOR.format(cls="P", tag=tag))
        loaded.append(
            load_model(
                model_dir,
                prediction_class="shared_name_predictor.P",
                packages=[str(folder)],
                pm=pm,
            )
        )
    assert [m.predictor.predict([0]) for m in loaded] == [["one"], ["two"]]


def test_bad_packages(tmp_path: Path) -> None:
    with pytest.raises(UserCodeError, match="does not exist"):
        install_package(tmp_path / "missing.tar.gz", tmp_path / "cache")
    odd = tmp_path / "code.rar"
    odd.write_bytes(b"x")
    with pytest.raises(UserCodeError, match="not a directory, a .py file, a wheel"):
        install_package(odd, tmp_path / "cache")
    broken = tmp_path / "broken-0.1.tar.gz"
    with tarfile.open(broken, "w:gz"):
        pass
    with pytest.raises(UserCodeError, match="broken-0.1.tar.gz failed to install"):
        install_package(broken, tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*/.complete"))


SLOW_IMPORT = (
    """
import time
time.sleep(0.05)  # a slow import widens the window in which another version could interfere
"""
    + PREDICTOR
)


@pytest.mark.usefixtures("clean_modules")
def test_versions_loading_in_parallel_each_get_their_own_code(
    tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path
) -> None:
    """sys.path and sys.modules are process-wide: activation is serialised across threads."""
    from concurrent.futures import ThreadPoolExecutor

    folders = {}
    for tag in ("one", "two"):
        folder = folders[tag] = tmp_path / f"code-{tag}"
        folder.mkdir()
        (folder / "parallel_name_predictor.py").write_text(SLOW_IMPORT.format(cls="P", tag=tag))

    def load(tag: str) -> list[str]:
        model = load_model(
            model_dir,
            prediction_class="parallel_name_predictor.P",
            packages=[str(folders[tag])],
            pm=pm,
        )
        return model.predictor.predict([0])

    tags = ["one", "two"] * 4
    with ThreadPoolExecutor(len(tags)) as pool:
        assert list(pool.map(load, tags)) == [[tag] for tag in tags]


@pytest.mark.usefixtures("clean_modules")
def test_package_cache_honours_the_state_dir_variable(
    tmp_path: Path, pm: pluggy.PluginManager, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor_runtime.statedir import STATE_DIR_ENV, state_dir

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "from-env"))
    assert state_dir() == tmp_path / "from-env"
    assert state_dir(tmp_path / "explicit") == tmp_path / "explicit"  # the flag wins
    wheel = make_wheel(tmp_path, "env_predictor", "EnvPredictor", "env")
    load_model(
        model_dir, prediction_class="wpkg.env_predictor:EnvPredictor", packages=[str(wheel)], pm=pm
    )
    assert [p.name for p in (tmp_path / "from-env" / "packages").iterdir()] != []
    monkeypatch.delenv(STATE_DIR_ENV)
    assert str(state_dir()) == ".predictor_runtime"
