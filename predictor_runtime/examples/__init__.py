"""Bundled examples (``iris``: a classic AI Platform custom prediction routine;
``streaming``: a predictor with ``predict_stream``, served as Server-Sent Events)."""
