"""A throwaway PostgreSQL server for tests and benchmarks of ``--state-url``.

:class:`TempPostgres` runs ``initdb`` and ``pg_ctl`` from the machine's PostgreSQL (on
``PATH`` or Debian's ``/usr/lib/postgresql/N/bin``) into a temporary directory, listening on
127.0.0.1 at a free port and on a unix socket in that directory, with trust
authentication (any password is accepted, which lets tests check that passwords are
masked). ``initdb`` refuses to run as root, so as root the cluster runs as the
``postgres`` system user (created by Debian's package; created here if missing).
:meth:`TempPostgres.stop` stops the server and deletes the directory.

Each test gets a fresh database with :meth:`TempPostgres.new_database` (a ``CREATE
DATABASE`` from the template takes milliseconds), so one cluster serves a whole session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (tests skip with this reason)."""


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``.

    :raises PostgresUnavailable: neither on ``PATH`` nor under ``/usr/lib/postgresql``.
    """
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's "
        "'postgresql' package (scripts/test.sh does when it runs as root)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVICE_USER)


class TempPostgres:
    """A PostgreSQL server in a temporary directory (see the module docstring).

    :param durable: keep PostgreSQL's crash-safe defaults (``fsync``); tests turn it off
        for speed, since the cluster is deleted afterwards anyway.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.bindir = find_bindir()
        self.durable = durable
        as_root = os.geteuid() == 0
        # as root, a folder the service user can reach whatever TMPDIR says
        self.root = Path(tempfile.mkdtemp(prefix="predictor-pg-", dir="/tmp" if as_root else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._run_as: dict[str, Any] = {}
        if as_root:
            user = _service_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True, text=True, timeout=timeout, cwd=self.root, **self._run_as,
        )  # fmt: skip
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()} {log}".strip()
            )

    def start(self) -> TempPostgres:
        """``initdb`` then ``pg_ctl start`` (waits until it accepts connections)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
        for attempt in range(3):
            self.port = _free_port()
            try:
                self.resume()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def resume(self) -> None:
        """Start the (initialised) server on :attr:`port` again after :meth:`pause`."""
        settings = ["-c listen_addresses=127.0.0.1", f"-k {self.root}", "-c max_connections=300"]
        if not self.durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", " ".join([f"-p {self.port}", *settings]), "start")  # fmt: skip
        self.started = True

    def pause(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (tests of an unreachable database).

        :param mode: ``pg_ctl stop -m``: ``fast`` keeps every commit; ``immediate`` is a
            crash (without ``durable``, the last commits may be lost).
        """
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop",
                      timeout=60)  # fmt: skip
            self.started = False

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """A ``postgresql://`` URL of ``database`` (trust auth ignores ``password``)."""
        auth = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """Create database ``name`` (dropping an older one); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its sessions."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory."""
        try:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.pause("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
