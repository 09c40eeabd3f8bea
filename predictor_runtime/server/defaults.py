"""Default settings of ``serve``, shared by the server and the CLI's flags.

Kept free of imports so the CLI can read them without loading the server.
"""

from __future__ import annotations

#: Model and version names the command-line model is served as.
DEFAULT_MODEL_NAME = "default"
DEFAULT_VERSION_NAME = "v1"
#: Larger request bodies are answered 413 (AI Platform's online prediction limit).
DEFAULT_MAX_REQUEST_BYTES = 1_572_864
#: Extra wait for more rows before a model call (0: batch what is already queued).
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
#: Seconds in-flight requests get to finish on SIGTERM/SIGINT.
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 1
#: Async tasks: how long finished ones are kept, the pending cap, the claim lease.
DEFAULT_TASK_TTL = 86_400.0
DEFAULT_MAX_PENDING_TASKS = 100_000
DEFAULT_TASK_LEASE = 60.0
