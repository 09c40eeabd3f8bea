"""Test predictor of the Launch tests (copied into tmp dirs for ``serve`` subprocesses).

``predict`` answers ``{"id": instance, "kw": kwargs}`` per instance (``"boom"`` raises
ValueError) and, when ``config.json`` names a ``side_effects`` file, appends one line per
instance to it (to count how often each row ran). ``delay`` sleeps per model call.

``predict_stream`` takes one instance naming a behaviour:
``["wait", path]``: one chunk, then block until ``path`` exists, then a second chunk;
``["fail"]``: one chunk, then ValueError("stream broke");
``["forever", path]``: a chunk every 20 ms until closed, then write ``path``;
anything else: one chunk per instance.
"""

import json
import os
import time


class LaunchPredictor:
    def __init__(self, delay=0.0, side_effects=None):
        self.delay = delay
        self.side_effects = side_effects

    def predict(self, instances, **kwargs):
        if self.delay:
            time.sleep(self.delay)
        if self.side_effects:
            with open(self.side_effects, "a") as fh:
                fh.write("".join(f"{json.dumps(inst)}\n" for inst in instances))
        out = []
        for inst in instances:
            if inst == "boom":
                raise ValueError("boom")
            out.append({"id": inst, "kw": kwargs})
        return out

    def predict_stream(self, instances, **kwargs):
        first = instances[0]
        if isinstance(first, list) and first and first[0] == "wait":
            yield {"step": 1}
            deadline = time.monotonic() + 20
            while not os.path.exists(first[1]) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield {"step": 2}
        elif first == ["fail"]:
            yield {"step": 1}
            raise ValueError("stream broke")
        elif isinstance(first, list) and first and first[0] == "forever":
            try:
                n = 0
                while True:
                    yield {"step": n}
                    n += 1
                    time.sleep(0.02)
            finally:
                with open(first[1], "w") as fh:
                    fh.write("closed")
        else:
            for inst in instances:
                yield {"id": inst}

    @classmethod
    def from_path(cls, model_dir):
        config = {}
        path = os.path.join(model_dir, "config.json")
        if os.path.exists(path):
            with open(path) as fh:
                config = json.load(fh)
        time.sleep(config.get("load_seconds", 0))
        return cls(config.get("delay", 0.0), config.get("side_effects"))
