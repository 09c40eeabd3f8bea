"""Task ``url`` inputs and callback delivery, in process (the HTTP paths are tested in
tests/server/test_launch_*.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from predictor_runtime.server.paths import PathNotAllowedError, check_allowed
from predictor_runtime.server.registry import Registry
from predictor_runtime.tasks import callbacks
from predictor_runtime.tasks.inputs import UrlInputError, read_url, to_body
from predictor_runtime.tasks.queue import TaskQueue
from predictor_runtime.tasks.store import Outcome, Task


def test_to_body_keeps_bodies_and_wraps_json_lines():
    assert to_body(b'{"instances": [1], "k": 2}') == b'{"instances": [1], "k": 2}'
    assert to_body(b'{"a": 1}\n{"a": NaN}\n') == b'{"instances":[{"a": 1},{"a": NaN}]}'
    with pytest.raises(UrlInputError, match="empty"):
        to_body(b"  \n")


def test_no_fetch_urls_refuses_http():
    with pytest.raises(UrlInputError, match="--no-fetch-urls"):
        asyncio.run(read_url("https://example.invalid/x.jsonl", fetch_urls=False))
    with pytest.raises(UrlInputError, match="unsupported scheme"):
        asyncio.run(read_url("s3://bucket/x.jsonl"))


def test_check_allowed_resolves_symlinks(tmp_path: Path):
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "ok.json").write_text("{}")
    (inside / "escape").symlink_to(tmp_path)
    assert check_allowed(inside / "ok.json", [str(inside)]) == (inside / "ok.json").resolve()
    assert check_allowed("/anything", []) == Path("/anything")
    with pytest.raises(PathNotAllowedError, match="--allow-paths") as info:
        check_allowed(inside / "escape" / "secret", [str(inside)], what="url")
    assert "secret" not in str(info.value)


def test_backoff_grows_with_jitter_and_is_capped():
    for attempt in range(1, 12):
        delay = callbacks.backoff(attempt, base=0.5, cap=30)
        full = min(30, 0.5 * 2 ** (attempt - 1))
        assert full / 2 <= delay <= full


def test_payload_embeds_the_stored_result():
    task = Task("t", "m", b"", status="SUCCESS", result='{"result": {"predictions": [1]}}')
    assert callbacks.payload(task) == (
        b'{"task_id":"t","status":"SUCCESS","result":{"result": {"predictions": [1]}},'
        b'"traceback":null}'
    )


def test_callback_gives_up_at_its_deadline(tmp_path: Path):
    """A receiver that never answers: retried until the deadline, then FAILED."""

    class DeadSender(callbacks.CallbackSender):
        async def send(self, task: Task) -> callbacks.Attempt:
            return callbacks.Attempt(False, True, "ConnectError: refused")

    async def main() -> Task:
        queue = TaskQueue(Registry(), state_dir=str(tmp_path))
        await queue.start()
        queue.sender = DeadSender()
        store = queue.store
        assert store is not None
        store.callback_seconds = 0.0  # the deadline is the moment the task finished
        await queue.run(store.add, [Task("t", "m", b"{}", callback_url="http://x/")], max_pending=9)
        await queue.run(store.claim, ["m"], queue.owner, 1, 60)
        await queue.run(store.finish, [Outcome("t", "SUCCESS", "1", None, 200)], queue.owner)
        queue._wake_callbacks.set()
        deadline = time.monotonic() + 10
        while (task := await queue.get("t")).callback_status in ("PENDING", "SENDING"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await queue.stop()
        return task

    task = asyncio.run(main())
    assert task.callback_status == "FAILED" and task.callback_attempts == 1
    assert task.callback_error == "ConnectError: refused"
