"""Test predictors for the server tests (also written into tmp dirs for CLI subprocesses).

``EchoPredictor`` answers each instance with ``{"id": instance, "kw": kwargs, "pid": pid}``
and records every call's instances, so tests can check batching. Special instances:
``"bad"`` raises an InvalidInstanceError for its row, ``"boom"`` raises ValueError, and
``"slow"`` sleeps ``slow_seconds``. A ``config.json`` in the model directory may set
``delay`` (seconds per call), ``slow_seconds``, ``load_seconds`` (sleep in from_path) and
``calls_file`` (a file that gets one JSON line of instances as each call starts, so tests
in another process can wait on the server's progress).
"""

import json
import os
import threading
import time


class EchoPredictor:
    """Echoes row ids; records calls."""

    def __init__(self, delay=0.0, slow_seconds=1.0, calls_file=None):
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.calls_file = calls_file
        self.calls = []
        self.lock = threading.Lock()

    def predict(self, instances, **kwargs):
        with self.lock:
            self.calls.append((list(instances), dict(kwargs)))
            if self.calls_file:
                with open(self.calls_file, "a") as fh:
                    fh.write(json.dumps(list(instances)) + "\n")
        if self.delay:
            time.sleep(self.delay)
        out = []
        for i, inst in enumerate(instances):
            if inst == "bad":
                from predictor_runtime import InvalidInstanceError

                raise InvalidInstanceError(i, "this row is bad")
            if inst == "boom":
                raise ValueError("boom")
            if inst == "slow":
                time.sleep(self.slow_seconds)
            out.append({"id": inst, "kw": kwargs, "pid": os.getpid()})
        return out

    @classmethod
    def from_path(cls, model_dir):
        config = {}
        path = os.path.join(model_dir, "config.json")
        if os.path.exists(path):
            with open(path) as fh:
                config = json.load(fh)
        time.sleep(config.get("load_seconds", 0))
        return cls(
            config.get("delay", 0.0), config.get("slow_seconds", 1.0), config.get("calls_file")
        )
