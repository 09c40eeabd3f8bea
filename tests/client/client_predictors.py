"""Predictors served to the client tests (copied into a package dir for ``serve``).

``Echo`` answers each instance with ``{"x": instance, "kw": kwargs}``. Special instances:
``"boom"`` raises ValueError, ``"slow"`` sleeps ``slow_seconds``; with the keyword
``double`` (a V2 request parameter) numeric rows come back doubled instead. ``predict_stream`` yields
``chunks`` (a request kwarg, default 3) chunks ``{"i": i}``, ``pause`` seconds apart, and
raises at chunk ``fail_at`` if asked, and records in ``<model_dir>/streams.log`` when a stream ends ("done") or is closed early
("closed"). ``config.json`` in the model directory may set ``load_seconds`` (sleep in
``from_path``), ``slow_seconds`` and ``fail`` (``from_path`` raises that message).
"""

import json
import os
import time


class Echo:
    """Echoes instances; streams numbered chunks."""

    def __init__(self, model_dir, slow_seconds):
        self.model_dir = model_dir
        self.slow_seconds = slow_seconds

    def predict(self, instances, **kwargs):
        if kwargs.get("double"):
            return [[2 * v for v in row] for row in instances]
        out = []
        for inst in instances:
            if inst == "boom":
                raise ValueError("boom: the predictor exploded")
            if inst == "slow":
                time.sleep(self.slow_seconds)
            out.append({"x": inst, "kw": kwargs})
        return out

    def predict_stream(self, instances, **kwargs):
        n = int(kwargs.get("chunks", 3))
        pause = float(kwargs.get("pause", 0.0))
        log = os.path.join(self.model_dir, "streams.log")
        finished = False
        try:
            for i in range(n):
                if i and pause:
                    time.sleep(pause)
                if kwargs.get("fail_at") == i:
                    raise ValueError(f"the stream broke at chunk {i}")
                yield {"i": i, "n": len(instances)}
            finished = True
        finally:
            with open(log, "a") as fh:
                fh.write("done\n" if finished else "closed\n")

    @classmethod
    def from_path(cls, model_dir):
        config = {}
        path = os.path.join(model_dir, "config.json")
        if os.path.exists(path):
            with open(path) as fh:
                config = json.load(fh)
        time.sleep(config.get("load_seconds", 0))
        if config.get("fail"):
            raise RuntimeError(config["fail"])
        return cls(model_dir, config.get("slow_seconds", 1.0))
