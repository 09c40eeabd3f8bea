"""Google's own Gemini clients against ``serve`` (a subprocess): google-genai sync and async,
and google-ai-generativelanguage (REST transport), on a predictor that echoes what it got."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator

import pytest
from conftest import HERE, CliServer, start_cli_server

pytest.importorskip("google.genai")
pytest.importorskip("google.ai.generativelanguage_v1beta")

from generative_predictor import RecordingGenerator
from google import genai
from google.ai import generativelanguage_v1beta as glm
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.genai import errors as genai_errors
from google.genai import types

MODEL = "gen"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    root = tmp_path_factory.mktemp("gen")
    pkg = root / "pkg"
    pkg.mkdir()
    shutil.copy(HERE / "generative_predictor.py", pkg / "generative_predictor.py")
    (root / "model").mkdir()
    args = [
        "--model-dir", str(root / "model"), "--model-name", MODEL,
        "--prediction-class", "generative_predictor.RecordingGenerator",
        "--package", str(pkg), "--state-dir", str(root / "state"),
    ]  # fmt: skip
    srv = start_cli_server(args, cwd=root)
    try:
        yield srv
    finally:
        assert srv.stop() == 0
        for stream in (srv.proc.stdout, srv.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def client(server: CliServer) -> genai.Client:
    return genai.Client(api_key="x", http_options={"base_url": server.url, "api_version": "v1beta"})


@pytest.fixture(scope="module")
def gapic(server: CliServer) -> glm.GenerativeServiceClient:
    return glm.GenerativeServiceClient(
        transport="rest",
        client_options={"api_endpoint": server.url},
        credentials=AnonymousCredentials(),
    )


def echoed(text: str) -> tuple[str, dict]:
    """Split the test predictor's answer into the prompt it saw and its config."""
    prompt, _, config = text.partition(" | ")
    return prompt, json.loads(config)


CONFIG = types.GenerateContentConfig(
    system_instruction="answer in French",
    temperature=0.25,
    max_output_tokens=77,
    top_p=0.5,
    top_k=3,
    seed=11,
    stop_sequences=["END"],
    candidate_count=1,
)


def check_config(config: dict) -> None:
    assert config["system_instruction"]["parts"] == [{"text": "answer in French"}]
    assert config["temperature"] == 0.25
    assert config["max_output_tokens"] == 77
    assert config["top_p"] == 0.5
    assert config["top_k"] == 3
    assert config["seed"] == 11
    assert config["stop_sequences"] == ["END"]


def test_genai_generate_passes_system_instruction_and_config(client: genai.Client) -> None:
    r = client.models.generate_content(model=MODEL, contents="Bonjour", config=CONFIG)
    prompt, config = echoed(r.text)
    assert prompt == "Bonjour"
    check_config(config)
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    expected_prompt = RecordingGenerator().count_tokens(
        [{"parts": [{"text": "answer in French"}]}, {"parts": [{"text": "Bonjour"}]}]
    )
    usage = r.usage_metadata
    assert usage.prompt_token_count == expected_prompt == 4
    assert usage.candidates_token_count == len(r.text.split())
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert r.model_version == f"{MODEL}/v1"


def test_genai_stream_joins_to_the_full_text(client: genai.Client) -> None:
    full = client.models.generate_content(model=MODEL, contents="one two three", config=CONFIG)
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents="one two three", config=CONFIG)
    )
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == full.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == len(full.text.split())


def test_genai_embed_two_texts_and_count_tokens(client: genai.Client) -> None:
    r = client.models.embed_content(
        model=MODEL,
        contents=["banana", "kiwi"],
        config=types.EmbedContentConfig(output_dimensionality=3, task_type="RETRIEVAL_QUERY"),
    )
    assert [e.values for e in r.embeddings] == [[6.0, 3.0, 3.0], [4.0, 0.0, 3.0]]
    contents = "count these five little words"
    n = client.models.count_tokens(model=MODEL, contents=contents).total_tokens
    assert n == RecordingGenerator().count_tokens([{"parts": [{"text": contents}]}]) == 5


def test_genai_default_v1_and_models(server: CliServer) -> None:
    c = genai.Client(api_key="x", http_options={"base_url": server.url})  # /v1/
    assert echoed(c.models.generate_content(model=MODEL, contents="hi").text)[0] == "hi"
    model = c.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}"
    assert model.input_token_limit == 1000 and model.output_token_limit == 100
    assert "generateContent" in model.supported_actions
    assert [m.name for m in c.models.list()] == [f"models/{MODEL}"]


