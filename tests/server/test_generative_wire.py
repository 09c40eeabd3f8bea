"""The generative wire format: enum tables against Google's own protos, casing rules,
the guarded ``/v1/models`` route."""

from __future__ import annotations

import pytest

from predictor_runtime.server.http import HttpError
from predictor_runtime.server.router import Router
from predictor_runtime.server.routes.generative import is_gemini_client, wire

glm = pytest.importorskip("google.ai.generativelanguage_v1beta")


def names(enum: type) -> dict[int, str]:
    return {e.value: e.name for e in enum}


def test_enum_tables_match_the_protos() -> None:
    assert dict(enumerate(wire.TASK_TYPES)) == names(glm.TaskType)
    assert dict(enumerate(wire.HARM_CATEGORIES)) == names(glm.HarmCategory)
    assert dict(enumerate(wire.HARM_THRESHOLDS)) == names(glm.SafetySetting.HarmBlockThreshold)
    assert dict(enumerate(wire.MODALITIES)) == names(glm.GenerationConfig.Modality)
    assert dict(enumerate(wire.MEDIA_RESOLUTIONS)) == names(glm.GenerationConfig.MediaResolution)
    assert names(glm.Candidate.FinishReason) == wire.FINISH_REASONS
    assert names(glm.SafetyRating.HarmProbability) == wire.HARM_PROBABILITIES
    assert names(glm.GenerateContentResponse.PromptFeedback.BlockReason) == wire.BLOCK_REASONS


def test_generation_config_fields_are_known_to_the_proto() -> None:
    fields = set(glm.GenerationConfig.meta.fields)
    checked = {k for k in wire._CONFIG_NUMBERS} | {"stop_sequences", "response_modalities"}
    assert checked <= fields


def test_response_rewrites_snake_case_and_numeric_enums_but_not_user_data() -> None:
    out = wire.response(
        {
            "candidates": [
                {
                    "content": {"parts": [{"function_call": {"name": "f", "args": {"a_b": 1}}}]},
                    "finish_reason": 2,
                    "safety_ratings": [{"category": 7, "probability": 1}],
                }
            ],
            "usage_metadata": {"prompt_token_count": 3},
        }
    )
    cand = out["candidates"][0]
    assert cand["finishReason"] == "MAX_TOKENS" and cand["index"] == 0
    assert cand["content"] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "f", "args": {"a_b": 1}}}],
    }
    assert cand["safetyRatings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}
    ]
    assert out["usageMetadata"] == {"promptTokenCount": 3}


def test_bad_output_is_a_500_naming_the_method() -> None:
    with pytest.raises(HttpError) as info:
        wire.response(42)
    assert info.value.status == 500 and "generate returned 42" in info.value.message


def test_is_gemini_client() -> None:
    def scope(headers=(), query=b""):
        return {"headers": list(headers), "query_string": query}

    assert is_gemini_client(
        scope([(b"x-goog-api-client", b"google-genai-sdk/3.6.1 gl-python/3.11")])
    )
    assert is_gemini_client(scope([(b"x-goog-api-client", b"gl-python/3.11 gapic/0.12.1")]))
    assert is_gemini_client(scope(query=b"%24alt=json%3Benum-encoding%3Dint"))
    assert not is_gemini_client(scope([(b"x-goog-api-client", b"gdcl/2.0 gl-python/3.11")]))
    assert not is_gemini_client(scope())


def test_guarded_routes_share_a_path_and_only_guarded_ones_may() -> None:
    async def a(req):  # pragma: no cover - never called
        return None

    router = Router()
    router.add("GET", "/v1/models", a)
    router.add("GET", "/v1/models", a, when=lambda scope: scope["gemini"])
    with pytest.raises(ValueError, match="registered twice"):
        router.add("GET", "/v1/models", a)
    match = router.match("/v1/models")
    guarded, plain = match.routes[0][0], match.routes[1][0]
    assert guarded.when is not None and plain.when is None
    assert match.for_method("GET", {"gemini": True})[0] is guarded
    assert match.for_method("GET", {"gemini": False})[0] is plain
    assert match.for_method("GET")[0] is plain
    assert match.for_method("HEAD", {"gemini": True})[0] is guarded
