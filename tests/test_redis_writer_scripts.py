"""The runs writer's scripts on a real redis-server: one round trip per flush, and NOSCRIPT recovered.

A flush is one pipeline. Its scripts go out as EVALSHA of their digests, so
no ``SCRIPT EXISTS`` precedes it (a coredis pipeline given Script objects
sends one and waits for it: a second round trip that a mirror's subscribers
elsewhere waited for). Real sockets: no mock clock; every test runs under a
trio deadline.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from trio_streams import RunStatus, open_hub
from trio_streams.log.redis import RedisStore

pytestmark = pytest.mark.redis  # real redis-server processes


def tokens(n: int):
    async def producer(ctx: Any) -> None:
        for i in range(n):
            ctx.emit_nowait("token", {"i": i})
            await trio.lowlevel.checkpoint()  # one event per step: many small flushes
        ctx.result = {"count": n}

    return producer


async def calls(store: RedisStore, command: str) -> int:
    stats: Any = await store.client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_a_flush_sends_no_script_exists(redis_url, prefix):
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store, grace_period=0) as hub:
            await store.client.config_resetstat()
            # Many flushes whatever the machine's load: each run waits for its events in Redis.
            for _ in range(12):
                run = await hub.start(tokens(20))
                assert (await hub.wait(run.id)).status is RunStatus.DONE
                await store._writer.wait_durable(store._writer.ticket())
            flushes = store._writer._queue.batches
            assert flushes >= 12
            assert await calls(store, "evalsha") >= flushes
            assert await calls(store, "script|exists") == 0
            events = await store.read_events(run.id, 0, 1000)
            assert [e.seq for e in events] == list(range(1, 22))


async def test_scripts_are_loaded_again_after_noscript(redis_url, prefix):
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store, grace_period=0) as hub:
            first = await hub.start(tokens(20))
            assert (await hub.wait(first.id)).status is RunStatus.DONE
            await store._writer.wait_durable(store._writer.ticket())
            assert store._writer.script_loads == 1
            await store.client.script_flush()  # as after a restart of Redis (or a failover)
            second = await hub.start(tokens(20))
            assert (await hub.wait(second.id)).status is RunStatus.DONE
            await store._writer.wait_durable(store._writer.ticket())
            # Loaded again and sent again in the same flush: no failed flush, no backoff.
            assert store._writer.script_loads == 2
            assert store._writer.flush_errors == 0
            events = await store.read_events(second.id, 0, 1000)
            assert [e.seq for e in events] == list(range(1, 22))
            stored = await store.get_run(second.id)
            assert stored is not None
            assert stored.status is RunStatus.DONE


async def test_a_script_first_sent_or_flushed_logs_nothing_at_info(redis_url, prefix, caplog):
    # Black-box pass: the first EVALSHA of a script (coredis loads it on NOSCRIPT
    # and retries) logged "coredis: Retry attempt 1 ... No matching script" at INFO.
    # That reload is routine (first use; after a restart or SCRIPT FLUSH): DEBUG.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="coredis")  # kept at DEBUG: seen here, demoted
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store, grace_period=0) as hub:
            first = await hub.start(tokens(3), key="k")  # a key claim: a coredis Script
            assert (await hub.wait(first.id)).status is RunStatus.DONE
            await store.client.script_flush()  # as after a restart of Redis
            second = await hub.start(tokens(3), key="k")
            assert (await hub.wait(second.id)).status is RunStatus.DONE
    reloads = [r for r in caplog.records if "No matching script" in r.getMessage()]
    assert len(reloads) >= 2, [r.getMessage() for r in caplog.records]  # first use, after the flush
    assert {(r.name, r.levelno) for r in reloads} == {("coredis", logging.DEBUG)}
    assert not [r for r in caplog.records if r.name.startswith("coredis") and r.levelno >= logging.INFO]
