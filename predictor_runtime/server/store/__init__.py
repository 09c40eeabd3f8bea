"""Persistence of the shared state: one interface (:class:`StateStore`), two backends.

- :mod:`.sqlite`: SQLite under ``--state-dir`` (the embedded default, one machine).
- :mod:`.postgres`: PostgreSQL at ``--state-url postgresql://...`` (several processes on
  several machines share one state; imports psycopg, so only when asked for).

:func:`open_store` picks the backend; both apply their versioned migrations at open.
"""

from __future__ import annotations

from pathlib import Path

from .base import Migration, RequestLogSink, StateStore, StoreUnavailableError, mask_url
from .sqlite import LOG_FILE, STATE_FILE, SQLiteStore

#: The embedded store under the state directory (the name older code imports).
Store = SQLiteStore

URL_SCHEMES = ("postgresql://", "postgres://")


def check_state_url(url: str) -> None:
    """:raises ValueError: ``url`` is not a PostgreSQL URL (the message masks it)."""
    if not url.startswith(URL_SCHEMES):
        raise ValueError(
            f"--state-url must be a PostgreSQL URL (postgresql://user@host:port/db), "
            f"got {mask_url(url)}"
        )


def open_store(state_dir: str | Path | None, state_url: str | None = None) -> StateStore:
    """The store of ``state_url`` when given (PostgreSQL), else SQLite under ``state_dir``.

    :raises StoreUnavailableError: the database cannot be reached (masked URL named).
    :raises ValueError: ``state_url`` is not a PostgreSQL URL.
    """
    if state_url:
        check_state_url(state_url)
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreUnavailableError(
                f"--state-url needs psycopg ({exc}); install 'predictor-runtime[postgres]'"
            ) from exc
        return PostgresStore(state_url)
    return SQLiteStore(state_dir)


__all__ = [
    "LOG_FILE",
    "STATE_FILE",
    "Migration",
    "RequestLogSink",
    "SQLiteStore",
    "StateStore",
    "Store",
    "StoreUnavailableError",
    "check_state_url",
    "mask_url",
    "open_store",
]
