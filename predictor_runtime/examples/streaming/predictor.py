"""A streaming predictor: ``predict_stream`` yields partial results as they are made.

It needs no model files and no ML framework. Each instance is a text; the predictor
"types" it back one word at a time, as a generative model streams tokens::

    python -m predictor_runtime serve --model-dir path/to/examples/streaming \
        --model-name typewriter --prediction-class predictor.TypewriterPredictor \
        --package path/to/examples/streaming

``predict`` answers the whole result at once (``{"text", "words"}`` per instance);
``predict_stream`` yields ``{"instance": i, "word": w, "index": k}`` chunks, pausing
``delay`` seconds between them (default 0.05; an optional ``config.json`` in the model
directory may set it, and a request may pass ``"delay": 0`` as a keyword). Served through
``POST /v1/streaming-tasks`` (Server-Sent Events) and ``predict --stream`` on the CLI.
"""

import json
import os
import time


class TypewriterPredictor:
    """Echoes texts word by word."""

    def __init__(self, delay=0.05):
        self.delay = delay

    def predict(self, instances, **kwargs):
        return [{"text": str(text), "words": len(str(text).split())} for text in instances]

    def predict_stream(self, instances, delay=None, **kwargs):
        pause = self.delay if delay is None else float(delay)
        for i, text in enumerate(instances):
            for k, word in enumerate(str(text).split()):
                if pause:
                    time.sleep(pause)
                yield {"instance": i, "index": k, "word": word}

    @classmethod
    def from_path(cls, model_dir):
        config = {}
        path = os.path.join(model_dir, "config.json")
        if os.path.exists(path):
            with open(path) as fh:
                config = json.load(fh)
        return cls(delay=float(config.get("delay", 0.05)))
