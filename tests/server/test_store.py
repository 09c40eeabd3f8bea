"""``predictor_runtime.server.store``: the state store, on SQLite and on a real PostgreSQL.

Every test taking ``backend`` runs on both; the PostgreSQL server is started by the
session's ``pg_cluster`` fixture (tests/conftest.py), one fresh database per test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from predictor_runtime.server.request_log import RequestLogger
from predictor_runtime.server.store import (
    SQLiteStore,
    StateStore,
    Store,
    StoreUnavailableError,
    mask_url,
    open_store,
)

OpenStore = Callable[..., Any]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens stores of one backend on one shared location; closes them at teardown."""
    opened: list[Any] = []
    if request.param == "sqlite":

        def make(**kwargs: Any) -> Any:
            opened.append(SQLiteStore(tmp_path, **kwargs))
            return opened[-1]
    else:
        url = request.getfixturevalue("pg_url")
        from predictor_runtime.server.store.postgres import PostgresStore

        def make(**kwargs: Any) -> Any:
            opened.append(PostgresStore(url, **kwargs))
            return opened[-1]

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


def latest(backend: OpenStore) -> int:
    """The newest schema version of the backend."""
    if backend.kind == "sqlite":  # type: ignore[attr-defined]
        from predictor_runtime.server.store.sqlite import MIGRATIONS
    else:
        from predictor_runtime.server.store.postgres import MIGRATIONS
    return MIGRATIONS[-1].version


def test_both_backends_implement_the_protocol(backend: OpenStore) -> None:
    store = backend()
    assert isinstance(store, StateStore)
    assert store.shared is (backend.kind == "postgres")  # type: ignore[attr-defined]


def test_round_trip_survives_reopen(backend: OpenStore) -> None:
    store = backend()
    store.put_model({"name": "m", "description": "d", "labels": {"a": "b"}})
    store.put_version("m", {"name": "v1", "deploymentUri": "/x", "state": "READY"})
    store.put_version("m", {"name": "v2", "deploymentUri": "/y"})
    store.put_operation({"name": "op1", "metadata": {"createTime": "2026-01-01T00:00:00Z"}})
    store.put_operation({"name": "op2", "metadata": {"createTime": "2026-01-02T00:00:00Z"}})
    store.close()

    again = backend()
    assert again.models() == [{"name": "m", "description": "d", "labels": {"a": "b"}}]
    assert [v["name"] for _, v in again.versions("m")] == ["v1", "v2"]
    assert again.get_version("m", "v1")["state"] == "READY"
    assert [op["name"] for op in again.operations()] == ["op2", "op1"]
    assert again.operation("op1") is not None and again.operation("nope") is None
    assert again.schema_version() == latest(backend)


def test_delete_model_deletes_its_versions(backend: OpenStore) -> None:
    store = backend()
    store.put_model({"name": "m"})
    store.put_version("m", {"name": "v1"})
    store.delete_model("m")
    assert store.models() == [] and store.versions() == []


def test_failed_transaction_leaves_previous_state(backend: OpenStore) -> None:
    store = backend()
    store.put_model({"name": "m", "description": "before"})
    with pytest.raises(RuntimeError), store.transaction() as tx:
        store.put_model({"name": "m", "description": "after"}, tx)
        store.put_version("m", {"name": "v1"}, tx)
        raise RuntimeError("boom")
    assert store.models() == [{"name": "m", "description": "before"}]
    assert store.versions() == []


def test_writers_of_different_connections_never_lose_an_update(backend: OpenStore) -> None:
    """Read-check-write inside a transaction holds against other processes' writers."""
    backend().put_model({"name": "m", "count": 0})
    stores = [backend() for _ in range(4)]
    errors: list[BaseException] = []

    def bump(store: Any) -> None:
        try:
            for _ in range(25):
                with store.transaction() as tx:
                    rec = store.get_model("m", tx)
                    rec["count"] += 1
                    store.put_model(rec, tx)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert backend().get_model("m")["count"] == 100


def test_changed_since_sees_other_connections_writes(backend: OpenStore) -> None:
    reader, writer = backend(), backend()
    changed, token = reader.changed_since(None)
    assert changed
    assert reader.changed_since(token) == (False, token)
    writer.put_model({"name": "m"})
    changed, token2 = reader.changed_since(token)
    assert changed and token2 != token
    assert reader.changed_since(token2)[0] is False
    writer.put_operation({"name": "op", "metadata": {}})  # operations are not state changes
    if backend.kind == "postgres":  # type: ignore[attr-defined]
        assert reader.changed_since(token2)[0] is False


def test_touch_versions_only_moves_forward(backend: OpenStore) -> None:
    store = backend()
    store.put_model({"name": "m"})
    store.put_version("m", {"name": "v1", "description": "kept", "lastUseTime": "2026-01-02"})
    store.touch_versions([("m", "v1", "2026-01-01")])
    assert store.get_version("m", "v1")["lastUseTime"] == "2026-01-02"
    store.touch_versions([("m", "v1", "2026-01-03")])
    assert store.get_version("m", "v1") == {
        "name": "v1",
        "description": "kept",
        "lastUseTime": "2026-01-03",
    }


