"""Redis goes away mid-run: the run goes on in memory, nothing is lost,
duplicated or reordered; past the buffer bound the run fails loudly.

Each test owns a redis-server process (append-only, so a restart keeps what
was written) that it kills with SIGKILL and restarts on the same port.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio

from trio_streams import KeysUnavailable, RunStatus, open_hub
from trio_streams.stores._redis_server import RedisServer
from trio_streams.stores.redis import RedisStore

from .redis_support import eventually, unique_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


pytestmark = pytest.mark.redis  # real redis-server processes


@asynccontextmanager
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    # appendfsync always: an acknowledged write is in the file before the
    # reply, so a SIGKILL loses nothing (everysec may lose about a second).
    server = RedisServer(tmp_path / "redis", appendonly=True, args=("--appendfsync", "always"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Script:
    """A producer that emits in phases the test releases one by one."""

    def __init__(self, *phases: int) -> None:
        self.phases = phases
        self.go = [trio.Event() for _ in phases]
        self.done = [trio.Event() for _ in phases]

    async def __call__(self, ctx) -> None:
        n = 0
        for phase, count in enumerate(self.phases):
            await self.go[phase].wait()
            for _ in range(count):
                n += 1
                await ctx.emit("token", {"n": n, "pad": "y" * 80})
            self.done[phase].set()
        ctx.result = n


async def kill_redis_after_the_first_step(script: Script, store: RedisStore, server: RedisServer) -> None:
    """Let ``script`` emit its first step, make it durable, kill Redis, then
    let the script go on (into the outage)."""
    script.go[0].set()
    await script.done[0].wait()
    await store._writer.wait_durable(store._writer.ticket())
    server.kill()
    await server.wait_exited()
    script.go[1].set()


async def test_redis_killed_and_restarted_mid_run_loses_nothing(tmp_path, caplog):
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            store = RedisStore(server.url, prefix=unique_prefix(), backoff_min=0.02, backoff_max=0.2)
            script = Script(300, 500, 200)
            async with open_hub(store, store_timeout=20) as hub:
                run = await hub.start(script)
                await kill_redis_after_the_first_step(script, store, server)
                await script.done[1].wait()

                async def unhealthy() -> bool:
                    await trio.lowlevel.checkpoint()
                    return not store.statistics().healthy

                await eventually(unhealthy)
                stats = store.statistics()
                assert stats.pending_events > 0
                assert stats.flush_errors > 0
                assert run.status is RunStatus.RUNNING  # going on in memory

                async def three(ctx):
                    for n in range(3):
                        await ctx.emit("token", n)

                # Starting works too; with a key, only if Redis can claim it
                # (strict, the default): refused now, rather than risk two runs of it.
                with pytest.raises(KeysUnavailable):
                    await hub.start(three, key="k", owner="o")
                second = await hub.start(three, owner="o")
                await server.start()  # same port, same append-only file
                script.go[2].set()
                info = await hub.wait(run.id)
                assert info.status is RunStatus.DONE
                events = await store.read_events(run.id, 0, 10_000)
                assert [e.seq for e in events] == list(range(1, 1002))
                assert [e.data["n"] for e in events[:-1]] == list(range(1, 1001))
                assert events[-1].type == "done"
                stored = await store.get_run(run.id)
                assert stored is not None
                assert stored.status is RunStatus.DONE
                assert stored.last_seq == 1001
                assert store.statistics().healthy
                assert (await hub.wait(second.id)).status is RunStatus.DONE
                assert [e.seq for e in await store.read_events(second.id, 0, 100)] == [1, 2, 3, 4]
                assert store.statistics().pending_events == 0
    assert "redis flush" in caplog.text
    assert "reachable again" in caplog.text


async def test_buffer_bound_exceeded_fails_the_run_loudly(tmp_path, caplog):
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            store = RedisStore(
                server.url,
                prefix=unique_prefix(),
                max_buffered_events=50,
                backoff_min=0.02,
                backoff_max=0.1,
            )
            script = Script(10, 100)
            async with open_hub(store, store_timeout=20) as hub:
                run = await hub.start(script)
                await kill_redis_after_the_first_step(script, store, server)
                with trio.move_on_after(0.3) as waited:
                    await hub.wait(run.id)  # finalization waits for Redis (up to store_timeout)
                assert waited.cancelled_caught
                # Failed, loudly: the error is decided, logged and counted, and
                # its terminal event is queued -- but nobody is told the run
                # ended before that end is durable.
                assert run.error == {"code": "store_overflow", "message": "the store could not keep up"}
                assert run.status is RunStatus.RUNNING
                assert run.log.read_after(0)[-1].type == "token"
                stats = store.statistics()
                assert stats.overflows == 1
                assert not stats.healthy
                assert stats.pending_events == 51  # 50 + the terminal error event
                assert hub.statistics().store.pending_events == 51
                await server.start()
                info = await hub.wait(run.id)
                assert info.status is RunStatus.ERROR
                assert run.log.read_after(0)[-1].type == "error"
                events = await store.read_events(run.id, 0, 10_000)
                assert [e.seq for e in events] == list(range(1, 62))
                assert events[-1].type == "error"
                stored = await store.get_run(run.id)
                assert stored is not None
                assert stored.status is RunStatus.ERROR
                assert stored.error == {"code": "store_overflow", "message": "the store could not keep up"}
    assert "buffer full" in caplog.text


async def test_redis_killed_while_flushes_are_in_flight(tmp_path):
    """No pause before the kill: pipelines are cut mid-way and re-sent whole."""
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            store = RedisStore(
                server.url, prefix=unique_prefix(), flush_events=64, backoff_min=0.02, backoff_max=0.1
            )
            total = 6000
            killed = trio.Event()
            restarted = trio.Event()

            async def producer(ctx):
                for n in range(1, total + 1):
                    await ctx.emit("token", n)
                    if n == 2000:
                        server.kill()
                        killed.set()
                    if n == 4000:
                        await restarted.wait()

            async with open_hub(store, store_timeout=20) as hub:
                run = await hub.start(producer)
                await killed.wait()
                await server.wait_exited()

                async def unhealthy() -> bool:
                    await trio.lowlevel.checkpoint()
                    return not store.statistics().healthy

                await eventually(unhealthy)
                await server.start()
                restarted.set()
                info = await hub.wait(run.id)
                assert info.status is RunStatus.DONE
                assert store.statistics().flush_errors > 0
                events = await store.read_events(run.id, 0, 100_000)
                assert [e.seq for e in events] == list(range(1, total + 2))
                assert [e.data for e in events[:-1]] == list(range(1, total + 1))


async def test_outage_longer_than_the_lease_does_not_kill_live_runs(tmp_path):
    """Redis down past the lease TTL drops every lease; the live owner re-creates
    it within the claim grace, so no instance declares its run dead."""
    lease = 0.6
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            prefix = unique_prefix()

            def store() -> RedisStore:
                return RedisStore(
                    server.url,
                    prefix=prefix,
                    lease_ttl=lease,
                    backoff_min=0.02,
                    backoff_max=0.1,
                    follow_block=0.1,
                )

            owner, other = store(), store()
            script = Script(100, 100, 100)
            async with open_hub(owner, store_timeout=20) as hub, open_hub(other) as watcher:
                run = await hub.start(script)
                await kill_redis_after_the_first_step(script, owner, server)
                await script.done[1].wait()
                await trio.sleep(2 * lease)  # real time must pass: every lease expires
                await server.start()
                script.go[2].set()
                info = await hub.wait(run.id)
                assert info.status is RunStatus.DONE
                assert (await watcher.wait(run.id)).status is RunStatus.DONE
                events = await owner.read_events(run.id, 0, 10_000)
                assert [e.seq for e in events] == list(range(1, 302))
                assert events[-1].type == "done"
                assert owner.statistics().claimed_dead == other.statistics().claimed_dead == 0
