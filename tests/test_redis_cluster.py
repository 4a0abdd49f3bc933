"""The same RedisStore code against a real 3-master Redis Cluster.

Fixture: three ``redis-server --cluster-enabled yes`` processes joined by
``redis-cli --cluster create``. No mock clock; trio deadlines.
"""

from __future__ import annotations

import pytest
import trio

from trio_streams import RunStatus, open_hub
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore

from .redis_support import unique_prefix

pytestmark = pytest.mark.redis  # real redis-server processes


async def test_a_runs_keys_share_one_slot_and_runs_spread(redis_cluster):
    with trio.fail_after(20):
        # The URL can say it is a cluster (what `serve --redis-url` passes on).
        store = RedisStore(redis_cluster.url + "?cluster=yes", prefix=unique_prefix())

        async def producer(ctx):
            await ctx.emit("token", 1)
            return "ok"

        async with open_hub(store) as hub:
            runs = [await hub.start(producer, key=f"k{i}", owner="o") for i in range(12)]
            for run in runs:
                assert (await hub.wait(run.id)).status is RunStatus.DONE
            client = store.client
            slots_of_runs = set()
            for run in runs:
                keys = store.keys
                slots = {
                    await client.cluster_keyslot(key)
                    for key in (keys.events(run.id), keys.meta(run.id), keys.lease(run.id))
                }
                assert len(slots) == 1
                slots_of_runs |= slots
                assert [e.data for e in await store.read_events(run.id, 0, 10)] == [1, {"result": "ok"}]
            assert len(slots_of_runs) > 1  # runs spread over the cluster
            listed = await store.list_runs(owner="o")
            assert {info.run_id for info in listed} == {run.id for run in runs}


async def test_full_cycle_start_subscribe_cancel_on_a_cluster(redis_cluster):
    with trio.fail_after(20):
        prefix = unique_prefix()
        a = RedisStore(redis_cluster.url, prefix=prefix, cluster=True)
        b = RedisStore(redis_cluster.url, prefix=prefix, cluster=True)
        first = trio.Event()

        async def ticker(ctx):
            n = 0
            while True:
                n += 1
                ctx.result = n
                await ctx.emit("token", n)
                first.set()
                await trio.sleep(0.002)

        async with open_hub(a, grace_period=0) as hub_a, open_hub(b, grace_period=0) as hub_b:
            run = await hub_a.start(ticker, key="conv")
            await first.wait()
            received: list[Event] = []
            async with hub_b.subscribe(run.id) as sub:
                async for item in sub:
                    assert isinstance(item, Event)
                    received.append(item)
                    if len(received) == 25:
                        await hub_b.cancel(run.id)
            assert [e.seq for e in received] == list(range(1, len(received) + 1))
            assert received[-1].type == "cancelled"
            for hub in (hub_a, hub_b):
                info = await hub.wait(run.id)
                assert info.status is RunStatus.CANCELLED
                assert info.partial is True
                assert info.result == received[-1].seq - 1

            # Interrupt across instances on the cluster too.
            async def quick(ctx):
                return "second"

            first = trio.Event()
            again = await hub_a.start(ticker, key="conv2")
            await first.wait()  # running: it holds the key in Redis
            new = await hub_b.start(quick, key="conv2", on_conflict="interrupt")
            assert (await hub_b.wait(new.id)).result == "second"
            assert (await hub_a.wait(again.id)).reason == "interrupted"
