"""The Predictor interface and loading of user prediction classes.

The interface is Google AI Platform's custom prediction routine: a class with
``predict(self, instances, **kwargs)`` and a ``from_path(cls, model_dir)`` classmethod.
Subclassing :class:`Predictor` is optional; a class that never imports predictor_runtime
works the same.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from .errors import UserCodeError


class Predictor(ABC):
    """Optional base class for predictors, for type checking and documentation.

    Class attributes the runtime looks at (all optional on user classes):

    - ``batching`` (default True): the runtime may split a large request into
      micro-batches of at most ``max_batch_size`` instances and merge concurrent requests
      into one ``predict`` call. ``predict`` must then return one prediction per instance,
      in order. Set it to False when predictions depend on the whole request together.
    - ``decode_b64`` (default True for custom predictors): whether ``{"b64": ...}``
      objects are decoded to ``bytes`` before ``predict`` sees them, under the default
      ``auto`` rule.

    Optional methods, found by presence (Open Inference Protocol V2, README "Open
    Inference Protocol V2"):

    - ``predict_tensors(inputs: dict[str, numpy.ndarray], **kwargs)``: named input tensors
      sharing their first (batch) dimension -> an array or ``{output name: array}`` with
      one entry per row. Without it, V2 requests must send one tensor, whose rows become
      ``instances`` (``array.tolist()`` for custom classes).
    - ``tensor_metadata() -> {"inputs": [...], "outputs": [...]}``: ``{"name", "datatype",
      "shape"}`` per tensor (``-1`` for the batch and unknown dimensions), answered by
      ``GET /v2/models/{m}``.
    """

    batching: ClassVar[bool] = True
    decode_b64: ClassVar[bool] = True

    @abstractmethod
    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        """Return one JSON-serializable prediction per instance.

        :param instances: the request's ``instances`` list, JSON-decoded.
        :param kwargs: every other top-level key of the request body.
        """

    @classmethod
    @abstractmethod
    def from_path(cls, model_dir: str) -> Predictor:
        """Create an instance from the model files in the local directory ``model_dir``."""


@runtime_checkable
class PredictorLike(Protocol):
    """What the runtime calls on a loaded predictor: ``predict(instances, **kwargs)``.

    Structural: any object with such a method qualifies, whether or not its class
    subclasses :class:`Predictor`.
    """

    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        """One JSON-serializable prediction per instance."""
        ...


class FrameworkClass(Protocol):
    """The contract of a framework class, as given to ``register(cls)``.

    ``name`` is the CLI name (e.g. ``"sklearn"``), ``api_name`` the AI Platform
    ``framework`` enum value (or None), ``model_files`` the file names or globs it
    recognises in a model directory; ``from_path(model_dir)`` returns the loaded predictor
    (may take further keyword options, as the built-in ``custom`` framework does). Optional
    class attributes, read with defaults: ``decode_b64``, ``batching``, ``nan_as_null``
    (bools; see :func:`predictor_runtime.hookspecs.register_frameworks`). Plain class
    attributes satisfy the read-only members below.
    """

    name: str

    @property
    def api_name(self) -> str | None:
        """AI Platform's ``framework`` enum value, e.g. ``"SCIKIT_LEARN"``, or None."""
        ...

    @property
    def model_files(self) -> Sequence[str]:
        """File names or globs this framework recognises in a model directory."""
        ...

    @classmethod
    def from_path(cls, model_dir: str, /) -> PredictorLike:
        """Load the model in the local directory ``model_dir``."""
        ...

    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        """One JSON-serializable prediction per instance."""
        ...


def import_class(path: str) -> type[Any]:
    """Import ``module.Class`` or ``module:Class``; errors name the path and the problem."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        msg = (
            f"Invalid prediction class {path!r}: expected 'module.Class' or "
            "'module:Class' (e.g. 'predictor.MyPredictor')"
        )
        raise UserCodeError(msg)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        msg = (
            f"Prediction class {path!r} cannot be found: no module named {exc.name!r}. "
            "Check that the class name is fully qualified and that --package points at "
            "the code that defines it"
        )
        raise UserCodeError(msg) from exc
    except Exception as exc:
        msg = f"Importing module {module_name!r} for prediction class {path!r} failed: " + (
            f"{type(exc).__name__}: {exc}"
        )
        raise UserCodeError(msg) from exc
    cls = getattr(module, attr, None)
    if cls is None:
        msg = f"Prediction class {path!r} cannot be found: module {module_name!r} has no {attr!r}"
        raise UserCodeError(msg)
    if not isinstance(cls, type):
        msg = f"Prediction class {path!r} is a {type(cls).__name__}, not a class"
        raise UserCodeError(msg)
    return cls


#: methods that make a class a generative predictor, which then needs no ``predict``.
GENERATIVE_METHODS = ("generate", "generate_stream", "embed", "count_tokens")


def validate_predictor_class(cls: type) -> None:
    """Check that ``cls`` has ``from_path`` and ``predict(self, instances, **kwargs)``
    (or, instead of ``predict``, one of :data:`GENERATIVE_METHODS`).

    As AI Platform does, the positional parameters of ``predict`` must be exactly
    ``(self, instances)``; further parameters must be keyword-only or have defaults.
    """
    name = f"{cls.__module__}.{cls.__qualname__}"
    from_path = getattr(cls, "from_path", None)
    if from_path is None or not callable(from_path):
        msg = f"Prediction class {name} must implement the from_path classmethod"
        raise UserCodeError(msg)
    predict = getattr(cls, "predict", None)
    if predict is None or not callable(predict):
        if any(callable(getattr(cls, m, None)) for m in GENERATIVE_METHODS):
            return  # a generative predictor (SPEC 9): serves the generative routes only
        msg = f"Prediction class {name} is missing the required predict method"
        raise UserCodeError(msg)
    try:
        params = list(inspect.signature(predict).parameters.values())
    except (TypeError, ValueError):
        return  # builtins and C extensions without signatures: trust them
    if inspect.isfunction(predict) and params:
        params = params[1:]  # plain function looked up on the class: drop self
    required = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    var_positional = any(p.kind is p.VAR_POSITIONAL for p in params)
    if len(required) != 1 and not (var_positional and not required):
        got = ", ".join(["self", *(str(p) for p in params)])
        msg = (
            f"Prediction class {name} has a predict method with an invalid signature. "
            f"Expected signature: (self, instances, **kwargs). User signature: ({got})"
        )
        raise UserCodeError(msg)


def accepts_kwargs(cls: type) -> bool:
    """Whether ``cls.predict`` takes ``**kwargs`` (extra request keys can be passed)."""
    predict = getattr(cls, "predict", None)
    if predict is None:
        return True
    try:
        params = inspect.signature(predict).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)
