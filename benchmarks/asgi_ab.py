"""In-process A/B of the server's predict path: the ASGI app called directly, no sockets.

16 concurrent one-instance requests (30 floats) to an identity-like custom predictor
through ``App`` (routing, body, pipeline, batcher, metrics, response), for 4 s; prints
requests/s. Much less sensitive to a busy machine than ``load.py`` (no wrk, no kernel
networking; alternate the two trees run by run on one core)::

    for tree in /work/wt/before /work/wt/after; do
        PYTHONPATH=$tree taskset -c 0 python benchmarks/asgi_ab.py
    done
"""

import asyncio
import time

import numpy as np

from predictor_runtime.loader import LoadedModel
from predictor_runtime.server.app import App
from predictor_runtime.server.metrics import Metrics
from predictor_runtime.server.registry import BatchSettings, Registry


class Identity:
    batching = True

    def predict(self, instances, **kw):
        return np.asarray(instances).sum(axis=1).tolist()


async def main(n_conc=16, seconds=4.0):
    met = Metrics()
    reg = Registry(BatchSettings(), on_batch=met.batch_hook)
    v = reg.add_version("m", "v1", deployment_uri="/x")
    reg.attach(v, LoadedModel.wrap(Identity(), "custom", "/x"))
    app = App(reg, metrics=met)
    # lifespan startup
    q = asyncio.Queue()
    await q.put({"type": "lifespan.startup"})
    life_out = []

    async def lrecv():
        return await q.get()

    async def lsend(m):
        life_out.append(m)

    life = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lrecv, lsend)
    )
    while not life_out:
        await asyncio.sleep(0.01)
    body = b'{"instances": [[' + b",".join(b"%.3f" % x for x in np.random.rand(30)) + b"]]}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/models/m:predict",
        "raw_path": b"/v1/models/m:predict",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    done = 0
    stop = time.perf_counter() + seconds

    async def client():
        nonlocal done
        while time.perf_counter() < stop:
            sent = False

            async def receive():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.sleep(3600)

            status = []

            async def send(m, status=status):
                if m["type"] == "http.response.start":
                    status.append(m["status"])

            await app(dict(scope), receive, send)
            assert status == [200], status
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n_conc)))
    el = time.perf_counter() - t0
    print(f"{done / el:.1f}")
    await q.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(life, 10)


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    asyncio.run(main())
