"""A generative test predictor whose answers show what reached it (also copied into tmp
dirs for CLI subprocesses).

- ``generate`` answers ``"<last user text> | <json of config>"``, so a test sees the
  system instruction and generation config the predictor got; a prompt ``boom`` raises
  ValueError, ``list`` returns two candidates as a list of strings;
- ``generate_stream`` yields the same text word by word (with a delay per word when the
  config has a seed of 7, for disconnect tests);
- ``embed`` returns ``[len(text), count of "a", output_dimensionality or 0]`` per text and
  records the size of every call in ``embed_calls``; ``boom`` raises;
- ``count_tokens`` counts whitespace-separated words of every text part.
"""

import json
import re
import threading
import time


def _text(contents):
    return " ".join(p.get("text", "") for c in contents for p in c.get("parts", []))


class RecordingGenerator:
    """Echoes what it got; records embedding call sizes."""

    input_token_limit = 1000
    output_token_limit = 100

    def __init__(self):
        self.embed_calls = []
        self.lock = threading.Lock()
        self.stream_closed = threading.Event()

    def _answer(self, contents, config):
        last = _text(contents[-1:])
        if last == "boom":
            raise ValueError("the model exploded")
        return f"{last} | {json.dumps(config, sort_keys=True)}"

    def generate(self, contents, **config):
        if _text(contents[-1:]) == "list":
            return ["first answer", "second answer"]
        return self._answer(contents, config)

    def generate_stream(self, contents, **config):
        text = self._answer(contents, config)
        try:
            for i, piece in enumerate(re.findall(r"\S+\s*", text)):
                if config.get("seed") == 7:
                    time.sleep(0.05)
                if i == 3 and _text(contents[-1:]).startswith("fail later"):
                    raise RuntimeError("stream broke after three words")
                yield piece
        finally:
            self.stream_closed.set()

    def embed(self, texts, **config):
        with self.lock:
            self.embed_calls.append(len(texts))
        time.sleep(0.01)
        if "boom" in texts:
            raise ValueError("cannot embed boom")
        dims = config.get("output_dimensionality") or 0
        return [[float(len(t)), float(t.count("a")), float(dims)] for t in texts]

    def count_tokens(self, contents):
        return len(_text(contents).split())

    @classmethod
    def from_path(cls, model_dir):
        return cls()
