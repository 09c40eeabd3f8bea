"""Model directory (+ framework or prediction class) -> a loaded, ready-to-call predictor.

Choosing the framework, in order:

1. a prediction class was given: the ``custom`` framework, whatever files sit beside it;
2. a framework was named (CLI name such as ``sklearn`` or AI Platform enum such as
   ``SCIKIT_LEARN``): that one;
3. the ``detect_framework`` hook: the first plugin that claims the directory;
4. file names: the one framework whose ``model_files`` match exactly one file. More than
   one candidate file, or none, is an error listing what was found and how to choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from .errors import FrameworkNotFoundError, ModelLoadError, PredictorRuntimeError
from .plugins import FrameworkRegistry, collect_frameworks, framework_registry, plugin_manager
from .predictor import accepts_kwargs

CUSTOM = "custom"


@dataclass
class LoadedModel:
    """A predictor instance plus what the dispatcher needs to know about it."""

    predictor: Any
    framework: str
    model_dir: str
    batching: bool = True
    decode_b64: bool = True
    accepts_kwargs: bool = True
    nan_as_null: bool = False
    #: dtype for the numeric fast path (:mod:`predictor_runtime.fastparse`), or None.
    numeric_dtype: Any = None

    @classmethod
    def wrap(cls, predictor: Any, framework: str, model_dir: str) -> LoadedModel:
        """Describe ``predictor`` from its class attributes (``batching``, ``decode_b64``...).

        A framework class may hand loading to another (a ``model.joblib`` holding an XGBoost
        model is served by ``xgboost``): the predictor's own framework ``name`` wins then.
        """
        batching = getattr(predictor, "batching", True)
        decode = getattr(predictor, "decode_b64", True)
        own_name = getattr(predictor, "name", None)
        if isinstance(own_name, str) and hasattr(predictor, "model_files"):
            framework = own_name
        return cls(
            predictor=predictor,
            framework=framework,
            model_dir=model_dir,
            batching=batching if isinstance(batching, bool) else True,
            decode_b64=decode if isinstance(decode, bool) else True,
            accepts_kwargs=accepts_kwargs(type(predictor)),
            nan_as_null=getattr(predictor, "nan_as_null", False) is True,
            numeric_dtype=_numeric_dtype(getattr(predictor, "numeric_instances", False)),
        )


def _numeric_dtype(flag: Any) -> Any:
    """``numeric_instances`` class attribute -> numpy dtype (True: float64) or None.

    Predictors that do not ask for numeric arrays (most custom ones) never import numpy here.
    """
    if flag is not True and not isinstance(flag, str):
        return None
    import numpy as np

    if flag is True:
        return np.dtype(np.float64)
    if isinstance(flag, str):
        try:
            return np.dtype(flag)
        except TypeError:
            return None
    return None


def choose_framework(
    model_dir: str,
    *,
    framework: str | None = None,
    prediction_class: str | None = None,
    registry: FrameworkRegistry,
    pm: pluggy.PluginManager,
    reveal_files: bool = True,
) -> str:
    """Name of the framework that should load ``model_dir`` (see module docstring).

    :param reveal_files: name the files found in error messages (the CLI, for the user's
        own folder); False (HTTP callers) says only how many there are.
    """
    if prediction_class:
        return CUSTOM
    if framework:
        return registry.get(framework).name
    claimed = pm.hook.detect_framework(model_dir=model_dir)
    if claimed:
        return registry.get(claimed).name
    found = registry.match_files(model_dir)
    files = sorted({f for hits in found.values() for f in hits})
    if len(files) == 1 and len(found) == 1:
        return next(iter(found))
    choices = ", ".join(sorted(n for n in registry.frameworks if n != CUSTOM))
    if not files:
        entries = sorted(p.name for p in Path(model_dir).iterdir())
        present = entries[:20] if reveal_files else []
        if not reveal_files:
            present = [f"{len(entries)} file(s), none of them a model file"] if entries else []
        looked = "; ".join(
            f"{info.name}: {', '.join(info.model_files)}"
            for info in registry.frameworks.values()
            if info.model_files
        )
        msg = (
            f"No model file found in {model_dir} (files present: {', '.join(present) or 'none'};"
            f" looked for {looked or 'nothing: no framework plugin is installed'}). "
            f"Choose a framework with --framework ({choices or 'none installed'}) or give "
            "custom code with --prediction-class"
        )
        raise FrameworkNotFoundError(msg)
    listing = ", ".join(f"{f} ({'/'.join(n for n, h in found.items() if f in h)})" for f in files)
    if not reveal_files:
        listing = f"{len(files)} candidate files of {', '.join(sorted(found))}"
    msg = (
        f"More than one candidate model file in {model_dir}: {listing}. Keep one, or choose "
        f"with --framework ({choices})"
    )
    raise FrameworkNotFoundError(msg)


def load_model(
    model_dir: str | Path,
    *,
    framework: str | None = None,
    prediction_class: str | None = None,
    packages: Sequence[str] = (),
    state_dir: str | Path | None = None,
    registry: FrameworkRegistry | None = None,
    pm: pluggy.PluginManager | None = None,
    reveal_files: bool = True,
) -> LoadedModel:
    """Load the model in ``model_dir`` through its framework's ``from_path``.

    :param reveal_files: name the folder's files in "no model file" errors (False for
        paths named by HTTP callers, who must not learn what a folder holds).

    :raises ModelLoadError: (or a subclass) naming the directory and the cause.
    """
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"Model directory {str(model_dir)!r} does not exist or is not a directory"
        )
    model_dir = str(path.resolve())
    if pm is None:
        pm = plugin_manager()
        registry = registry or framework_registry()
    elif registry is None:
        registry = collect_frameworks(pm)
    if packages and not prediction_class and (framework or "").lower() != CUSTOM:
        raise ModelLoadError("--package is only used with --prediction-class (custom code)")
    name = choose_framework(
        model_dir,
        framework=framework,
        prediction_class=prediction_class,
        registry=registry,
        pm=pm,
        reveal_files=reveal_files,
    )
    info = registry.get(name)
    options: dict[str, Any] = {}
    if name == CUSTOM:
        options = {
            "prediction_class": prediction_class,
            "packages": list(packages),
            "state_dir": str(state_dir) if state_dir is not None else None,
        }
    try:
        predictor = info.cls.from_path(model_dir, **options)
    except PredictorRuntimeError:
        raise
    except Exception as exc:
        msg = (
            f"Failed to load model: could not load the {name} model in {model_dir}: "
            f"{type(exc).__name__}: {exc}"
        )
        raise ModelLoadError(msg) from exc
    return LoadedModel.wrap(predictor, name, model_dir)
