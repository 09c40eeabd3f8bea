"""What :class:`Client` and :class:`AsyncClient` share: settings, routes, bodies, retry rules,
task and stream decoding. No I/O happens here, so both clients behave the same.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from ._errors import (
    ApiError,
    VersionFailedError,
    error_for_status,
)

#: Statuses retried with backoff: the server says it did not do the work (yet).
RETRY_STATUSES = frozenset({429, 503})
#: Transport errors raised before the request reached the server: always safe to resend.
UNSENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
#: Errors after which the server may have seen the request: resent only for requests
#: that are safe to repeat (reads, predictions; not task submission or resource writes).
MAYBE_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
#: Longest ``Retry-After`` honoured, so a misconfigured server cannot park a client.
MAX_RETRY_AFTER = 60.0

JSON_HEADERS = {"content-type": "application/json"}
_NUMPY_OPT = orjson.OPT_SERIALIZE_NUMPY


def encode(obj: Any) -> bytes:
    """JSON for a request body; numpy arrays and scalars are accepted as values.

    Non-finite floats become ``null`` (strict JSON); the server reads ``null`` as a
    missing value where the framework has one.
    """
    return orjson.dumps(obj, option=_NUMPY_OPT)


def seg(name: str) -> str:
    """``name`` quoted for one path segment."""
    return quote(str(name), safe="")


class Settings:
    """The connection settings both clients take (see :class:`Client` for their meaning)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float | None,
        retries: int,
        backoff: float,
        max_backoff: float,
        project: str,
        headers: Mapping[str, str] | None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError("backoff and max_backoff must not be negative")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.project = project
        self.timeout = timeout
        self.headers: dict[str, str] = dict(headers or {})
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``."""
        return {
            "base_url": self.base_url,
            "headers": self.headers,
            "timeout": self.timeout,
            "limits": httpx.Limits(max_connections=100, max_keepalive_connections=100),
        }

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        The server's ``Retry-After`` wins (capped at a minute); otherwise exponential
        backoff with "equal jitter": between half and all of ``backoff * 2**attempt``,
        at most ``max_backoff``.
        """
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        full = min(self.max_backoff, self.backoff * (2**attempt))
        return float(full / 2 + random.uniform(0, full / 2))

    # -- routes ---------------------------------------------------------------------

    def predict_path(self, model: str, version: str | None) -> str:
        """The ``ml v1`` predict route (short form, any project)."""
        if version is None:
            return f"/v1/models/{seg(model)}:predict"
        return f"/v1/models/{seg(model)}/versions/{seg(version)}:predict"

    def models_path(self, model: str | None = None) -> str:
        """``/v1/projects/{p}/models[/{m}]``."""
        base = f"/v1/projects/{seg(self.project)}/models"
        return base if model is None else f"{base}/{seg(model)}"

    def versions_path(self, model: str, version: str | None = None) -> str:
        """``/v1/projects/{p}/models/{m}/versions[/{v}]``."""
        base = f"{self.models_path(model)}/versions"
        return base if version is None else f"{base}/{seg(version)}"

    def operation_path(self, operation: Mapping[str, Any]) -> str:
        """The route of an Operation (its ``name`` is ``projects/{p}/operations/{id}``)."""
        name = str(operation.get("name", ""))
        if name.startswith("projects/"):
            return f"/v1/{name}"
        return f"/v1/projects/{seg(self.project)}/operations/{seg(name)}"

    @staticmethod
    def generative_path(model: str, method: str) -> str:
        """A GenerativeService route (``generateContent``, ``batchEmbedContents``)."""
        return f"/v1beta/models/{seg(model)}:{method}"

    @staticmethod
    def infer_path(model: str, version: str | None) -> str:
        """The V2 ``infer`` route."""
        if version is None:
            return f"/v2/models/{seg(model)}/infer"
        return f"/v2/models/{seg(model)}/versions/{seg(version)}/infer"


