"""One error family for the whole runtime.

Every error the runtime raises on purpose derives from :class:`PredictorRuntimeError`
and carries the HTTP status that fits it, so one handler (HTTP or CLI) turns the whole
family into ``{"error": "..."}`` and a status. Messages say what was received and what
was expected; structured fields stay available as attributes.
"""

from __future__ import annotations

from typing import Any


class PredictorRuntimeError(Exception):
    """Base of every error the runtime raises on purpose; ``status`` is the HTTP status."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        """The text shown to the user (``{"error": message}``)."""
        return str(self)


class InvalidRequestError(PredictorRuntimeError):
    """The request body is not a valid predict request (bad JSON, no ``instances``...)."""

    status = 400


class InvalidInstanceError(InvalidRequestError):
    """One instance is unusable: names its 0-based index, what was expected and what came.

    ``index`` is relative to the list the error was raised for; :meth:`shifted` rebases
    it when that list was a slice of the request (micro-batching).
    """

    def __init__(self, index: int, problem: str) -> None:
        self.index = index
        self.problem = problem
        super().__init__(self._format())

    def _format(self) -> str:
        return f"Invalid inputs: instance {self.index}: {self.problem}"

    def shifted(self, offset: int) -> InvalidInstanceError:
        """The same error with its index moved by ``offset`` rows."""
        if offset:
            self.index += offset
            self.args = (self._format(),)
        return self


class PredictionFailedError(PredictorRuntimeError):
    """The predictor raised while predicting (AI Platform: ``Prediction failed: ...``)."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(f"Prediction failed: {detail}")


class InvalidOutputError(PredictorRuntimeError):
    """The predictor returned something that cannot become a JSON response.

    A 400 like any other failure of the user's predictor (500 is kept for bugs of the
    runtime itself).
    """

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(f"There was a problem processing the outputs: {detail}")


class ModelLoadError(PredictorRuntimeError):
    """A model directory could not be loaded (missing files, bad pickle, user code...)."""

    status = 500


class UserCodeError(ModelLoadError):
    """A user prediction class cannot be imported or does not satisfy the interface."""


class FrameworkNotFoundError(ModelLoadError):
    """No framework, or more than one, fits a model directory; or an unknown name was given."""


class PluginError(PredictorRuntimeError):
    """A plugin registered something invalid (e.g. a framework name twice)."""


class NotFoundError(PredictorRuntimeError):
    """An unknown model, version or route."""

    status = 404


class PayloadTooLargeError(PredictorRuntimeError):
    """The request body is larger than the server accepts."""

    status = 413

    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f"{size} bytes" if size is not None else "more"
        super().__init__(f"Request body too large: {got}; the limit is {limit} bytes")


class NotReadyError(PredictorRuntimeError):
    """The version exists but is not READY."""

    status = 503


def describe(value: Any, limit: int = 60) -> str:
    """A short, type-tagged rendering of a received value for error messages."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"
