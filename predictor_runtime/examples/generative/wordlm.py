"""A small generative model that works offline: a word-level trigram language model and
scikit-learn embeddings, both learnt at first run from the docstrings of Python's standard
library (text every Python installation ships, so nothing is downloaded).

Serve it with ``python -m predictor_runtime serve --example generative``; the server
trains it into ``<state-dir>/example/generative`` on first use (a few seconds, most of
it importing scikit-learn) and then loads it from there. It is a generative predictor (see the README's "Generative
endpoints"): it has ``generate``, ``generate_stream`` (word by word), ``embed`` and
``count_tokens``, and also ``predict`` (one continuation per prompt string).

- Tokens: words, numbers and single punctuation marks (:data:`TOKEN`); ``count_tokens``
  counts them, and generation and ``maxOutputTokens`` count the same units.
- Generation: the next token is drawn from the counts of what followed the last two
  tokens (backing off to the last one, then to the start of a docstring), sharpened or
  flattened by ``temperature`` and cut by ``top_k``/``top_p``. Without ``seed`` the seed
  is derived from the prompt, so the same request always gets the same answer, streamed
  or not; ``temperature: 0`` is greedy.
- Embeddings: hashed word counts (CRC-32 buckets), TF-IDF weighted, projected on 64
  scikit-learn TruncatedSVD axes fitted on the same docstrings (only training imports
  scikit-learn), unit length; ``output_dimensionality`` keeps the first
  axes (renormalised). The same text always gets the same vector.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import random
import re
import sys
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[a-z0-9_]{2,}")
#: one token: a word or number (with an English contraction), or one punctuation mark.
TOKEN = re.compile(r"[A-Za-z0-9_]+(?:'[a-z]+)?|[^\sA-Za-z0-9_]")
START, END = "<s>", "</s>"
DIMENSIONS = 64
HASH_FEATURES = 2**14
DEFAULT_MAX_TOKENS = 48
MAX_TOKENS_LIMIT = 1024
#: the documentation the model learns from (modules without import side effects).
MODULES = [
    "abc",
    "argparse",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.message",
    "enum",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "mimetypes",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "shlex",
    "shutil",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "weakref",
    "zipfile",
]
_NO_SPACE_BEFORE = set(".,;:!?)]}%")
_NO_SPACE_AFTER = set("([{")


def tokenize(text: str) -> list[str]:
    """The model's tokens of ``text``."""
    return TOKEN.findall(text)


def corpus() -> list[str]:
    """Docstrings of :data:`MODULES` and their public classes, functions and methods."""
    with warnings.catch_warnings():  # reading deprecated attributes (typing.io) warns
        warnings.simplefilter("ignore")
        return _docstrings()


