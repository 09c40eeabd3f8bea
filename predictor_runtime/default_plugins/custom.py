"""The built-in ``custom`` framework: a user prediction class plus optional packages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UserCodeError
from ..hookspecs import Registrar, hookimpl
from ..packages import ACTIVATION_LOCK, activate_packages
from ..predictor import import_class, validate_predictor_class


class CustomFramework:
    """Loads ``--prediction-class module.Class`` and calls its ``from_path(model_dir)``.

    The returned object is the user's predictor itself; the runtime calls its
    ``predict(instances, **kwargs)`` with every request key other than ``instances``.
    """

    name = "custom"
    api_name = None
    model_files: tuple[str, ...] = ()
    decode_b64 = True

    @classmethod
    def from_path(
        cls,
        model_dir: str,
        prediction_class: str | None = None,
        packages: Sequence[str] = (),
        state_dir: str | None = None,
    ) -> Any:
        if not prediction_class:
            msg = "The custom framework needs a prediction class (--prediction-class module.Class)"
            raise UserCodeError(msg)
        # sys.path / sys.modules are process-wide: one version at a time activates its
        # packages, imports its class and builds its predictor (which may import more).
        with ACTIVATION_LOCK:
            if packages:
                activate_packages(packages, state_dir)
            user_cls = import_class(prediction_class)
            validate_predictor_class(user_cls)
            return user_cls.from_path(model_dir)

    def predict(self, instances: list[Any], **kwargs: Any) -> Any:
        raise NotImplementedError("CustomFramework.from_path returns the user's predictor")


@hookimpl
def register_frameworks(register: Registrar) -> None:
    register(CustomFramework)
