"""Durable async tasks (SPEC 7): the queue's storage, its workers and callbacks.

- :mod:`.store`: :class:`~.store.TaskStore`, the SQLite table of tasks behind a small
  interface another backend can implement;
- :mod:`.queue`: :class:`~.queue.TaskQueue`, one per server process: group-committed
  submits, the worker loop feeding tasks to the models' pipelines, leases, pruning;
- :mod:`.callbacks`: delivery of the final state to ``callback_url`` (httpx, basic auth
  or mTLS, backoff with jitter);
- :mod:`.inputs`: a task's ``url`` input (local path, ``file://``, ``http(s)://``);
- :mod:`.metrics`: Prometheus metrics of tasks, callbacks and streams.

Nothing here is imported by ``import predictor_runtime``; httpx is imported on first use.
"""