def _docstrings() -> list[str]:
    docs: list[str] = []
    seen: set[int] = set()

    def add(obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if doc and id(obj) not in seen:
            seen.add(id(obj))
            docs.append(doc)

    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a trimmed-down Python: learn from what is there
            continue
        add(module)
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                add(obj)
            if inspect.isclass(obj):
                for method_name, method in sorted(vars(obj).items()):
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        add(method)
    return docs


def train(model_dir: str | Path) -> Path:
    """Learn the language model and the embedding from :func:`corpus` into ``model_dir``."""
    import numpy as np

    docs = corpus()
    tri: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    bi: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in docs:
        seq = [START, START, *tokenize(doc), END]
        low = [t.lower() for t in seq]
        for i in range(2, len(seq)):
            tri[(low[i - 2], low[i - 1])][seq[i]] += 1
            bi[low[i - 1]][seq[i]] += 1

    def table(counter: Counter[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return tuple(w for w, _ in ranked), tuple(c for _, c in ranked)

    lm = {
        "tri": {k: table(v) for k, v in tri.items()},
        "bi": {k: table(v) for k, v in bi.items()},
    }
    paragraphs = [p for doc in docs for p in doc.split("\n\n") if len(tokenize(p)) >= 4]
    idf, components = _fit_embedding(paragraphs)
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "lm.pkl").open("wb") as f:
        pickle.dump(lm, f, protocol=pickle.HIGHEST_PROTOCOL)
    np.savez(out / "embedding.npz", idf=idf, components=components)
    info = {"documents": len(docs), "paragraphs": len(paragraphs), "python": sys.version}
    (out / "corpus.json").write_text(json.dumps(info))
    return out


def hashed_counts(text: str) -> tuple[Any, Any]:
    """``(feature indices, sublinear term weights)`` of ``text``: each lower-cased word of
    two or more characters hashed (CRC-32) into :data:`HASH_FEATURES` buckets."""
    import numpy as np

    counts = Counter(zlib.crc32(w.encode()) % HASH_FEATURES for w in _WORD.findall(text.lower()))
    index = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    return index, 1.0 + np.log(tf)


def _fit_embedding(paragraphs: list[str]) -> tuple[Any, Any]:
    """IDF weights and the TruncatedSVD axes of the TF-IDF matrix of ``paragraphs``."""
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    rows, cols, vals = [], [], []
    for i, text in enumerate(paragraphs):
        index, weight = hashed_counts(text)
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(weight)
    matrix = csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(paragraphs), HASH_FEATURES),
    )
    df = np.bincount(matrix.indices, minlength=HASH_FEATURES)
    idf = np.log((1.0 + len(paragraphs)) / (1.0 + df)) + 1.0
    weighted = matrix.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    weighted = weighted.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]).tocsr()
    from threadpoolctl import threadpool_limits

    svd = TruncatedSVD(DIMENSIONS, algorithm="randomized", n_iter=2, random_state=0)
    with threadpool_limits(1):  # BLAS threads only compete on matrices this small
        svd.fit(weighted)
    return idf, svd.components_


