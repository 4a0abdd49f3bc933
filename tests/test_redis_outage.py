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

from trio_streams import Event, KeysUnavailable, RunStatus, open_hub
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis import _writer as _redis_writer
from trio_streams.log.redis._server import RedisServer
from trio_streams.testing import events_of

from .burst_support import Burst
from .redis_support import eventually, unique_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from trio_streams import Run


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


@asynccontextmanager
async def back_on_failure(server: RedisServer) -> AsyncIterator[None]:
    """If the test fails while Redis is down, bring Redis back before the hub
    closes: the hub's shutdown waits for it (up to ``store_timeout``), and a
    failing test must fail fast."""
    try:
        yield
    except Exception:
        if server.process is None or server.process.poll() is not None:
            with trio.move_on_after(10, shield=True):
                await server.start()
        raise


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


def kill_redis_once_durable(store: RedisStore, server: RedisServer) -> Callable[[Run], Awaitable[None]]:
    """A ``Burst`` hook: once everything queued so far is in Redis, kill it."""

    async def kill(run: Run) -> None:
        await store._writer.wait_durable(store._writer.ticket())
        server.kill()
        await server.wait_exited()

    return kill


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


def token_size(n: int) -> int:
    """The bytes one of :class:`Script`'s events counts against the pending bound."""
    return Event.create(n, "token", {"n": n, "pad": "y" * 80}, 0.0).size


async def fails_the_run_loudly_at_the_bound(server: RedisServer, store: RedisStore, caplog) -> None:
    """Ten events durable, then Redis dies: events 11..60 fit the bound, 61 does not."""
    script = Script(10, 100)
    async with open_hub(store, store_timeout=20) as hub, back_on_failure(server):
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
        assert stats.pending_meta == 1  # the final metadata, queued behind the events
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
        assert store.statistics().pending_bytes == 0
    assert "buffer full" in caplog.text


async def test_byte_bound_exceeded_fails_the_run_loudly(tmp_path, caplog):
    bound = sum(token_size(n) for n in range(11, 61))
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            store = RedisStore(
                server.url, prefix=unique_prefix(), max_pending_bytes=bound, backoff_min=0.02, backoff_max=0.1
            )
            await fails_the_run_loudly_at_the_bound(server, store, caplog)


async def test_the_deprecated_event_bound_still_fails_the_run_loudly(tmp_path, caplog):
    with trio.fail_after(30):
        async with own_redis(tmp_path) as server:
            with pytest.warns(DeprecationWarning, match="max_pending_bytes"):
                store = RedisStore(
                    server.url,
                    prefix=unique_prefix(),
                    max_buffered_events=50,
                    backoff_min=0.02,
                    backoff_max=0.1,
                )
            await fails_the_run_loudly_at_the_bound(server, store, caplog)


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


async def wait_unhealthy(store: RedisStore) -> None:
    async def unhealthy() -> bool:
        await trio.lowlevel.checkpoint()
        return not store.statistics().healthy

    await eventually(unhealthy)


async def test_a_burst_during_an_outage_reaches_every_subscriber(tmp_path):
    """25,000 events in one step while Redis is down: the log keeps all of them
    (nothing is durable), the subscribers read them all from it, and once Redis
    is back the log trims to its bounds -- no gap, every event once, in order."""
    burst = Burst()
    with trio.fail_after(120):
        async with own_redis(tmp_path) as server:
            store = RedisStore(server.url, prefix=unique_prefix(), backoff_min=0.02, backoff_max=0.2)

            async def during(run: Run) -> None:
                await burst.caught_up.wait()
                stats = store.statistics()
                assert stats.pending_events == 25_000  # none of it is in Redis
                assert (len(run.log), run.log.first_seq) == (25_000, 1)
                # Each event is counted once: the bytes the log keeps beyond its
                # bounds are the writer's not-yet-durable bytes.
                assert run.log.pending_nbytes == run.log.nbytes == stats.pending_bytes
                await server.start()

            async with open_hub(store, store_timeout=30) as hub, back_on_failure(server):
                run = await burst.run(hub, before=kill_redis_once_durable(store, server), during=during)
                assert (len(run.log), run.log.first_seq, run.log.pending_nbytes) == (10_000, 15_002, 0)
                events = await store.read_events(run.id, 0, 30_000)
    assert burst.missed == [0, 0, 0]
    assert burst.complete
    assert [e.seq for e in events] == list(range(1, 25_002))
    assert store.statistics().flush_errors > 0


