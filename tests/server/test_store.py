"""``predictor_runtime.server.store``: SQLite persistence of API resources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from predictor_runtime.server.store import Store


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_model({"name": "m", "description": "d", "labels": {"a": "b"}})
    store.put_version("m", {"name": "v1", "deploymentUri": "/x", "state": "READY"})
    store.put_version("m", {"name": "v2", "deploymentUri": "/y"})
    store.put_operation({"name": "op1", "metadata": {"createTime": "2026-01-01T00:00:00Z"}})
    store.put_operation({"name": "op2", "metadata": {"createTime": "2026-01-02T00:00:00Z"}})
    store.close()

    again = Store(tmp_path)
    assert again.models() == [{"name": "m", "description": "d", "labels": {"a": "b"}}]
    assert [v["name"] for _, v in again.versions("m")] == ["v1", "v2"]
    assert again.operation("op1")["metadata"]["createTime"].startswith("2026-01-01")
    assert [o["name"] for o in again.operations()] == ["op2", "op1"]
    assert again.operation("nope") is None


def test_delete_model_removes_versions(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_model({"name": "m"})
    store.put_version("m", {"name": "v1"})
    store.delete_model("m")
    assert store.models() == [] and store.versions() == []


def test_failed_transaction_leaves_previous_state(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_model({"name": "m", "description": "before"})
    with pytest.raises(RuntimeError), store.transaction() as tx:
        store.put_model({"name": "m", "description": "after"}, tx)
        store.put_version("m", {"name": "v1"}, tx)
        raise RuntimeError("crash between writes")
    assert store.models() == [{"name": "m", "description": "before"}]
    assert store.versions() == []


def test_uncommitted_writes_of_a_killed_writer_are_not_seen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_model({"name": "kept"})
    # another connection starts a write and dies without committing
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO models (name, resource) VALUES ('lost', '{}')")
    other.close()
    assert [m["name"] for m in Store(tmp_path).models()] == ["kept"]
