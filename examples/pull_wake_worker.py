"""A pull-wake worker, in process: sleep until a subscription's streams have data, claim, read, ack.

The same steps over HTTP are in docs/durable.md ("Subscriptions"): follow the
wake stream, ``POST .../claim``, read each stream from its ``acked_offset``,
``POST .../ack`` with the claim's token. Run: ``python examples/pull_wake_worker.py``.
"""

from __future__ import annotations

import json

import trio

from trio_streams.durable import DurableStreamError, DurableStreamStore, SubscribedBackend, with_subscriptions
from trio_streams.durable._backend import as_backend
from trio_streams.durable._offsets import Offset
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_config import parse_config

JSON = "application/json"


async def main() -> None:
    store = DurableStreamStore()
    backend = with_subscriptions(as_backend(store))
    subs = backend.registry
    async with trio.open_nursery() as nursery:
        await nursery.start(subs.serve)
        await backend.create("wake/pool", CreateRequest(content_type=JSON))
        config = {"type": "pull-wake", "pattern": "orders/*", "wake_stream": "wake/pool"}
        await subs.put(None, "orders", parse_config(config), "http://localhost/callback")
        done = trio.Event()
        nursery.start_soon(worker, store, backend, done)
        for n, name in enumerate(["orders/a", "orders/b", "orders/a"], 1):
            body = json.dumps({"order": n}).encode()
            try:
                await backend.append(name, AppendRequest(body, JSON))
            except DurableStreamError:  # not there yet: create it with this first order
                await backend.create(name, CreateRequest(content_type=JSON, body=body))
        await done.wait()
        nursery.cancel_scope.cancel()


async def worker(store: DurableStreamStore, backend: SubscribedBackend, done: trio.Event) -> None:
    subs = backend.registry
    wake_stream = store.head("wake/pool")
    seen = 0
    handled = 0
    while handled < 3:
        # Sleep until a wake event arrives (a long-poll on the wake stream over HTTP).
        await store.wait(wake_stream, seen, trio.current_time() + 60)
        seen = wake_stream.tail.position
        try:
            _, wake = await subs.claim(None, "orders", "worker-1")
        except DurableStreamError as exc:
            if exc.code != "NO_PENDING_WORK":
                raise
            continue  # an earlier claim took this data already
        acks = []
        for link in (await subs.get(None, "orders")).stream_infos(tails=True):
            if not link["has_pending"]:
                continue
            stream = store.head(link["path"])
            found = store.read(stream, Offset.parse(link["acked_offset"]).position)
            for piece in found.pieces:
                for message in piece:
                    print(f"{link['path']} {json.loads(message)}")
                    handled += 1
            acks.append({"stream": link["path"], "offset": str(found.end)})
        request = {"wake_id": wake.wake_id, "generation": wake.generation, "acks": acks, "done": True}
        await subs.ack(None, "orders", wake.token, request, kind="pull-wake")
    done.set()


if __name__ == "__main__":
    trio.run(main)
