"""The bundled generative example: the model itself, ``serve --example generative`` end to
end with google-genai, and the README's generative code blocks run as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import CliServer, start_cli_server

from predictor_runtime.examples.generative import wordlm

genai = pytest.importorskip("google.genai")
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def model(example: CliServer) -> wordlm.WordLMPredictor:
    """The model ``serve --example generative`` trained (loaded here too, to compare)."""
    return wordlm.WordLMPredictor.from_path(str(example.model_dir))  # type: ignore[attr-defined]


def turn(text: str) -> list[dict]:
    return [{"role": "user", "parts": [{"text": text}]}]


def text_of(response: dict) -> str:
    return response["candidates"][0]["content"]["parts"][0]["text"]


@pytest.mark.parametrize(
    "config",
    [{}, {"temperature": 0}, {"seed": 3, "top_k": 5}, {"top_p": 0.5, "max_output_tokens": 5}],
)
def test_stream_joins_to_generate_and_is_deterministic(model, config) -> None:
    full = model.generate(turn("Return a list of"), **config)
    assert model.generate(turn("Return a list of"), **config) == full
    chunks = list(model.generate_stream(turn("Return a list of"), **config))
    words = [c for c in chunks if isinstance(c, str)]
    assert "".join(words) == text_of(full) and len(words) >= 1
    assert chunks[-1]["candidates"][0]["finishReason"] == full["candidates"][0]["finishReason"]
    limit = config.get("max_output_tokens", wordlm.DEFAULT_MAX_TOKENS)
    assert model.count_tokens([wordlm_turn(text_of(full))]) <= limit


def wordlm_turn(text: str) -> dict:
    return {"role": "model", "parts": [{"text": text}]}


def test_max_tokens_and_stop_sequences(model) -> None:
    out = model.generate(turn("the"), max_output_tokens=3, seed=1)
    assert out["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert len(wordlm.tokenize(text_of(out))) == 3
    free = text_of(model.generate(turn("the"), seed=5, max_output_tokens=40))
    stop = free.split()[3]  # a word the free run produces
    cut = model.generate(turn("the"), seed=5, max_output_tokens=40, stop_sequences=[stop])
    assert text_of(cut) == free[: free.index(stop)]
    streamed = "".join(
        c for c in model.generate_stream(turn("the"), seed=5, stop_sequences=[stop])
        if isinstance(c, str)
    )  # fmt: skip
    assert streamed == text_of(cut)


def test_different_seeds_differ_and_candidates(model) -> None:
    texts = {text_of(model.generate(turn("Return"), seed=s)) for s in range(5)}
    assert len(texts) > 1
    two = model.generate(turn("Return"), candidate_count=2)
    assert [c["index"] for c in two["candidates"]] == [0, 1]


def test_embeddings_are_deterministic_unit_vectors_that_mean_something(model) -> None:
    texts = ["open a file for reading", "read the contents of a file", "square root of a number"]
    vectors = np.array(model.embed(texts))
    assert vectors.shape == (3, wordlm.DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert model.embed(texts) == vectors.tolist()
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]
    short = np.array(model.embed(texts[:1], output_dimensionality=8))
    assert short.shape == (1, 8) and np.isclose(np.linalg.norm(short), 1.0)
    with pytest.raises(Exception, match="outputDimensionality must be between 1 and 64"):
        model.embed(texts, output_dimensionality=65)


def test_count_tokens_uses_its_tokenizer(model) -> None:
    assert model.count_tokens(turn("Hello, world! It's 42.")) == 7  # Hello , world ! It's 42 .
    assert model.predict(["Return the"]) == [text_of(model.generate(turn("Return the")))]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    """``serve --example generative`` on a fresh state directory: it trains first."""
    root = tmp_path_factory.mktemp("example")
    args = ["--example", "generative", "--state-dir", str(root / "state")]
    srv = start_cli_server(args, cwd=root, timeout=180)
    srv.model_dir = root / "state" / "example" / "generative"  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        assert srv.stop() == 0
        for stream in (srv.proc.stdout, srv.proc.stderr):
            if stream is not None:
                stream.close()


def test_a_second_start_reuses_the_trained_model(example: CliServer, tmp_path: Path) -> None:
    trained = example.model_dir  # type: ignore[attr-defined]
    before = (trained / "lm.pkl").stat().st_mtime_ns
    args = ["--example", "generative", "--state-dir", str(trained.parents[1])]
    again = start_cli_server(args, cwd=tmp_path, timeout=60)
    try:
        assert (trained / "lm.pkl").stat().st_mtime_ns == before
    finally:
        assert again.stop() == 0
        for stream in (again.proc.stdout, again.proc.stderr):
            if stream is not None:
                stream.close()


def test_serve_example_generative_end_to_end(example: CliServer) -> None:
    assert example.banner[0].startswith("Serving the bundled generative example: model generative")
    assert wordlm.is_trained(example.model_dir)  # type: ignore[attr-defined]
    local = wordlm.WordLMPredictor.from_path(str(example.model_dir))  # type: ignore[attr-defined]
    client = genai.Client(
        api_key="x", http_options={"base_url": example.url, "api_version": "v1beta"}
    )
    r = client.models.generate_content(model="generative", contents="Return the")
    assert r.text == text_of(local.generate(turn("Return the")))
    streamed = [
        c.text
        for c in client.models.generate_content_stream(model="generative", contents="Return the")
    ]
    assert len(streamed) > 2 and "".join(streamed) == r.text
    emb = client.models.embed_content(model="generative", contents=["read a file", "open a file"])
    assert [e.values for e in emb.embeddings] == local.embed(["read a file", "open a file"])
    n = client.models.count_tokens(model="generative", contents="Return the list, please.")
    assert n.total_tokens == local.count_tokens(turn("Return the list, please.")) == 6
    assert r.usage_metadata.prompt_token_count == 2


def readme_block(after: str, lang: str = "python") -> str:
    """The first ``lang`` code block of README.md after the line containing ``after``."""
    text = README.read_text()
    start = text.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m is not None
    return m.group(1)


def test_readme_genai_example_runs_as_written(example: CliServer) -> None:
    code = readme_block("python -m predictor_runtime serve --example generative")
    assert "http://127.0.0.1:8080" in code
    code = code.replace("http://127.0.0.1:8080", example.url)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].endswith(" tokens") and lines[2] == "[64, 64]" and lines[3] == "2"


def test_readme_minimal_predictor_serves(tmp_path: Path, cli_server) -> None:
    code = readme_block("A generative predictor is a class with any of these methods")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "shouting.py").write_text(textwrap.dedent(code))
    (tmp_path / "model").mkdir()
    srv = cli_server(
        ["--model-dir", str(tmp_path / "model"), "--prediction-class", "shouting.ShoutingModel",
         "--package", str(tmp_path / "pkg"), "--model-name", "loud"]
    )  # fmt: skip
    client = genai.Client(api_key="x", http_options={"base_url": srv.url, "api_version": "v1beta"})
    r = client.models.generate_content(model="loud", contents="hello there")
    assert r.text == "HELLO THERE" and r.usage_metadata.total_token_count == 4
    chunks = [c.text for c in client.models.generate_content_stream(model="loud", contents="a b")]
    assert chunks == ["A", " B", ""]
    emb = client.models.embed_content(model="loud", contents=["a b", "c"])
    assert [e.values for e in emb.embeddings] == [[3.0, 1.0], [1.0, 0.0]]


def test_example_flag_checks() -> None:
    from predictor_runtime.server.main import ServeConfig, ServeError

    ServeConfig(example="generative").validate()
    with pytest.raises(ServeError, match="drop --model-dir"):
        ServeConfig(example="generative", model_dir="/models/x").validate()
    with pytest.raises(ServeError, match="unknown --example 'nope'"):
        ServeConfig(example="nope").validate()
