"""Calling a generative predictor: arguments it can take, blocking calls off the event
loop, usage metadata from ``count_tokens``, streaming, and the embedding batcher.

Predictor capabilities are methods, found by presence (SPEC 9):
``generate(contents, **config)``, ``generate_stream(contents, **config)``,
``embed(texts, **config)``, ``count_tokens(contents)``. Their exceptions become 500
``INTERNAL`` with the message (no traceback); a
:class:`~predictor_runtime.errors.PredictorRuntimeError` keeps its status.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ....batching import Batcher
from ....errors import PredictorRuntimeError
from ....lazy import lazy_numpy
from ....pipeline import Pipeline, iterate_in_thread
from ...http import HttpError
from . import wire

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_numpy(globals())

logger = logging.getLogger("predictor_runtime.server")

#: config keys a predictor may ignore when its method does not take them.
_OPTIONAL = frozenset({"safety_settings", "task_type", "title"})
#: where each config key came from in the request, for error messages.
_TOP_LEVEL = frozenset({"system_instruction", "tools", "tool_config", "cached_content"})


def unsupported(calls: Calls, route: str, methods: str) -> HttpError:
    """501 ``UNIMPLEMENTED`` for a route the predictor has no method for."""
    name = type(calls.pipeline.predictor).__name__
    return HttpError(
        501,
        f"{route} is not supported by this model: its predictor {name} has no {methods} method",
        google_status="UNIMPLEMENTED",
    )


def failed(exc: Exception, what: str) -> PredictorRuntimeError:
    """A predictor exception -> the error to answer (500 ``INTERNAL`` with its message)."""
    if isinstance(exc, PredictorRuntimeError):
        return exc
    logger.warning("predictor %s failed", what, exc_info=exc)
    return HttpError(500, f"{what} failed: {type(exc).__name__}: {exc}", google_status="INTERNAL")


@functools.lru_cache(maxsize=256)
def _accepted(fn: Callable[..., Any], skip: int) -> tuple[bool, frozenset[str]]:
    """``(takes **kwargs, keyword names)`` of ``fn``, its first ``skip`` parameters
    (``self``, ``contents``) excluded. Cached per function (class-level, so the cache
    keeps no predictor alive)."""
    try:
        params = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return True, frozenset()
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return var_kw, names


def arguments(method: Any, config: dict[str, Any], where: str) -> dict[str, Any]:
    """The part of ``config`` that ``method`` takes.

    A method with ``**config`` gets everything. Otherwise keys it does not name are
    dropped when they are hints (safety settings, embedding task type and title) and
    refused (400 naming the field) when ignoring them would change the answer.
    """
    func = getattr(method, "__func__", None)
    var_kw, names = _accepted(func, 2) if func is not None else _accepted.__wrapped__(method, 1)
    if var_kw:
        return config
    out = {}
    for key, value in config.items():
        if key in names:
            out[key] = value
        elif key not in _OPTIONAL:
            field = wire.camel(key) if key in _TOP_LEVEL else f"{where}.{wire.camel(key)}"
            owner = getattr(method, "__qualname__", "the predictor")
            takes = ", ".join(sorted(names)) or "no options"
            raise wire.bad(f"'{field}' is not supported by this model ({owner} takes {takes})")
    return out


class Calls:
    """The generative calls of one loaded model (kept per pipeline)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        p = pipeline.predictor
        self.generate = getattr(p, "generate", None) if pipeline.has("generate") else None
        self.stream = (
            getattr(p, "generate_stream", None) if pipeline.has("generate_stream") else None
        )
        self.embed = getattr(p, "embed", None) if pipeline.has("embed") else None
        self.count = getattr(p, "count_tokens", None) if pipeline.has("count_tokens") else None
        self._batcher: Batcher | None = None

    def methods(self) -> list[str]:
        """``supportedGenerationMethods`` of the model."""
        out = []
        if self.generate or self.stream:
            out += ["generateContent", "streamGenerateContent"]
        if self.embed:
            out += ["embedContent", "batchEmbedContents"]
        if self.count:
            out.append("countTokens")
        if callable(getattr(self.pipeline.predictor, "predict", None)):
            out.append("predict")
        return out

    # -- token counts ---------------------------------------------------------------------

    def count_tokens(self, turns: list[dict[str, Any]]) -> int:
        """``count_tokens(turns)`` (blocking), checked to be a non-negative int."""
        assert self.count is not None
        try:
            n = self.count(turns)
        except Exception as exc:
            raise failed(exc, "count_tokens") from exc
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise HttpError(500, f"count_tokens returned {wire.show(n)}; expected an int >= 0")
        return int(n)

    def _prompt(self, turns: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
        system = config.get("system_instruction")
        return [{"role": "user", **system}, *turns] if system else turns

    def usage(
        self, turns: list[dict[str, Any]], config: dict[str, Any], texts: list[str]
    ) -> dict[str, int] | None:
        """``usageMetadata`` from ``count_tokens`` (None without it)."""
        if self.count is None:
            return None
        prompt = self.count_tokens(self._prompt(turns, config))
        out = self.count_tokens([wire.model_content(t) for t in texts]) if texts else 0
        return wire.usage(prompt, out)

    # -- generation -----------------------------------------------------------------------

    def generate_sync(self, turns: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        """One full response (blocking): ``generate``, or ``generate_stream`` joined."""
        if self.generate is not None:
            kwargs = arguments(self.generate, config, "generationConfig")
            try:
                out = self.generate(turns, **kwargs)
            except Exception as exc:
                raise failed(exc, "generate") from exc
            resp = wire.response(out)
        else:
            assert self.stream is not None
            resp = self._joined(turns, config)
        if "usageMetadata" not in resp:
            meta = self.usage(turns, config, wire.texts(resp))
            if meta is not None:
                resp["usageMetadata"] = meta
        return resp

    def _joined(self, turns: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
        assert self.stream is not None
        kwargs = arguments(self.stream, config, "generationConfig")
        pieces: list[str] = []
        finish = "STOP"
        try:
            for chunk in self.stream(turns, **kwargs):
                part = wire.response(chunk, stream=True)
                pieces.extend(wire.texts(part)[:1])
                finish = _finish(part) or finish
        except PredictorRuntimeError:
            raise
        except Exception as exc:
            raise failed(exc, "generate_stream") from exc
        cand = {"content": wire.model_content("".join(pieces)), "finishReason": finish, "index": 0}
        return {"candidates": [cand]}

    async def generate_async(
        self, turns: list[dict[str, Any]], config: dict[str, Any]
    ) -> dict[str, Any]:
        """:meth:`generate_sync` in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.generate_sync, turns, config)

    async def chunks(
        self, turns: list[dict[str, Any]], config: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Streamed responses as they are produced, then a closing chunk with the finish
        reason and ``usageMetadata``. Without ``generate_stream``, ``generate``'s whole
        response is the one chunk. Chunks carrying no content (only a finish reason, say)
        are folded into the closing chunk, so every chunk has text for clients to read."""
        if self.stream is None:
            yield await self.generate_async(turns, config)
            return
        kwargs = arguments(self.stream, config, "generationConfig")
        stream = self.stream
        pieces: list[str] = []
        finish: str | None = None
        extra: dict[str, Any] = {}
        source = iterate_in_thread(lambda: stream(turns, **kwargs))
        try:
            async for chunk in source:
                resp = wire.response(chunk, stream=True)
                finish = _finish(resp) or finish
                for key in ("usageMetadata", "promptFeedback"):
                    if key in resp:
                        extra[key] = resp[key]
                if not wire.has_content(resp):
                    continue
                pieces.extend(wire.texts(resp)[:1])
                yield resp
        except PredictorRuntimeError as exc:
            cause = exc.__cause__
            if isinstance(cause, Exception) and not isinstance(cause, PredictorRuntimeError):
                raise failed(cause, "generate_stream") from cause
            raise
        finally:
            await source.aclose()
        last: dict[str, Any] = {
            "candidates": [
                {"content": wire.model_content(""), "finishReason": finish or "STOP", "index": 0}
            ]
        }
        if "usageMetadata" not in extra and self.count is not None:
            loop = asyncio.get_running_loop()
            meta = await loop.run_in_executor(None, self.usage, turns, config, ["".join(pieces)])
            if meta is not None:
                extra["usageMetadata"] = meta
        last.update(extra)
        yield last

    # -- embeddings -----------------------------------------------------------------------

    def batcher(self) -> Batcher:
        """The adaptive batcher merging concurrent embedding requests into one ``embed``."""
        if self._batcher is None:
            p = self.pipeline
            self._batcher = Batcher(_EmbedTarget(self), max_batch_size=p.batcher.max_batch_size)
        return self._batcher

    async def embed_many(
        self, items: list[tuple[str, dict[str, Any]]], alive: Callable[[], bool] | None
    ) -> list[list[float]]:
        """Vectors for ``(text, config)`` items, in order: items with equal config go to
        the batcher together (and merge with other requests'); different configs apart."""
        groups: dict[bytes, list[int]] = {}
        for i, (_, config) in enumerate(items):
            groups.setdefault(wire.dumps(config), []).append(i)
        batcher = self.batcher()
        order = list(groups.values())
        results = await asyncio.gather(
            *(
                batcher.predict([items[i][0] for i in idx], items[idx[0]][1], alive=alive)
                for idx in order
            )
        )
        out: list[list[float]] = [[] for _ in items]
        for idx, vectors in zip(order, results, strict=True):
            for i, vector in zip(idx, vectors, strict=True):
                out[i] = vector
        return out

    async def aclose(self) -> None:
        """Stop the embedding batcher."""
        if self._batcher is not None:
            await self._batcher.aclose()


class _EmbedTarget:
    """What :class:`~predictor_runtime.batching.Batcher` calls: ``embed`` for the merged
    texts, checked to give one vector of numbers per text."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.model = calls.pipeline.model
        self.max_batch_size = calls.pipeline.batcher.max_batch_size

    def predict(self, texts: Sequence[str], kwargs: dict[str, Any]) -> list[list[float]]:
        embed = self.calls.embed
        assert embed is not None
        try:
            out = embed(list(texts), **arguments(embed, kwargs, "embedContent"))
        except Exception as exc:
            raise failed(exc, "embed") from exc
        try:
            array = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 2 or len(array) != len(texts):
            got = getattr(array, "shape", None)
            raise HttpError(
                500,
                f"embed returned {wire.show(out) if got is None else f'an array of shape {got}'} "
                f"for {len(texts)} texts; expected one vector of numbers per text",
            )
        if not np.isfinite(array).all():
            raise HttpError(500, "embed returned a vector with NaN or infinite values")
        return array.tolist()  # type: ignore[no-any-return]


def _finish(resp: dict[str, Any]) -> str | None:
    for cand in resp.get("candidates") or []:
        if isinstance(cand, dict) and cand.get("finishReason"):
            return str(cand["finishReason"])
    return None


def calls_for(pipeline: Pipeline) -> Calls:
    """The :class:`Calls` of ``pipeline`` (made once, closed with it)."""
    return pipeline.attachment("generative", Calls)
