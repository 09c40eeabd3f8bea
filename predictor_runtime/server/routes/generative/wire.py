"""Google's GenerativeService JSON <-> what generative predictors take and return.

Requests are read the way Google's servers read them: field names in camelCase or
snake_case, enums as names or numbers (``google-ai-generativelanguage`` sends numbers,
``google-genai`` names). Predictors then see one form: ``contents`` as a list of
``{"role", "parts": [{"text": ...}]}`` dicts, config keys in snake_case, enums as names.
Responses are written in camelCase with enum names (``google-genai`` rejects anything
else). Every validation error is a 400 ``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from ...http import HttpError

TASK_TYPES = [
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
]
HARM_CATEGORIES = [
    "HARM_CATEGORY_" + n
    for n in [
        "UNSPECIFIED",
        "DEROGATORY",
        "TOXICITY",
        "VIOLENCE",
        "SEXUAL",
        "MEDICAL",
        "DANGEROUS",
        "HARASSMENT",
        "HATE_SPEECH",
        "SEXUALLY_EXPLICIT",
        "DANGEROUS_CONTENT",
        "CIVIC_INTEGRITY",
    ]
]
HARM_THRESHOLDS = [
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
]
MODALITIES = ["MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO"]
MEDIA_RESOLUTIONS = ["MEDIA_RESOLUTION_" + n for n in ["UNSPECIFIED", "LOW", "MEDIUM", "HIGH"]]
#: response enums: number -> name (numbers are not contiguous for finish reasons).
FINISH_REASONS = dict(
    enumerate(
        [
            "FINISH_REASON_UNSPECIFIED",
            "STOP",
            "MAX_TOKENS",
            "SAFETY",
            "RECITATION",
            "OTHER",
            "LANGUAGE",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "MALFORMED_FUNCTION_CALL",
            "IMAGE_SAFETY",
            "UNEXPECTED_TOOL_CALL",
            "TOO_MANY_TOOL_CALLS",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_OTHER",
            "NO_IMAGE",
            "IMAGE_RECITATION",
        ]
    )
)
HARM_PROBABILITIES = dict(
    enumerate(["HARM_PROBABILITY_UNSPECIFIED", "NEGLIGIBLE", "LOW", "MEDIUM", "HIGH"])
)
BLOCK_REASONS = dict(
    enumerate(
        [
            "BLOCK_REASON_UNSPECIFIED",
            "SAFETY",
            "OTHER",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "IMAGE_SAFETY",
        ]
    )
)
_RESPONSE_ENUMS: dict[str, dict[int, str]] = {
    "finishReason": FINISH_REASONS,
    "blockReason": BLOCK_REASONS,
    "probability": HARM_PROBABILITIES,
    "category": dict(enumerate(HARM_CATEGORIES)),
    "modality": dict(enumerate(MODALITIES)),
}
#: values under these keys are user data (function arguments...): their keys stay as they are.
_OPAQUE = frozenset({"args", "response", "structValue", "responseSchema", "parameters"})
_CAMEL = re.compile(r"_([a-z0-9])")
_SNAKE = re.compile(r"(?<!^)([A-Z])")


def bad(message: str) -> HttpError:
    """A 400 ``INVALID_ARGUMENT`` error."""
    return HttpError(400, message, google_status="INVALID_ARGUMENT")


def camel(name: str) -> str:
    """``max_output_tokens`` -> ``maxOutputTokens``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def snake(name: str) -> str:
    """``maxOutputTokens`` -> ``max_output_tokens``."""
    return _SNAKE.sub(r"_\1", name).lower()


def show(value: Any) -> str:
    """A short rendering of a received value for error messages."""
    text = orjson.dumps(value, default=repr).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad(f"Invalid JSON payload received: {exc}") from None
    if not isinstance(payload, dict):
        raise bad(f"Invalid JSON payload received: expected an object, got {show(payload)}")
    return payload


def get(obj: dict[str, Any], name: str) -> Any:
    """Field ``name`` (camelCase) of ``obj``, also found under its snake_case name."""
    if name in obj:
        return obj[name]
    return obj.get(snake(name))