def predict_request(instances: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The predict body ``{"instances": [...], **kwargs}`` (a numpy array stays an array)."""
    if isinstance(instances, (str, bytes, Mapping)) or not hasattr(instances, "__len__"):
        raise TypeError(
            f"instances must be a list (or a numpy array) of instances, "
            f"got {type(instances).__name__}"
        )
    if "instances" in kwargs:
        raise TypeError("instances given twice (positionally and as a keyword)")
    return {"instances": instances, **kwargs}


def task_request(
    instances: Any,
    kwargs: dict[str, Any],
    callback_url: str | None = None,
    callback_auth: Mapping[str, Any] | None = None,
) -> bytes:
    """A Launch-style task body: ``{"args": <predict body>, [callback_url, callback_auth]}``."""
    body: dict[str, Any] = {"args": predict_request(instances, kwargs)}
    if callback_url is not None:
        body["callback_url"] = callback_url
    if callback_auth is not None:
        body["callback_auth"] = dict(callback_auth)
    return encode(body)


def no_version(version: str | None, method: str) -> None:
    """Tasks and streams run on the model's default version (a Launch model endpoint)."""
    if version is not None:
        raise ValueError(
            f"{method} runs on the model's default version (a model endpoint); "
            f"version={version!r} is not supported, use predict(..., version=...) instead"
        )


def predictions(payload: Any) -> list[Any]:
    """The ``predictions`` list of a predict response."""
    if isinstance(payload, dict) and "predictions" in payload:
        return payload["predictions"]  # type: ignore[no-any-return]
    raise ApiError(200, f"the server's answer has no 'predictions': {str(payload)[:200]}")


def task_outcome(payload: Any) -> tuple[str, list[Any] | None, ApiError | None]:
    """``(status, predictions, error)`` of a task as ``GET /v1/async-tasks/{id}`` shows it.

    ``predictions`` is set on SUCCESS, ``error`` on FAILURE (typed by the task's
    ``status_code``, its message the task's traceback); both are None while it runs.
    """
    status = str(payload.get("status", "")) if isinstance(payload, dict) else ""
    if status == "SUCCESS":
        result = payload.get("result")
        if isinstance(result, dict) and "result" in result:
            result = result["result"]
        return status, predictions(result), None
    if status == "FAILURE":
        code = payload.get("status_code") or 500
        message = payload.get("traceback") or "the task failed"
        return status, None, error_for_status(int(code), str(message).strip())
    return status, None, None


def stream_event(data: str) -> Any:
    """The chunk of one streaming-task event; a FAILURE event raises its typed error."""
    event = orjson.loads(data)
    if not isinstance(event, dict):
        return event
    if event.get("status") == "FAILURE":
        code = event.get("status_code") or 500
        message = event.get("traceback") or "the stream failed"
        raise error_for_status(int(code), str(message).strip())
    result = event.get("result")
    if isinstance(result, dict) and "result" in result:
        return result["result"]
    return result


class SSEDecoder:
    """Server-Sent Events, line by line: ``feed(line)`` returns an event's data when one ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Take one line (without its end); the joined ``data:`` lines at a blank line."""
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """An event left without its blank line when the stream ended."""
        return self.feed("")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def generate_request(contents: Any, config: dict[str, Any]) -> bytes:
    """A ``generateContent`` body: a string becomes one user turn; ``config`` keys are
    ``generationConfig`` fields in snake_case, ``system_instruction`` a string."""
    if isinstance(contents, str):
        contents = [{"role": "user", "parts": [{"text": contents}]}]
    body: dict[str, Any] = {"contents": contents}
    system = config.pop("system_instruction", None)
    if system is not None:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if config:
        body["generationConfig"] = {_camel(k): v for k, v in config.items()}
    return encode(body)


def generated_text(payload: Any) -> str:
    """The text of the first candidate of a ``generateContent`` answer."""
    try:
        parts = payload["candidates"][0]["content"]["parts"]
        return "".join(str(p.get("text", "")) for p in parts)
    except (KeyError, IndexError, TypeError):
        raise ApiError(200, f"the answer has no candidate text: {str(payload)[:200]}") from None


def embed_request(model: str, texts: Sequence[str]) -> bytes:
    """A ``batchEmbedContents`` body, one request per text."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one str")
    name = f"models/{model}"
    return encode(
        {"requests": [{"model": name, "content": {"parts": [{"text": t}]}} for t in texts]}
    )


def embeddings(payload: Any) -> list[list[float]]:
    """The vectors of a ``batchEmbedContents`` answer."""
    try:
        return [list(e["values"]) for e in payload["embeddings"]]
    except (KeyError, TypeError):
        raise ApiError(200, f"the answer has no embeddings: {str(payload)[:200]}") from None


def version_outcome(version: dict[str, Any]) -> dict[str, Any]:
    """The version after its create operation finished; raises if it FAILED."""
    if version.get("state") == "FAILED":
        raise VersionFailedError(str(version.get("errorMessage") or "no errorMessage"), version)
    return version


def items(payload: Any, key: str) -> tuple[list[Any], str | None]:
    """One page of a list answer: ``(items, nextPageToken)``."""
    if not isinstance(payload, dict):
        return [], None
    return list(payload.get(key) or []), payload.get("nextPageToken") or None