def test_genai_errors(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_content(model="missing", contents="x")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    with pytest.raises(genai_errors.ServerError) as info:
        client.models.generate_content(model=MODEL, contents="boom")
    assert info.value.code == 500 and info.value.status == "INTERNAL"
    assert "ValueError: the model exploded" in info.value.message
    assert "Traceback" not in info.value.message
    with pytest.raises(genai_errors.ServerError) as info:
        list(client.models.generate_content_stream(model=MODEL, contents="fail later a b c d"))
    assert "stream broke after three words" in info.value.message


# google-genai's aiohttp transport subclasses ClientSession, which aiohttp deprecates
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
def test_genai_async(server: CliServer) -> None:
    async def main() -> None:
        opts = {"base_url": server.url, "api_version": "v1beta"}
        async with genai.Client(api_key="x", http_options=opts).aio as aio:
            await use(aio)

    async def use(aio: genai.client.AsyncClient) -> None:
        full = await aio.models.generate_content(model=MODEL, contents="async hi", config=CONFIG)
        prompt, config = echoed(full.text)
        assert prompt == "async hi"
        check_config(config)
        pieces = [
            c.text
            async for c in await aio.models.generate_content_stream(
                model=MODEL, contents="async hi", config=CONFIG
            )
        ]
        assert len(pieces) > 3 and "".join(pieces) == full.text
        emb = await aio.models.embed_content(model=MODEL, contents=["aa", "bbb"])
        assert [e.values for e in emb.embeddings] == [[2.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
        count = await aio.models.count_tokens(model=MODEL, contents="a b c")
        assert count.total_tokens == 3

    asyncio.run(main())


def _request(text: str) -> glm.GenerateContentRequest:
    return glm.GenerateContentRequest(
        model=f"models/{MODEL}",
        contents=[glm.Content(role="user", parts=[glm.Part(text=text)])],
        system_instruction=glm.Content(parts=[glm.Part(text="answer in French")]),
        generation_config=glm.GenerationConfig(
            temperature=0.25,
            max_output_tokens=77,
            top_p=0.5,
            top_k=3,
            seed=11,
            stop_sequences=["END"],
        ),
        safety_settings=[glm.SafetySetting(category=7, threshold=4)],  # sent as numbers
    )


def test_gapic_generate_stream_count_embed(gapic: glm.GenerativeServiceClient) -> None:
    r = gapic.generate_content(_request("Salut"))
    text = r.candidates[0].content.parts[0].text
    prompt, config = echoed(text)
    assert prompt == "Salut"
    check_config(config)
    assert config["safety_settings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
    ]
    assert r.candidates[0].finish_reason == glm.Candidate.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count == 4

    chunks = list(gapic.stream_generate_content(_request("Salut")))
    assert len(chunks) > 3
    assert "".join(c.candidates[0].content.parts[0].text for c in chunks) == text

    count = gapic.count_tokens(
        glm.CountTokensRequest(model=f"models/{MODEL}", contents=_request("x y").contents)
    )
    assert count.total_tokens == 2

    one = gapic.embed_content(
        glm.EmbedContentRequest(
            model=f"models/{MODEL}",
            content=glm.Content(parts=[glm.Part(text="papaya")]),
            task_type=glm.TaskType.RETRIEVAL_DOCUMENT,
            output_dimensionality=2,
        )
    )
    assert list(one.embedding.values) == [6.0, 3.0, 2.0]
    batch = gapic.batch_embed_contents(
        glm.BatchEmbedContentsRequest(
            model=f"models/{MODEL}",
            requests=[
                glm.EmbedContentRequest(
                    model=f"models/{MODEL}", content=glm.Content(parts=[glm.Part(text=t)])
                )
                for t in ("a", "banana")
            ],
        )
    )
    assert [list(e.values) for e in batch.embeddings] == [[1.0, 1.0, 0.0], [6.0, 3.0, 0.0]]


def test_gapic_errors(gapic: glm.GenerativeServiceClient) -> None:
    with pytest.raises(gexc.NotFound):
        gapic.generate_content(glm.GenerateContentRequest(model="models/missing", contents=[]))
    with pytest.raises(gexc.InternalServerError) as info:
        gapic.generate_content(_request("boom"))
    assert "the model exploded" in info.value.message
    with pytest.raises(gexc.BadRequest) as info:
        gapic.count_tokens(glm.CountTokensRequest(model=f"models/{MODEL}"))
    assert "contents" in info.value.message


def test_model_service_client(server: CliServer) -> None:
    models = glm.ModelServiceClient(
        transport="rest",
        client_options={"api_endpoint": server.url},
        credentials=AnonymousCredentials(),
    )
    model = models.get_model(name=f"models/{MODEL}")
    assert list(model.supported_generation_methods) == [
        "generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents",
        "countTokens",
    ]  # fmt: skip
    assert [m.name for m in models.list_models()] == [f"models/{MODEL}"]


def test_server_survives_every_error_above(server: CliServer) -> None:
    import httpx

    assert server.proc.poll() is None
    assert httpx.get(f"{server.url}/healthz").status_code == 200
