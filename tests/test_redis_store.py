"""RedisStore against a real redis-server: persistence, resume, idempotence, TTLs, indexes.

Real sockets: no mock clock; every test runs under a trio deadline.
"""

from __future__ import annotations

import json

import pytest
import trio

from trio_streams import RunStatus, open_hub
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore

from .redis_support import eventually

pytestmark = pytest.mark.redis  # real redis-server processes


def tokens(n: int, payload: str = "x" * 20):
    async def producer(ctx):
        for i in range(n):
            ctx.emit_nowait("token", {"i": i, "p": payload})
            if i % 100 == 0:
                await trio.lowlevel.checkpoint()
        ctx.result = {"count": n}

    return producer


async def test_run_events_and_meta_land_in_redis(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix, flush_events=64)
        async with open_hub(store, grace_period=0) as hub:
            run = await hub.start(tokens(1000), key="conv-1", owner="alice", metadata={"m": 1})
            info = await hub.wait(run.id)
            assert info.status is RunStatus.DONE
            stored = await store.get_run(run.id)
            assert stored is not None
            assert stored.status is RunStatus.DONE
            assert (stored.key, stored.owner, stored.metadata) == ("conv-1", "alice", {"m": 1})
            assert stored.result == {"count": 1000}
            assert stored.last_seq == 1001
            events = await store.read_events(run.id, 0, 10_000)
            assert [e.seq for e in events] == list(range(1, 1002))
            assert events[0].data == {"i": 0, "p": "x" * 20}
            assert events[-1].type == "done"
            assert events[-1].data == {"result": {"count": 1000}}
            # Batched: far fewer stream entries than events.
            entries = await store.client.xlen(store.keys.events(run.id))
            assert 1 <= entries < 100
            # The hub evicted it (grace 0): it is served from Redis now.
            assert hub.get(run.id) is None
            async with hub.subscribe(run.id, after=990) as sub:
                got = [item async for item in sub]
            assert [e.seq for e in got if isinstance(e, Event)] == list(range(991, 1002))
            assert len(got) == 11


@pytest.mark.parametrize("after", [0, 1, 255, 256, 257, 511, 512, 998, 1000, 1001])
async def test_resume_after_n_returns_exactly_the_events_after_n(redis_url, prefix, after):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix, max_entry_events=256)
        async with open_hub(store) as hub:
            run = await hub.start(tokens(1000))
            await hub.wait(run.id)
            events = await store.read_events(run.id, after, 10_000)
            assert [e.seq for e in events] == list(range(after + 1, 1002))
            limited = await store.read_events(run.id, after, 7)
            assert [e.seq for e in limited] == list(range(after + 1, min(after + 8, 1002)))


async def test_retried_flush_is_idempotent(redis_url, prefix):
    """Re-sending the same frozen commands (a flush retried after a dropped reply) writes nothing twice."""
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix, max_entry_events=4)
        async with trio.open_nursery() as nursery:
            await store.start(nursery)
            writer = store._writer
            for seq in range(1, 11):
                store.append_nowait("r1", Event.create(seq, "token", seq, 1.0))
            frozen = writer._freeze()
            await writer._send(frozen.commands)
            await writer._send(frozen.commands)  # the retry
            await writer._send(frozen.commands[:1])  # a partial retry
            events = await store.read_events("r1", 0, 100)
            assert [e.seq for e in events] == list(range(1, 11))
            assert await store.client.xlen(store.keys.events("r1")) == 3
            writer._landed(frozen)
            await store.aclose()


async def test_two_prefixes_never_see_each_other(redis_url, prefix):
    with trio.fail_after(10):
        a = RedisStore(redis_url, prefix=prefix + "a:")
        b = RedisStore(redis_url, prefix=prefix + "b:")
        async with open_hub(a) as hub_a, open_hub(b) as hub_b:
            run_a = await hub_a.start(tokens(5), owner="u")
            run_b = await hub_b.start(tokens(5), owner="u")
            await hub_a.wait(run_a.id)
            await hub_b.wait(run_b.id)
            assert [i.run_id for i in await a.list_runs()] == [run_a.id]
            assert [i.run_id for i in await b.list_runs(owner="u")] == [run_b.id]
            assert await a.get_run(run_b.id) is None
            assert await b.read_events(run_a.id, 0, 100) == []
            keys = await a.client.keys(prefix + "a:*")
            assert keys
            assert all(run_b.id not in key for key in keys)


