"""The generative routes over plain HTTP (httpx): both streaming framings, Google's error
envelope for every kind of bad input, enum and casing rules, the shared ``/v1/models``,
embedding batching, fallbacks between generate and generate_stream, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import LiveServer, start_live_server
from echo_predictor import EchoPredictor
from generative_predictor import RecordingGenerator

from predictor_runtime.loader import LoadedModel

GEN = "/v1beta/models/echo"


class OnlyGenerate:
    def generate(self, contents, temperature=None):
        return f"t={temperature}"


class OnlyStream:
    def generate_stream(self, contents, **config):
        yield "a"
        yield {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finish_reason": 2}]}


def add_model(srv: LiveServer, name: str, predictor: Any) -> None:
    version = srv.registry.add_version(name, "v1", deployment_uri=f"/nonexistent/{name}")
    srv.registry.attach(version, LoadedModel.wrap(predictor, "custom", "/nonexistent"))


@pytest.fixture(scope="module")
def srv() -> Iterator[LiveServer]:
    server = start_live_server(predictor=RecordingGenerator(), max_request_bytes=100_000)
    add_model(server, "plain", EchoPredictor())
    add_model(server, "only-generate", OnlyGenerate())
    add_model(server, "only-stream", OnlyStream())
    try:
        yield server
    finally:
        server.stop()


def post(srv: LiveServer, path: str, body: Any, **kw: Any) -> httpx.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(srv.url + path, content=data, timeout=30, **kw)


def turn(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def envelope(r: httpx.Response, code: int, status: str) -> str:
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["status"] == status
    assert "Traceback" not in err["message"]
    return err["message"]


# -- streaming framings -------------------------------------------------------------------


def test_sse_framing(srv: LiveServer) -> None:
    full = post(srv, f"{GEN}:generateContent", turn("a b c")).json()
    r = post(srv, f"{GEN}:streamGenerateContent?alt=sse", turn("a b c"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.text.split("\r\n\r\n")
    assert events[-1] == ""
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(e.startswith("data: {") for e in events[:-1])
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == full["candidates"][0]["content"]["parts"][0]["text"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == full["usageMetadata"]
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])


@pytest.mark.parametrize("query", ["", "?alt=json", "?%24alt=json%3Benum-encoding%3Dint"])
def test_json_array_framing(srv: LiveServer, query: str) -> None:
    r = post(srv, f"{GEN}:streamGenerateContent{query}", turn("x y z"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.text.startswith("[{") and r.text.endswith("}]")  # nothing outside the array
    chunks = json.loads(r.text)
    assert len(chunks) == 6  # "x ", "y ", "z ", "| ", "{}", the closing chunk
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_chunks_arrive_as_produced(srv: LiveServer) -> None:
    body = {**turn("w1 w2 w3 w4 w5 w6"), "generationConfig": {"seed": 7}}  # 50 ms a word
    started = time.perf_counter()
    arrivals = []
    with httpx.stream(
        "POST", f"{srv.url}{GEN}:streamGenerateContent?alt=sse", json=body, timeout=30
    ) as r:
        for _ in r.iter_raw():
            arrivals.append(time.perf_counter() - started)
    assert len(arrivals) >= 3  # (the client may read two events at once)
    assert arrivals[-1] - arrivals[0] >= 0.2  # spread over the generation, not one burst


def test_mid_stream_error_is_the_last_element(srv: LiveServer) -> None:
    r = post(srv, f"{GEN}:streamGenerateContent", turn("fail later a b c d"))
    chunks = json.loads(r.text)
    assert len(chunks) == 4 and "candidates" in chunks[0]
    assert chunks[-1]["error"]["status"] == "INTERNAL"
    assert "stream broke after three words" in chunks[-1]["error"]["message"]
    r = post(srv, f"{GEN}:streamGenerateContent?alt=sse", turn("fail later a b c d"))
    last = r.text.split("\r\n\r\n")[-2]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == 500


def test_disconnect_closes_the_generator(srv: LiveServer) -> None:
    predictor = srv.predictor()
    predictor.stream_closed.clear()
    body = {**turn(" ".join(f"w{i}" for i in range(400))), "generationConfig": {"seed": 7}}
    with httpx.stream(
        "POST", f"{srv.url}{GEN}:streamGenerateContent?alt=sse", json=body, timeout=30
    ) as r:
        next(r.iter_raw())
    assert predictor.stream_closed.wait(8)  # well before the 20 s the stream would take


# -- errors -------------------------------------------------------------------------------


def test_unknown_model_and_unsupported_capability(srv: LiveServer) -> None:
    msg = envelope(post(srv, "/v1beta/models/nope:generateContent", turn("x")), 404, "NOT_FOUND")
    assert "models/nope" in msg
    for verb, method in [
        ("generateContent", "generate or generate_stream"),
        ("streamGenerateContent", "generate_stream or generate"),
        ("embedContent", "embed"),
        ("batchEmbedContents", "embed"),
        ("countTokens", "count_tokens"),
    ]:
        r = post(srv, f"/v1beta/models/plain:{verb}", turn("x"))
        assert f"no {method} method" in envelope(r, 501, "UNIMPLEMENTED")
    r = post(srv, "/v1beta/models/only-generate:embedContent", {"content": "x"})
    assert "OnlyGenerate has no embed method" in envelope(r, 501, "UNIMPLEMENTED")


@pytest.mark.parametrize(
    ("verb", "body", "field"),
    [
        ("generateContent", b"{not json", "Invalid JSON payload"),
        ("generateContent", [1, 2], "expected an object"),
        ("generateContent", {}, "'contents' is required"),
        ("generateContent", {"contents": []}, "'contents' must not be empty"),
        ("generateContent", {"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
        ("generateContent", {"contents": [{"parts": "hi"}]}, "contents[0].parts"),
        ("generateContent", {"contents": ["ok", 5]}, "contents[1]"),
        ({**turn("x"), "generationConfig": {"temperature": "hot"}}, None, "generationConfig.temperature"),
        ({**turn("x"), "generationConfig": {"topK": -1}}, None, "generationConfig.topK"),
        ({**turn("x"), "generationConfig": {"maxOutputTokens": 1.5}}, None, "generationConfig.maxOutputTokens"),
        ({**turn("x"), "generationConfig": {"stopSequences": [1]}}, None, "generationConfig.stopSequences"),
        ({**turn("x"), "safetySettings": [{"category": 99}]}, None, "safetySettings[0].category"),
        ({**turn("x"), "systemInstruction": 5}, None, "systemInstruction"),
        ("embedContent", {}, "'content' is required"),
        ("embedContent", {"content": {"parts": [{"inlineData": {}}]}}, "no text to embed"),
        ("embedContent", {"content": "x", "taskType": "NOPE"}, "taskType"),
        ("embedContent", {"content": "x", "taskType": 42}, "taskType"),
        ("embedContent", {"content": "x", "outputDimensionality": 0}, "outputDimensionality"),
        ("batchEmbedContents", {"requests": []}, "'requests' must be a non-empty list"),
        (
            "batchEmbedContents",
            {"requests": [{"content": "a"}, {"model": "models/other", "content": "b"}]},
            "requests[1].model",
        ),
        ("countTokens", {"generateContentRequest": 3}, "generateContentRequest"),
    ],
)  # fmt: skip
def test_invalid_argument_names_the_field(
    srv: LiveServer, verb: Any, body: Any, field: str
) -> None:
    if not isinstance(verb, str):  # generateContent with the body in the first slot
        verb, body = "generateContent", verb
    assert field in envelope(post(srv, f"{GEN}:{verb}", body), 400, "INVALID_ARGUMENT")


def test_versions_loading_or_failed(srv: LiveServer) -> None:
    from predictor_runtime.server.registry import FAILED

    srv.registry.add_version("loading", "v1", deployment_uri="/nonexistent/loading")
    broken = srv.registry.add_version("broken", "v1", deployment_uri="/nonexistent/broken")
    broken.state, broken.error_message = FAILED, "ModelLoadError: no model file"
    r = post(srv, "/v1beta/models/loading:generateContent", turn("x"))
    assert "not ready yet" in envelope(r, 503, "UNAVAILABLE")
    assert r.headers["retry-after"] == "1"
    r = post(srv, "/v1beta/models/broken:embedContent", {"content": "x"})
    assert "no model file" in envelope(r, 400, "FAILED_PRECONDITION")
    model = httpx.get(f"{srv.url}/v1beta/models/loading").json()
    assert model["supportedGenerationMethods"] == []
    for name in ("loading", "broken"):
        del srv.registry.models[name]


def test_bad_alt_and_too_large_body(srv: LiveServer) -> None:
    r = post(srv, f"{GEN}:streamGenerateContent?alt=xml", turn("x"))
    assert "'alt'" in envelope(r, 400, "INVALID_ARGUMENT")
    r = post(srv, f"{GEN}:generateContent", turn("x" * 200_000))
    assert r.status_code == 413 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_predictor_exception_is_internal_without_traceback(srv: LiveServer) -> None:
    msg = envelope(post(srv, f"{GEN}:generateContent", turn("boom")), 500, "INTERNAL")
    assert msg == "generate failed: ValueError: the model exploded"
    msg = envelope(post(srv, f"{GEN}:embedContent", {"content": "boom"}), 500, "INTERNAL")
    assert "ValueError: cannot embed boom" in msg
    r = post(srv, f"{GEN}:streamGenerateContent?alt=sse", turn("boom"))  # before any chunk
    envelope(r, 500, "INTERNAL")


def test_strict_signature_refuses_options_it_cannot_take(srv: LiveServer) -> None:
    r = post(srv, "/v1beta/models/only-generate:generateContent", {
        **turn("x"), "generationConfig": {"temperature": 0.5, "topK": 2}})  # fmt: skip
    msg = envelope(r, 400, "INVALID_ARGUMENT")
    assert "generationConfig.topK" in msg and "takes temperature" in msg
    body = {**turn("x"), "generationConfig": {"temperature": 0.5}, "safetySettings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": 4}]}  # fmt: skip
    r = post(srv, "/v1beta/models/only-generate:generateContent", body)  # hints are dropped
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == "t=0.5"


# -- shapes -------------------------------------------------------------------------------


def test_enums_as_numbers_and_snake_case_fields(srv: LiveServer) -> None:
    body = {
        "contents": "plain string",
        "generation_config": {"max_output_tokens": "9", "response_modalities": [1]},
        "system_instruction": {"parts": [{"text": "sys"}]},
        "safety_settings": [{"category": 7, "threshold": "BLOCK_NONE"}],
    }
    r = post(srv, f"{GEN}:generateContent", body)
    text = r.json()["candidates"][0]["content"]["parts"][0]["text"]
    prompt, _, config = text.partition(" | ")
    assert prompt == "plain string"
    assert json.loads(config) == {
        "max_output_tokens": 9,
        "response_modalities": ["TEXT"],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }


def test_list_of_strings_and_full_responses(srv: LiveServer) -> None:
    r = post(srv, f"{GEN}:generateContent", turn("list")).json()
    assert [c["content"]["parts"][0]["text"] for c in r["candidates"]] == [
        "first answer",
        "second answer",
    ]
    assert [c["index"] for c in r["candidates"]] == [0, 1]
    assert all(
        c["finishReason"] == "STOP" and c["content"]["role"] == "model" for c in r["candidates"]
    )
    # a predictor's own response: snake_case keys and numeric enums are rewritten
    r = post(srv, "/v1beta/models/only-stream:generateContent", turn("x")).json()
    cand = r["candidates"][0]
    assert cand["content"]["parts"][0]["text"] == "ab" and cand["finishReason"] == "MAX_TOKENS"


def test_fallbacks_between_generate_and_generate_stream(srv: LiveServer) -> None:
    chunks = json.loads(
        post(srv, "/v1beta/models/only-generate:streamGenerateContent", turn("x")).text
    )
    assert (
        len(chunks) == 1 and chunks[0]["candidates"][0]["content"]["parts"][0]["text"] == "t=None"
    )
    chunks = json.loads(
        post(srv, "/v1beta/models/only-stream:streamGenerateContent", turn("x")).text
    )
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["a", "b", ""]
    assert chunks[1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[2]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_count_tokens_with_generate_content_request(srv: LiveServer) -> None:
    body = {"generateContentRequest": {**turn("three more words"), "systemInstruction": "s t"}}
    assert post(srv, f"{GEN}:countTokens", body).json() == {"totalTokens": 5}


def test_models_and_the_shared_v1_paths(srv: LiveServer) -> None:
    models = httpx.get(f"{srv.url}/v1beta/models").json()["models"]
    assert [m["name"] for m in models] == [
        "models/echo", "models/only-generate", "models/only-stream", "models/plain",
    ]  # fmt: skip
    echo = httpx.get(f"{srv.url}/v1beta/models/echo").json()
    assert echo["supportedGenerationMethods"][0] == "generateContent"
    assert echo["inputTokenLimit"] == 1000
    page = httpx.get(f"{srv.url}/v1beta/models?pageSize=3").json()
    assert len(page["models"]) == 3 and page["nextPageToken"] == "plain"
    rest = httpx.get(f"{srv.url}/v1beta/models?pageSize=3&pageToken=plain").json()
    assert [m["name"] for m in rest["models"]] == ["models/plain"] and "nextPageToken" not in rest
    r = httpx.get(f"{srv.url}/v1beta/models/missing")
    envelope(r, 404, "NOT_FOUND")
    # /v1/models is AI Platform's for other callers, Gemini's for Gemini clients
    plain = httpx.get(f"{srv.url}/v1/models/echo").json()
    assert plain["name"].endswith("/models/echo") and plain["name"].startswith("projects/")
    gemini = httpx.get(
        f"{srv.url}/v1/models/echo", headers={"x-goog-api-client": "google-genai-sdk/3.6.1"}
    ).json()
    assert gemini["name"] == "models/echo"


# -- batching and metrics -----------------------------------------------------------------


def test_concurrent_embeddings_are_merged_and_a_bad_one_fails_alone(srv: LiveServer) -> None:
    predictor = srv.predictor()
    predictor.embed_calls.clear()
    texts = [f"text {'a' * i}" for i in range(24)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            reqs = [c.post(f"{GEN}:embedContent", json={"content": t}) for t in texts]
            reqs.append(c.post(f"{GEN}:embedContent", json={"content": "boom"}))
            reqs.append(
                c.post(
                    f"{GEN}:batchEmbedContents",
                    json={
                        "requests": [{"content": "aa"}, {"content": "b", "outputDimensionality": 2}]
                    },
                )
            )
            return await asyncio.gather(*reqs)

    responses = asyncio.run(run())
    for i, r in enumerate(responses[:24]):
        assert r.json()["embedding"]["values"] == [len(texts[i]), i, 0.0]
    envelope(responses[24], 500, "INTERNAL")
    assert responses[25].json() == {
        "embeddings": [{"values": [2.0, 2.0, 0.0]}, {"values": [1.0, 0.0, 2.0]}]
    }
    calls = predictor.embed_calls
    assert len(calls) < 24  # merged into fewer embed calls than requests


def test_metrics(srv: LiveServer) -> None:
    post(srv, f"{GEN}:generateContent", turn("m e t r i c s"))
    post(srv, f"{GEN}:streamGenerateContent?alt=sse", turn("m e t"))
    text = httpx.get(f"{srv.url}/metrics").text
    for line in [
        'predictor_generative_requests_total{code="200",method="generateContent",model="echo",version="v1"}',
        'predictor_generative_time_to_first_chunk_seconds_count{model="echo",version="v1"}',
        'predictor_generative_input_tokens_total{method="streamGenerateContent",model="echo",version="v1"}',
        'predictor_generative_output_tokens_total{method="generateContent",model="echo",version="v1"}',
    ]:
        assert line in text, line
    assert (
        'predictor_generative_requests_total{code="404",method="generateContent",model="",version=""}'
        in text
    )
