"""Callback delivery: POST a finished task's state to its ``callback_url`` (httpx).

- Body: ``{"task_id", "status", "result", "traceback"}``, ``result`` being what
  ``GET /v1/async-tasks/{id}`` shows.
- Auth: ``{"kind": "basic", "username", "password"}`` becomes an ``Authorization: Basic``
  header; ``{"kind": "mtls", "cert", "key"}`` (PEM text) is presented as the client
  certificate. The PEM text is written to files only the server's user can read (0600, in
  a 0700 temporary folder), loaded into the TLS context and removed at once.
- Trust: https receivers are verified against the system trust store
  (``ssl.create_default_context()``, which honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``).
- Retries: connection errors, timeouts, 408, 429 and 5xx are retried with exponential
  backoff and jitter (:func:`backoff`) until the task's callback deadline (``--task-ttl``
  aside, :data:`CALLBACK_SECONDS` after the task finished); other answers are final.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import orjson

from .store import Task

#: how long after a task finished its callback is retried (seconds)
CALLBACK_SECONDS = float(os.environ.get("PREDICTOR_RUNTIME_CALLBACK_SECONDS", "300"))
#: first retry delay and the cap of the exponential backoff (seconds)
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
#: one attempt's timeout (seconds)
ATTEMPT_TIMEOUT = 10.0
RETRY_STATUSES = frozenset({408, 425, 429})


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, half of it random."""
    delay: float = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def payload(task: Task) -> bytes:
    """The callback body of a finished task."""
    result = task.result.encode() if task.result else b"null"
    head = orjson.dumps({"task_id": task.id, "status": task.status})[:-1]
    tail = orjson.dumps({"traceback": task.traceback})[1:]
    return head + b',"result":' + result + b"," + tail


def trust_context() -> ssl.SSLContext:
    """A client TLS context on the system trust store (``SSL_CERT_FILE`` honoured)."""
    return ssl.create_default_context()


def mtls_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A client TLS context presenting ``cert_pem`` / ``key_pem``.

    :raises ssl.SSLError: the PEM text is not a certificate and its key.
    """
    ctx = trust_context()
    folder = tempfile.mkdtemp(prefix="predictor-runtime-mtls-")  # mode 0700
    try:
        paths = []
        for name, text in (("cert.pem", cert_pem), ("key.pem", key_pem)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            paths.append(path)
        ctx.load_cert_chain(paths[0], paths[1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ctx


@dataclass
class Attempt:
    """The outcome of one delivery attempt."""

    delivered: bool
    retry: bool
    error: str | None = None


class CallbackSender:
    """Sends callbacks with pooled httpx clients (one for plain/basic, one per mTLS send)."""

    def __init__(self, timeout: float = ATTEMPT_TIMEOUT) -> None:
        self.timeout = timeout
        self._client: Any = None

    def _shared(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(verify=trust_context(), timeout=self.timeout)
        return self._client

    async def send(self, task: Task) -> Attempt:
        """One POST of ``task``'s final state to its callback URL."""
        import httpx

        assert task.callback_url is not None
        auth = task.callback_auth or {}
        headers = {"content-type": "application/json"}
        if auth.get("kind") == "basic":
            token = f"{auth.get('username', '')}:{auth.get('password', '')}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(token).decode()
        own = None
        if auth.get("kind") == "mtls":
            try:
                ctx = mtls_context(auth.get("cert", ""), auth.get("key", ""))
            except (ssl.SSLError, OSError) as exc:
                return Attempt(False, False, f"invalid mTLS certificate or key: {exc}")
            own = client = httpx.AsyncClient(verify=ctx, timeout=self.timeout)
        else:
            client = self._shared()
        try:
            r = await client.post(task.callback_url, content=payload(task), headers=headers)
        except httpx.HTTPError as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}".rstrip(": "))
        finally:
            if own is not None:
                await own.aclose()
        if 200 <= r.status_code < 300:
            return Attempt(True, False)
        retry = r.status_code >= 500 or r.status_code in RETRY_STATUSES
        return Attempt(False, retry, f"HTTP {r.status_code} from the callback receiver")

    async def aclose(self) -> None:
        """Close the pooled client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = [
    "CALLBACK_SECONDS",
    "Attempt",
    "CallbackSender",
    "backoff",
    "mtls_context",
    "payload",
    "trust_context",
]