async def test_a_burst_past_the_pending_bound_fails_its_run_not_its_readers(tmp_path, caplog):
    """While Redis is down the burst fills ``max_pending_bytes``: the run fails
    loudly (``store_overflow``) at the event that does not fit; its readers get
    every event before it, then the error, with no gap; another run's reads
    go on."""
    fits = 4_000
    bound = sum(Event.create(n, "token", {"n": n}, 0.0).size for n in range(1, fits + 1))
    burst = Burst(caught_up_at=fits)
    with trio.fail_after(120):
        async with own_redis(tmp_path) as server:
            store = RedisStore(
                server.url, prefix=unique_prefix(), max_pending_bytes=bound, backoff_min=0.02, backoff_max=0.2
            )
            async with (
                open_hub(store, store_timeout=30, log_max_events=1_000) as hub,
                back_on_failure(server),
            ):
                script = Script(50)
                other = await hub.start(script)
                script.go[0].set()
                await other.wait()

                async def during(run: Run) -> None:
                    await burst.caught_up.wait()
                    # The producer failed at event fits + 1, in the step that emitted it.
                    assert run.error == {"code": "store_overflow", "message": "the store could not keep up"}
                    stats = store.statistics()
                    assert stats.pending_bytes > bound  # the terminal event always fits
                    assert stats.pending_events == fits + 1
                    assert (len(run.log), run.log.pending_nbytes) == (fits, bound)
                    # The other run's readers are unaffected.
                    async with hub.subscribe(other.id) as subscription:
                        batch = await subscription.receive_batch()
                    assert [e.seq for e in events_of(batch)] == list(range(1, 52))
                    await server.start()

                run = await burst.run(hub, before=kill_redis_once_durable(store, server), during=during)
                info = await hub.wait(run.id)
    assert info.status is RunStatus.ERROR
    assert info.error == {"code": "store_overflow", "message": "the store could not keep up"}
    assert burst.missed == [0, 0, 0]
    assert all(seqs == list(range(1, fits + 2)) for seqs in burst.seqs)
    assert "buffer full" in caplog.text


async def test_runs_started_during_an_outage_are_refused_at_the_bound(tmp_path, caplog):
    """Each start queues a metadata write: counted against the bound like
    events, so runs that keep starting while Redis is down fail loudly at it
    (``store_overflow``) and the queue stops growing, instead of growing for
    as long as the outage lasts."""
    bound = 16 * 1024
    with trio.fail_after(120):
        async with own_redis(tmp_path) as server:
            store = RedisStore(
                server.url, prefix=unique_prefix(), max_pending_bytes=bound, backoff_min=0.02, backoff_max=0.2
            )

            async def nothing(ctx) -> None:
                await trio.lowlevel.checkpoint()

            async with open_hub(store, store_timeout=0.05) as hub, back_on_failure(server):
                server.kill()
                await server.wait_exited()
                # Its start discovers the outage (and waits for Redis to come back).
                discoverer = await hub.start(nothing)
                await wait_unhealthy(store)
                runs = []
                for n in range(200):
                    run = await hub.start(nothing, owner="u")
                    await run.wait()
                    runs.append(run)
                    if n == 99:
                        at_100 = store.statistics()
                after_200 = store.statistics()
                accepted = [run for run in runs if run.status is RunStatus.DONE]
                refused = [run for run in runs if run.status is RunStatus.ERROR]
                assert accepted
                assert len(accepted) + len(refused) == 200
                assert all(
                    run.error == {"code": "store_overflow", "message": "the store could not keep up"}
                    for run in refused
                )
                assert after_200.refused_runs == len(refused) >= 150
                # A refused run's log is not held: nothing of it is pending anywhere.
                assert all(run.log.pending_nbytes == 0 for run in refused)
                # Bounded: nothing was queued for the runs refused after the first 100.
                assert (after_200.pending_meta, after_200.pending_events, after_200.pending_bytes) == (
                    at_100.pending_meta,
                    at_100.pending_events,
                    at_100.pending_bytes,
                )
                # Over the bound by at most the end (terminal + final write) of the last accepted run.
                assert after_200.pending_bytes <= bound + 2048
                assert after_200.pending_meta == 1 + 2 * len(accepted)  # 1: the discoverer's start
                await server.start()
                await wait_healthy(store)
                assert (await discoverer.wait()).status is RunStatus.DONE
                await store._writer.wait_durable(store._writer.ticket())
                assert store.statistics().pending_bytes == 0
                for run in accepted:
                    stored = await store.get_run(run.id)
                    assert stored is not None
                    assert stored.status is RunStatus.DONE
                for run in refused:
                    assert await store.get_run(run.id) is None
    assert "buffer full" in caplog.text


async def wait_healthy(store: RedisStore) -> None:
    async def healthy() -> bool:
        await trio.lowlevel.checkpoint()
        return store.statistics().healthy

    await eventually(healthy)


async def test_a_backlog_goes_out_in_pipelines_of_bounded_size(tmp_path, monkeypatch):
    """After an outage the backlog is flushed as several pipelines (each about
    ``_FLUSH_MAX_BYTES``), in order, rather than as one that could outlast
    ``stream_timeout`` and be retried forever."""
    monkeypatch.setattr(_redis_writer, "_FLUSH_MAX_BYTES", 16 * 1024)
    with trio.fail_after(60):
        async with own_redis(tmp_path) as server:
            store = RedisStore(server.url, prefix=unique_prefix(), backoff_min=0.02, backoff_max=0.1)
            script = Script(10, 1000)
            async with open_hub(store, store_timeout=20) as hub, back_on_failure(server):
                run = await hub.start(script)
                await kill_redis_after_the_first_step(script, store, server)
                await script.done[1].wait()
                await wait_unhealthy(store)
                backlog = store.statistics().pending_bytes
                assert backlog > 10 * 16 * 1024
                flushes = store.statistics().flushes
                await server.start()
                info = await hub.wait(run.id)
                assert info.status is RunStatus.DONE
                assert store.statistics().flushes - flushes >= backlog // (16 * 1024)
                events = await store.read_events(run.id, 0, 10_000)
                assert [e.seq for e in events] == list(range(1, 1012))
