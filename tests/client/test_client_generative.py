"""``generate`` / ``embed``: thin helpers over the GenerativeService routes (SPEC 9)."""

from __future__ import annotations

import asyncio

import pytest
from client_helpers import start_cli_server, stop

from predictor_runtime.client import ApiError, AsyncClient, Client, NotFoundError

pytestmark = pytest.mark.slow  # a serve subprocess per module


@pytest.fixture(scope="module")
def generative(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("generative")
    srv = start_cli_server(
        ["--example", "generative", "--state-dir", str(root / "state")], cwd=root, timeout=240
    )
    try:
        yield srv
    finally:
        stop(srv)


def model_name(url: str) -> str:
    import httpx

    answer = httpx.get(f"{url}/v1beta/models", timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["models"][0]["name"]).removeprefix("models/")


def test_generate_and_embed(generative):
    name = model_name(generative.url)
    with Client(generative.url) as client:
        text = client.generate(name, "The standard library", max_output_tokens=8, seed=1)
        assert isinstance(text, str) and text.strip()
        assert client.generate(name, "The standard library", max_output_tokens=8, seed=1) == text
        vectors = client.embed(name, ["open a file", "read a file", "sort a list"])
        assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 1
        with pytest.raises(NotFoundError):
            client.generate("no-such-model", "hi")
        with pytest.raises(ApiError) as exc:
            client.generate(name, "hi", temperature="hot")
        assert exc.value.status == 400 and exc.value.message


def test_async_generate_and_embed(generative):
    name = model_name(generative.url)

    async def main() -> None:
        async with AsyncClient(generative.url) as client:
            texts = await asyncio.gather(
                *(client.generate(name, f"prompt {i}", max_output_tokens=4) for i in range(10))
            )
            assert all(isinstance(t, str) for t in texts)
            assert len(await client.embed(name, ["a", "b"])) == 2

    asyncio.run(main())