async def test_ttls_set_while_running_and_after_completion(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(
            redis_url,
            prefix=prefix,
            ttl_running=300,
            ttl_finished=200,
            ttl_events_finished=100,
            lease_ttl=0.6,
        )
        release = trio.Event()
        emitted = trio.Event()

        async def producer(ctx):
            await ctx.emit("token", 1)
            emitted.set()
            await release.wait()

        async with open_hub(store) as hub:
            run = await hub.start(producer, owner="o")
            client = store.client
            keys = store.keys
            await emitted.wait()
            await store._writer.wait_durable(store._writer.ticket())
            assert 290_000 < await client.pttl(keys.meta(run.id)) <= 300_000
            assert 290_000 < await client.pttl(keys.events(run.id)) <= 300_000
            assert 0 < await client.pttl(keys.lease(run.id)) <= 400  # the key lives 2/3 of lease_ttl
            # The lease is renewed (6 times per lease_ttl) and the running TTL refreshed.
            await client.pexpire(keys.meta(run.id), 50_000)
            await client.pexpire(keys.lease(run.id), 100)

            async def refreshed() -> bool:
                return (
                    await client.pttl(keys.meta(run.id)) > 290_000
                    and await client.pttl(keys.lease(run.id)) > 200
                )

            await eventually(refreshed)
            assert await client.zscore(keys.running, run.id) is not None
            assert await client.zscore(keys.owner_live("o"), run.id) is not None
            release.set()
            await hub.wait(run.id)
            assert 190_000 < await client.pttl(keys.meta(run.id)) <= 200_000
            assert 90_000 < await client.pttl(keys.events(run.id)) <= 100_000
            assert await client.exists([keys.lease(run.id)]) == 0
            assert await client.zscore(keys.running, run.id) is None
            assert await client.zscore(keys.owner_live("o"), run.id) is None
            assert await client.zscore(keys.owner_runs("o"), run.id) is not None


async def test_indexes_heal_when_meta_expired(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store) as hub:
            runs = [await hub.start(tokens(3), owner="o") for _ in range(3)]
            for run in runs:
                await hub.wait(run.id)
            client = store.client
            # A crashed owner's leftovers: a running-set entry with no meta, one for a finished run.
            await client.zadd(store.keys.running, {"ghost": 1.0, runs[0].id: 2.0})
            await client.delete([store.keys.meta(runs[1].id)])
            listed = await store.list_runs(owner="o")
            assert {i.run_id for i in listed} == {runs[0].id, runs[2].id}
            assert await store.list_runs(status=RunStatus.RUNNING) == []
            assert await client.zcard(store.keys.running) == 0
            assert await client.zscore(store.keys.owner_runs("o"), runs[1].id) is None


async def test_meta_hash_is_readable(redis_url, prefix):
    """The layout documented in docs/redis.md: plain status, JSON fields."""
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store) as hub:
            run = await hub.start(tokens(2), key="k", owner="o")
            await hub.wait(run.id)
            fields = await store.client.hgetall(f"{prefix}run:{{{run.id}}}:meta")
            assert fields["status"] == "done"
            assert fields["last_seq"] == "3"
            assert json.loads(fields["key"]) == "k"
            assert json.loads(fields["result"]) == {"count": 2}
            assert fields["instance"] == store.instance_id


async def test_ping_and_statistics(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store) as hub:
            await store.ping()
            run = await hub.start(tokens(10))
            await hub.wait(run.id)
            stats = hub.statistics().store
            assert stats.events == 11
            assert stats.pending_events == 0
            assert stats.flush_errors == 0
            assert stats.runs == 1
        with pytest.raises(trio.ClosedResourceError):
            await store.ping()
