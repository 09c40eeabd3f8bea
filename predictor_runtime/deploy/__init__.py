"""Deployment targets beyond one ``serve`` process (optional extras, imported lazily).

- :mod:`.ray_serve`: the HTTP API as a Ray Serve application (``serve --ray-address``).

Kubernetes manifests live in the repository's ``deploy/kubernetes/``.
"""