def test_pending_operations_by_version(backend: OpenStore) -> None:
    store = backend()
    base = {"metadata": {"createTime": "t"}, "_model": "m"}
    store.put_operation({**base, "name": "a", "done": False, "_version": "v1"})
    store.put_operation({**base, "name": "b", "done": True, "_version": "v1"})
    store.put_operation({**base, "name": "c", "done": False, "_version": "v2"})
    assert [op["name"] for op in store.pending_operations("m", "v1")] == ["a"]
    store.put_operation({**base, "name": "a", "done": True, "_version": "v1"})
    assert store.pending_operations("m", "v1") == []


def test_notifications_reach_other_processes_promptly(backend: OpenStore) -> None:
    listener, writer = backend(), backend()
    seen = threading.Event()
    pushed = listener.subscribe(seen.set)
    if not pushed:  # SQLite: no push, the server polls changed_since
        assert backend.kind == "sqlite"  # type: ignore[attr-defined]
        return
    time.sleep(0.3)  # the LISTEN is issued by the listener's own thread
    started = time.monotonic()
    writer.put_version("m", {"name": "v1"})
    assert seen.wait(2.0), "no notification within 2 s"
    assert time.monotonic() - started < 2.0


def test_request_logs_go_next_to_the_state(backend: OpenStore) -> None:
    store = backend()
    log = RequestLogger(sink=store.request_log_sink())
    config = {"samplingPercentage": 1.0, "bigqueryTableName": "proj.ds.table"}
    for i in range(30):
        assert log.log(config, "m", "v1", f'{{"instances": [{i}]}}'.encode(), b"{}")
    log.close()
    assert log.written == 30 and log.dropped == 0
    query = 'SELECT model, raw_data, groundtruth FROM "proj.ds.table" ORDER BY time'
    if backend.kind == "sqlite":  # type: ignore[attr-defined]
        with sqlite3.connect(log.path) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with store.transaction() as tx:
            rows = tx.execute(query).fetchall()
    assert len(rows) == 30
    assert rows[0] == ("m", '{"instances": [0]}', None)


def test_migrations_keep_an_older_state(backend: OpenStore, tmp_path: Path) -> None:
    """A state written by schema version 1 opens at the newest version with nothing lost."""
    old = backend(migrate_upto=1)
    assert old.schema_version() == 1
    pending = {"name": "op", "done": False, "_model": "m", "_version": "v1", "metadata": {}}
    with old.transaction() as tx:  # written as version 1 wrote them (no pending_key)
        q = old._q
        tx.execute(q("INSERT INTO models (name, resource) VALUES (?, ?)"), ("m", '{"name":"m"}'))
        tx.execute(
            q("INSERT INTO versions (model, name, resource) VALUES (?, ?, ?)"),
            ("m", "v1", '{"name":"v1"}'),
        )
        tx.execute(
            q("INSERT INTO operations (name, create_time, resource) VALUES (?, ?, ?)"),
            ("op", "t", orjson.dumps(pending).decode()),
        )
    old.close()
    new = backend()
    assert new.schema_version() == latest(backend)
    assert new.models() == [{"name": "m"}]
    assert new.versions() == [("m", {"name": "v1"})]
    assert new.pending_operations("m", "v1") == [pending]


def test_sqlite_state_from_before_schema_versions(tmp_path: Path) -> None:
    """A state file written before migrations existed (no schema_version table)."""
    with sqlite3.connect(tmp_path / "state.sqlite3") as conn:
        conn.executescript(
            "CREATE TABLE models (name TEXT PRIMARY KEY, resource TEXT NOT NULL);"
            "CREATE TABLE versions (model TEXT NOT NULL, name TEXT NOT NULL, "
            "resource TEXT NOT NULL, PRIMARY KEY (model, name));"
            "CREATE TABLE operations (name TEXT PRIMARY KEY, create_time TEXT NOT NULL, "
            "resource TEXT NOT NULL);"
            """INSERT INTO models VALUES ('m', '{"name":"m"}');"""
            """INSERT INTO operations VALUES ('op', 't', '{"name":"op","done":false,"""
            """"_model":"m","_version":"v1"}');"""
        )
    conn.close()
    store = Store(tmp_path)
    assert store.schema_version() == 2
    assert store.models() == [{"name": "m"}]
    assert [op["name"] for op in store.pending_operations("m", "v1")] == ["op"]
    store.close()


def test_uncommitted_writes_of_a_killed_writer_are_not_seen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_model({"name": "kept"})
    # another connection starts a write and dies without committing
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO models (name, resource) VALUES ('lost', '{}')")
    other.close()
    assert [m["name"] for m in Store(tmp_path).models()] == ["kept"]


def test_mask_url() -> None:
    assert mask_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("postgresql://h/db?sslmode=require&password=x1") == (
        "postgresql://h/db?sslmode=require&password=***"
    )


def test_unreachable_database_is_one_masked_line(pg_cluster: Any) -> None:
    url = f"postgresql://someone:s3cret@127.0.0.1:{pg_cluster.port}/no_such_db"
    with pytest.raises(StoreUnavailableError) as info:
        open_store(None, url)
    message = str(info.value)
    assert "s3cret" not in message and "\n" not in message
    assert "postgresql://someone:***@127.0.0.1:" in message
    assert "no_such_db" in message


def test_state_url_must_be_postgresql() -> None:
    with pytest.raises(ValueError, match=r"--state-url must be a PostgreSQL URL.*u:\*\*\*@"):
        open_store(None, "mysql://u:pw@h/db")