def enum(value: Any, names: list[str] | tuple[str, ...], where: str) -> str:
    """An enum given as a name or a number -> its name."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return names[value]
    elif isinstance(value, str) and value in names:
        return value
    raise bad(f"Invalid value at '{where}': {show(value)} is not one of {', '.join(names)}")


# -- requests -----------------------------------------------------------------------------


def content(value: Any, where: str, *, default_role: str | None = "user") -> dict[str, Any]:
    """One ``Content``: a string becomes a user turn; parts are checked, keys camelCased."""
    if isinstance(value, str):
        return {"role": default_role or "user", "parts": [{"text": value}]}
    if not isinstance(value, dict):
        raise bad(f"Invalid value at '{where}': expected a Content object, got {show(value)}")
    parts = value.get("parts")
    if parts is None:
        parts = []
    if not isinstance(parts, list):
        raise bad(f"Invalid value at '{where}.parts': expected a list, got {show(parts)}")
    out_parts = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            part = {"text": part}
        if not isinstance(part, dict):
            raise bad(f"Invalid value at '{where}.parts[{i}]': expected a Part, got {show(part)}")
        part = {camel(k): v for k, v in part.items()}
        if "text" in part and not isinstance(part["text"], str):
            raise bad(
                f"Invalid value at '{where}.parts[{i}].text': expected a string, "
                f"got {show(part['text'])}"
            )
        out_parts.append(part)
    role = value.get("role")
    if role is not None and not isinstance(role, str):
        raise bad(f"Invalid value at '{where}.role': expected a string, got {show(role)}")
    out: dict[str, Any] = {"parts": out_parts}
    if role or default_role:
        out["role"] = role or default_role
    return out


def contents(value: Any, where: str = "contents") -> list[dict[str, Any]]:
    """``contents``: a list of Contents (a bare string or strings become user turns)."""
    if value is None:
        raise bad(f"'{where}' is required: give at least one Content with parts")
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise bad(f"Invalid value at '{where}': expected a list of Contents, got {show(value)}")
    if not value:
        raise bad(f"'{where}' must not be empty")
    return [content(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _number(value: Any, where: str, *, integer: bool, low: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if integer and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)  # proto3 JSON may quote integers
        else:
            kind = "an integer" if integer else "a number"
            raise bad(f"Invalid value at '{where}': expected {kind}, got {show(value)}")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise bad(f"Invalid value at '{where}': expected an integer, got {show(value)}")
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(f"Invalid value at '{where}': expected a finite number, got {value}")
    if low is not None and value < low:
        raise bad(f"Invalid value at '{where}': must be at least {low:g}, got {value}")
    return value


#: generationConfig fields checked here: name -> (integer?, lowest value).
_CONFIG_NUMBERS: dict[str, tuple[bool, float | None]] = {
    "temperature": (False, 0),
    "top_p": (False, 0),
    "top_k": (True, 0),
    "candidate_count": (True, 1),
    "max_output_tokens": (True, 1),
    "seed": (True, None),
    "presence_penalty": (False, None),
    "frequency_penalty": (False, None),
    "logprobs": (True, 0),
}


def generation_config(value: Any, where: str = "generationConfig") -> dict[str, Any]:
    """``generationConfig`` -> keyword arguments in snake_case, checked and enum names."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"Invalid value at '{where}': expected an object, got {show(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = snake(key)
        at = f"{where}.{camel(name)}"
        if item is None:
            continue
        if name in _CONFIG_NUMBERS:
            integer, low = _CONFIG_NUMBERS[name]
            item = _number(item, at, integer=integer, low=low)
        elif name == "stop_sequences":
            if isinstance(item, str):
                item = [item]
            if not isinstance(item, list) or not all(isinstance(s, str) for s in item):
                raise bad(f"Invalid value at '{at}': expected a list of strings, got {show(item)}")
        elif name == "response_modalities":
            if not isinstance(item, list):
                raise bad(f"Invalid value at '{at}': expected a list, got {show(item)}")
            item = [enum(m, MODALITIES, f"{at}[{i}]") for i, m in enumerate(item)]
        elif name == "media_resolution":
            item = enum(item, MEDIA_RESOLUTIONS, at)
        out[name] = item
    return out


def safety_settings(value: Any, where: str = "safetySettings") -> list[dict[str, str]]:
    """``safetySettings``: checked, enum names."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"Invalid value at '{where}': expected a list, got {show(value)}")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise bad(f"Invalid value at '{at}': expected an object, got {show(item)}")
        out.append(
            {
                "category": enum(item.get("category", 0), HARM_CATEGORIES, f"{at}.category"),
                "threshold": enum(item.get("threshold", 0), HARM_THRESHOLDS, f"{at}.threshold"),
            }
        )
    return out


def generate_request(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A ``GenerateContentRequest`` -> ``(contents, config)`` for the predictor.

    ``config`` holds ``generationConfig``'s fields plus ``system_instruction`` (a Content),
    ``safety_settings``, ``tools``, ``tool_config`` and ``cached_content`` when given.
    """
    turns = contents(get(body, "contents"))
    config = generation_config(get(body, "generationConfig"))
    system = get(body, "systemInstruction")
    if system is not None:
        config["system_instruction"] = content(system, "systemInstruction", default_role=None)
    safety = safety_settings(get(body, "safetySettings"))
    if safety:
        config["safety_settings"] = safety
    for key in ("tools", "toolConfig", "cachedContent"):
        value = get(body, key)
        if value is not None:
            config[snake(key)] = value
    return turns, config


def count_request(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``CountTokensRequest`` -> the contents to count (the system instruction first)."""
    inner = get(body, "generateContentRequest")
    if inner is not None:
        if not isinstance(inner, dict):
            raise bad(
                f"Invalid value at 'generateContentRequest': expected an object, got {show(inner)}"
            )
        turns = contents(get(inner, "contents"), "generateContentRequest.contents")
        system = get(inner, "systemInstruction")
        if system is not None:
            at = "generateContentRequest.systemInstruction"
            turns.insert(0, content(system, at, default_role="user"))
        return turns
    return contents(get(body, "contents"))


def embed_request(body: dict[str, Any], model: str, where: str = "") -> tuple[str, dict[str, Any]]:
    """An ``EmbedContentRequest`` -> ``(text, config)``; ``model``, if given, must match."""
    prefix = f"{where}." if where else ""
    named = get(body, "model")
    if named is not None and named not in (f"models/{model}", model):
        raise bad(
            f"Invalid value at '{prefix}model': {show(named)} does not match the model in "
            f"the URL, models/{model}"
        )
    raw = get(body, "content")
    if raw is None:
        raise bad(f"'{prefix}content' is required: give a Content with text parts")
    turn = content(raw, f"{prefix}content")
    texts = [p["text"] for p in turn["parts"] if isinstance(p.get("text"), str)]
    if not texts:
        raise bad(f"Invalid value at '{prefix}content.parts': no text to embed")
    config: dict[str, Any] = {}
    task = get(body, "taskType")
    if task is not None:
        config["task_type"] = enum(task, TASK_TYPES, f"{prefix}taskType")
    title = get(body, "title")
    if title is not None:
        if not isinstance(title, str):
            raise bad(f"Invalid value at '{prefix}title': expected a string, got {show(title)}")
        config["title"] = title
    dims = get(body, "outputDimensionality")
    if dims is not None:
        config["output_dimensionality"] = _number(
            dims, f"{prefix}outputDimensionality", integer=True, low=1
        )
    return "\n".join(texts), config


def batch_embed_request(body: dict[str, Any], model: str) -> list[tuple[str, dict[str, Any]]]:
    """A ``BatchEmbedContentsRequest`` -> one ``(text, config)`` per request."""
    requests = get(body, "requests")
    if not isinstance(requests, list) or not requests:
        raise bad(
            f"'requests' must be a non-empty list of EmbedContentRequests, got {show(requests)}"
        )
    out = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise bad(f"Invalid value at 'requests[{i}]': expected an object, got {show(item)}")
        out.append(embed_request(item, model, f"requests[{i}]"))
    return out


# -- responses ----------------------------------------------------------------------------


def camel_keys(value: Any, key: str = "") -> Any:
    """Keys to camelCase and response enums to names, recursively (user data untouched)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            name = camel(k) if isinstance(k, str) else k
            out[name] = v if name in _OPAQUE else camel_keys(v, name)
        return out
    if isinstance(value, list):
        return [camel_keys(v, key) for v in value]
    table = _RESPONSE_ENUMS.get(key)
    if table is not None and isinstance(value, int) and not isinstance(value, bool):
        return table.get(value, value)
    return value


def model_content(text: str) -> dict[str, Any]:
    """A model turn holding ``text``."""
    return {"role": "model", "parts": [{"text": text}]}


def response(value: Any, *, stream: bool = False) -> dict[str, Any]:
    """What ``generate`` (or one ``generate_stream`` chunk) returned -> a camelCase
    ``GenerateContentResponse``: a string is one candidate (finished with ``STOP`` unless
    streaming), a list of strings one candidate each, a dict a response as it is."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        cands = []
        for i, text in enumerate(value):
            cand: dict[str, Any] = {"content": model_content(text), "index": i}
            if not stream:
                cand["finishReason"] = "STOP"
            cands.append(cand)
        return {"candidates": cands}
    if not isinstance(value, dict):
        what = "generate_stream yielded" if stream else "generate returned"
        raise HttpError(
            500,
            f"The model's {what} {show(value)}; expected a string, a list of strings or a "
            "GenerateContentResponse object",
        )
    out = camel_keys(value)
    cands = out.get("candidates")
    if isinstance(cands, list):
        for i, cand in enumerate(cands):
            if isinstance(cand, dict):
                cand.setdefault("index", i)
                body = cand.get("content")
                if isinstance(body, dict):
                    body.setdefault("role", "model")
                if not stream:
                    cand.setdefault("finishReason", "STOP")
    result: dict[str, Any] = out
    return result


def texts(resp: dict[str, Any]) -> list[str]:
    """The text of each candidate of a response."""
    out = []
    for cand in resp.get("candidates") or []:
        parts = ((cand or {}).get("content") or {}).get("parts") or []
        out.append("".join(p.get("text", "") for p in parts if isinstance(p, dict)))
    return out


def has_content(resp: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries any candidate content (else it only finishes)."""
    return any(
        isinstance(c, dict) and (c.get("content") or {}).get("parts")
        for c in resp.get("candidates") or []
    )


def usage(prompt: int, candidates: int) -> dict[str, int]:
    """``usageMetadata``."""
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
    }


def dumps(value: Any) -> bytes:
    """Compact JSON (non-finite floats and numpy values are the predictor's problem: null)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise HttpError(500, f"The model's output cannot be written as JSON: {exc}") from None
