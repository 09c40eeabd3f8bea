"""Bundled examples (``iris``: a classic AI Platform custom prediction routine)."""
