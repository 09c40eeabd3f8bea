"""The task store: atomic claims, leases, finishing once, pruning, callbacks.

Every test taking ``store`` or ``open_store`` runs on SQLite and on a real PostgreSQL
(:mod:`predictor_runtime.tasks.pgstore`; the session's ``pg_cluster``, a fresh database
per test).
"""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from predictor_runtime.tasks.store import (
    FAILURE,
    PENDING,
    STARTED,
    SUCCESS,
    Outcome,
    Task,
    TaskStore,
)


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path):
    """Opens task stores (each its own connection, as another process would have) of one
    backend on one shared location; closes them at teardown."""
    opened: list[Any] = []
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None

    def make() -> Any:
        if url is None:
            opened.append(TaskStore(tmp_path, callback_seconds=60))
        else:
            from predictor_runtime.tasks.pgstore import PostgresTaskStore

            opened.append(PostgresTaskStore(url, callback_seconds=60))
        return opened[-1]

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Any) -> Any:
    return open_store()


def tasks(n: int, model: str = "m", **kw) -> list[Task]:
    return [Task(f"t{i}", model, b'{"instances": [%d]}' % i, **kw) for i in range(n)]


def test_file_is_private(store: TaskStore, open_store: Any):
    if open_store.kind == "postgres":
        pytest.skip("PostgreSQL: access is the database's (roles and grants)")
    assert store.path is not None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_add_claim_finish_get(store: TaskStore):
    assert store.add(tasks(3), max_pending=10) == [True, True, True]
    got = store.claim(["m"], "a", 2, 60)
    assert [t.id for t in got] == ["t0", "t1"]  # oldest first
    assert all(t.status == STARTED and t.owner == "a" and t.attempts == 1 for t in got)
    assert store.pending_count() == 1 and store.pending_count("m") == 1
    assert store.pending_count("other") == 0
    assert store.claim(["other"], "a", 5, 60) == []
    done = store.finish([Outcome("t0", SUCCESS, '{"result": 1}', None, 200)], "a")
    assert done == ["t0"]
    t0 = store.get("t0")
    assert t0 is not None
    assert (t0.status, t0.result, t0.status_code) == (SUCCESS, '{"result": 1}', 200)
    assert t0.callback_status == "NONE"
    assert store.get("nope") is None
    assert store.counts() == {SUCCESS: 1, STARTED: 1, PENDING: 1}


def test_max_pending_counts_pending_only(store: TaskStore):
    assert store.add(tasks(3), max_pending=2) == [True, True, False]
    store.claim(["m"], "a", 2, 60)  # STARTED tasks do not count
    more = [Task("x", "m", b"{}"), Task("y", "m", b"{}"), Task("z", "m", b"{}")]
    assert store.add(more, max_pending=2) == [True, True, False]
    finished = Task("s", "m", b"", status=SUCCESS, result_blob=b"pickle")
    assert store.add([finished], max_pending=0) == [True]  # finished records always fit
    assert store.result_blob("s") == b"pickle"


def test_finish_needs_the_owner_and_happens_once(store: TaskStore):
    store.add(tasks(1), max_pending=10)
    store.claim(["m"], "a", 1, 60)
    assert store.finish([Outcome("t0", FAILURE, None, "tb", 400)], "b") == []
    assert store.finish([Outcome("t0", FAILURE, None, "tb", 400)], "a") == ["t0"]
    assert store.finish([Outcome("t0", SUCCESS, "1", None, 200)], "a") == []
    assert store.get("t0").status == FAILURE
    assert store.claim(["m"], "a", 5, 60, now=1e12) == []  # finished: never claimed again


def test_expired_lease_is_claimed_again_and_renew_keeps_it(store: TaskStore):
    import time

    store.add(tasks(2), max_pending=10)
    store.claim(["m"], "a", 2, 10)
    now = time.time()
    assert store.requeue_expired(now=now + 5) == 0
    store.renew(["t0"], "a", 100)
    assert store.requeue_expired(now=now + 20) == 1  # t1: its process went silent
    again = store.claim(["m"], "b", 5, 10, now=now + 20)
    assert [t.id for t in again] == ["t1"] and again[0].attempts == 2
    # the first owner lost t1: its late outcome is ignored
    assert store.finish([Outcome("t1", SUCCESS, "1", None, 200)], "a") == []


def test_recover_requeues_started(store: TaskStore, open_store: Any):
    store.add(tasks(3), max_pending=10)
    store.claim(["m"], "a", 2, 60)
    store.finish([Outcome("t0", SUCCESS, "1", None, 200)], "a")
    if open_store.kind == "postgres":  # shared: other processes run them; leases recover
        assert store.recover() == 0 and store.get("t1").status == STARTED
        return
    assert store.recover() == 1
    assert store.get("t1").status == PENDING and store.get("t0").status == SUCCESS


def test_concurrent_claims_never_share_a_task(open_store: Any):
    first = open_store()
    first.add(tasks(400), max_pending=1000)
    got: dict[str, list[str]] = {}
    stores = [open_store() for _ in range(4)]  # one connection each, as processes have

    def claimer(name: str, s: Any) -> None:
        mine: list[str] = []
        while batch := s.claim(["m"], name, 7, 60):
            mine += [t.id for t in batch]
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}", s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for mine in got.values() for i in mine]
    assert len(ids) == 400 and len(set(ids)) == 400


def test_prune_keeps_unsettled_callbacks(store: TaskStore):
    store.add(
        [Task("a", "m", b"{}"), Task("b", "m", b"{}", callback_url="http://x/")], max_pending=10
    )
    store.claim(["m"], "w", 5, 60)
    store.finish(
        [Outcome("a", SUCCESS, "1", None, 200), Outcome("b", SUCCESS, "1", None, 200)],
        "w",
        now=1000.0,
    )
    assert store.prune(2000.0) == 1  # b waits for its callback
    assert store.get("a") is None and store.get("b") is not None


def test_callback_claims_and_final_state_erases_credentials(store: TaskStore):
    auth = {"kind": "basic", "username": "u", "password": "secret"}
    store.add([Task("a", "m", b"{}", callback_url="http://x/", callback_auth=auth)], max_pending=9)
    store.claim(["m"], "w", 1, 60)
    store.finish([Outcome("a", SUCCESS, "1", None, 200)], "w", now=1000.0)
    due = store.claim_callbacks("w", 10, 30, now=1000.0)
    assert [t.id for t in due] == ["a"] and due[0].callback_auth == auth
    assert store.claim_callbacks("v", 10, 30, now=1001.0) == []  # taken
    store.set_callback("a", "w", "PENDING", attempts=1, error="HTTP 503", next_at=1005.0)
    assert store.claim_callbacks("w", 10, 30, now=1004.0) == []
    assert [t.id for t in store.claim_callbacks("w", 10, 30, now=1006.0)] == ["a"]
    store.requeue_expired(now=1100.0)  # the sender went silent: due again
    assert [t.id for t in store.claim_callbacks("v", 10, 30, now=1100.0)] == ["a"]
    store.set_callback("a", "w", "DELIVERED", attempts=2, error=None)  # not the owner: ignored
    assert store.get("a").callback_status == "SENDING"
    store.set_callback("a", "v", "DELIVERED", attempts=2, error=None)
    t = store.get("a")
    assert (t.callback_status, t.callback_attempts, t.callback_auth) == ("DELIVERED", 2, None)