def is_trained(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a trained model."""
    d = Path(model_dir)
    return all((d / name).is_file() for name in ("lm.pkl", "embedding.npz", "corpus.json"))


def text_of(contents: Any) -> str:
    """The text of a Content, a list of Contents, or a string (parts joined by newlines)."""
    if isinstance(contents, str):
        return contents
    if isinstance(contents, dict):
        contents = [contents]
    texts = [
        part["text"]
        for content in contents or []
        for part in content.get("parts", [])
        if isinstance(part.get("text"), str)
    ]
    return "\n".join(texts)


def detokenize(tokens: list[str], first: bool = True) -> list[str]:
    """Each token with the space that goes before it (none before the very first)."""
    out: list[str] = []
    prev = None if first else ""
    for tok in tokens:
        space = not (prev is None or tok in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER)
        out.append((" " if space else "") + tok)
        prev = tok
    return out


class WordLMPredictor:
    """Generation, streaming, embeddings and token counts of the bundled example."""

    input_token_limit = 8192
    output_token_limit = MAX_TOKENS_LIMIT

    def __init__(self, lm: dict[str, Any], idf: Any, components: Any) -> None:
        self._tri = lm["tri"]
        self._bi = lm["bi"]
        self._idf = idf
        self._components = components

    @classmethod
    def from_path(cls, model_dir: str) -> WordLMPredictor:
        import numpy as np

        with open(Path(model_dir) / "lm.pkl", "rb") as f:
            lm = pickle.load(f)
        arrays = np.load(Path(model_dir) / "embedding.npz")
        return cls(lm, arrays["idf"], arrays["components"])

    # -- token counts ---------------------------------------------------------------------

    def count_tokens(self, contents: list[dict[str, Any]]) -> int:
        """Tokens in every text part of ``contents``."""
        return len(tokenize(text_of(contents)))

    # -- generation -----------------------------------------------------------------------

    def generate(self, contents: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
        """A full response: ``candidate_count`` continuations of the last turn."""
        candidates = []
        for index in range(int(config.get("candidate_count") or 1)):
            pieces, reason = [], "STOP"
            for piece, finish in self._pieces(contents, config, index):
                pieces.append(piece)
                reason = finish or reason
            candidates.append(
                {
                    "content": {"role": "model", "parts": [{"text": "".join(pieces)}]},
                    "finishReason": reason,
                    "index": index,
                }
            )
        return {"candidates": candidates}

    def generate_stream(self, contents: list[dict[str, Any]], **config: Any) -> Iterator[Any]:
        """The first candidate word by word; its finish reason in a last, empty chunk."""
        reason = "STOP"
        for piece, finish in self._pieces(contents, config, 0):
            if piece:
                yield piece
            reason = finish or reason
        yield {"candidates": [{"finishReason": reason}]}

    def predict(self, instances: list[Any], **config: Any) -> list[str]:
        """One continuation per prompt string."""
        out = []
        for prompt in instances:
            contents = [{"role": "user", "parts": [{"text": str(prompt)}]}]
            out.append("".join(p for p, _ in self._pieces(contents, config, 0)))
        return out

    def _pieces(
        self, contents: list[dict[str, Any]], config: dict[str, Any], index: int
    ) -> Iterator[tuple[str, str | None]]:
        """``(text, finish reason or None)`` pieces of one candidate; stop sequences are
        honoured across pieces (text that may begin one is held back until it cannot)."""
        prompt = text_of(contents[-1:]) if contents else ""
        limit = min(int(config.get("max_output_tokens") or DEFAULT_MAX_TOKENS), MAX_TOKENS_LIMIT)
        stops = [s for s in config.get("stop_sequences") or [] if s]
        seed = config.get("seed")
        if seed is None:
            seed = zlib.crc32(prompt.encode())
        rng = random.Random(int(seed) + index)
        temperature = float(
            config.get("temperature", 1.0) if config.get("temperature") is not None else 1.0
        )
        top_k = int(config.get("top_k") or 0)
        top_p = float(config.get("top_p") or 1.0)
        context = [t.lower() for t in tokenize(prompt)][-2:]
        if len(context) < 2 or (context[0], context[1]) not in self._tri:
            context = [START, START]
        sent: list[str] = []  # tokens produced
        pending = ""
        emitted = ""
        for count in range(limit + 1):
            if count == limit:
                yield pending, "MAX_TOKENS"
                return
            tok = self._next(context[-2], context[-1], rng, temperature, top_k, top_p)
            if tok == END:
                yield pending, "STOP"
                return
            piece = detokenize([tok], first=not sent)[0] if sent else tok
            sent.append(tok)
            context = [context[-1], tok.lower()]
            pending += piece
            text = emitted + pending
            for stop in stops:
                at = text.find(stop)
                if at >= 0:
                    yield text[len(emitted) : at], "STOP"
                    return
            hold = max((_overlap(text, s) for s in stops), default=0)
            ready = pending[: len(pending) - hold] if hold else pending
            if ready:
                emitted += ready
                pending = pending[len(ready) :]
                yield ready, None

    def _next(
        self, a: str, b: str, rng: random.Random, temperature: float, top_k: int, top_p: float
    ) -> str:
        found = self._tri.get((a, b)) or self._bi.get(b) or self._tri[(START, START)]
        words, counts = found
        if temperature <= 0:
            return words[0]
        if top_k > 0:
            words, counts = words[:top_k], counts[:top_k]
        weights = [c ** (1.0 / temperature) for c in counts]
        if top_p < 1.0:
            total, kept, acc = sum(weights), 0, 0.0
            for w in weights:
                kept += 1
                acc += w
                if acc >= top_p * total:
                    break
            words, weights = words[:kept], weights[:kept]
        return rng.choices(words, weights)[0]

    # -- embeddings -----------------------------------------------------------------------

    def embed(
        self, texts: list[str], output_dimensionality: int | None = None, **config: Any
    ) -> list[list[float]]:
        """One unit-length vector per text (``task_type`` and ``title`` are ignored)."""
        import numpy as np

        from predictor_runtime.errors import InvalidRequestError

        dims = DIMENSIONS if output_dimensionality is None else int(output_dimensionality)
        if not 1 <= dims <= DIMENSIONS:
            msg = f"outputDimensionality must be between 1 and {DIMENSIONS}, got {dims}"
            raise InvalidRequestError(msg)
        out = []
        for text in texts:
            index, weight = hashed_counts(text)
            weight = weight * self._idf[index]
            weight /= max(float(np.linalg.norm(weight)), 1e-12)
            vector = self._components[:dims, index] @ weight
            vector /= max(float(np.linalg.norm(vector)), 1e-12)
            out.append(vector.tolist())
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop``."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: wordlm.py MODEL_DIR")
    print(train(sys.argv[1]))
