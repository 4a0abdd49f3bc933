"""Several hub instances on one Redis: follow, cancel, interrupt, dead owners.

Two hubs in one process stand for two servers (each with its own RedisStore,
so its own connections, instance id and lease); the dead-owner test kills a
real owner process with SIGKILL. Real Redis: no mock clock; trio deadlines.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams import RunConflict, RunStatus, open_hub
from trio_streams.log._events import Event
from trio_streams.log.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_streams import Hub


pytestmark = pytest.mark.redis  # real redis-server processes


@asynccontextmanager
async def two_hubs(url: str, prefix: str, **store_options: Any) -> AsyncIterator[tuple[Hub, Hub]]:
    a = RedisStore(url, prefix=prefix, **store_options)
    b = RedisStore(url, prefix=prefix, **store_options)
    async with open_hub(a, grace_period=0) as hub_a, open_hub(b, grace_period=0) as hub_b:
        yield hub_a, hub_b


class Ticker:
    """Emits a token every ``interval`` until cancelled, keeping a partial result."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.emitted = 0
        self.first = trio.Event()

    async def __call__(self, ctx) -> None:
        while True:
            self.emitted += 1
            ctx.result = {"tokens": self.emitted}
            await ctx.emit("token", {"n": self.emitted, "t": trio.current_time()})
            self.first.set()
            await trio.sleep(self.interval)


async def test_start_on_a_subscribe_on_b_cancel_from_b(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker, owner="alice")
            await ticker.first.wait()
            received: list[Event] = []
            async with b.subscribe(run.id) as sub:
                async for item in sub:
                    assert isinstance(item, Event)
                    received.append(item)
                    if len(received) == 30:
                        assert await b.cancel(run.id) is RunStatus.RUNNING
            assert [e.seq for e in received] == list(range(1, len(received) + 1))
            terminal = received[-1]
            assert terminal.type == "cancelled"
            assert terminal.data["partial"] is True
            assert terminal.data["result"] == {"tokens": terminal.seq - 1}
            on_b = await b.wait(run.id)
            on_a = await a.wait(run.id)
            for info in (on_a, on_b):
                assert info.status is RunStatus.CANCELLED
                assert info.partial is True
                assert info.result == {"tokens": terminal.seq - 1}
                assert info.reason == "cancelled"
                assert info.last_seq == terminal.seq
            # Replay from Redis on B after the fact: the same events.
            async with b.subscribe(run.id, after=10) as sub:
                replayed = [item async for item in sub]
            assert replayed == received[10:]


async def test_canceller_can_wait_for_the_terminal_status(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker)
            await ticker.first.wait()
            await b.cancel(run.id, reason="user_stop")
            info = await b.wait(run.id)
            assert info.status is RunStatus.CANCELLED
            assert info.reason == "user_stop"
            stored = await b.store.get_run(run.id)
            assert stored is not None
            assert stored.status is RunStatus.CANCELLED


async def test_one_tail_reader_per_run_per_instance(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker)
            await ticker.first.wait()
            results: list[list[int]] = []
            subscribed = 0
            all_subscribed = trio.Event()

            async def follow(after: int) -> None:
                nonlocal subscribed
                async with b.subscribe(run.id, after=after) as sub:
                    subscribed += 1
                    if subscribed == 5:
                        all_subscribed.set()
                    seqs = [item.seq async for item in sub if isinstance(item, Event)]
                results.append(seqs)

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(follow, 0)
                await all_subscribed.wait()
                assert b._mirrors is not None, "a shared store: B mirrors A's runs"
                assert len(b._mirrors) == 1
                await b.cancel(run.id)
            assert len(b._mirrors) == 0
            assert len(results) == 5
            assert all(seqs == results[0] for seqs in results)
            assert results[0] == list(range(1, len(results[0]) + 1))


async def test_cancel_intent_survives_a_missed_message(redis_url, prefix):
    """The intent in the meta hash alone (no control message) reaches the owner."""
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix, lease_ttl=0.6) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker)
            await ticker.first.wait()
            store_b = b.store
            assert isinstance(store_b, RedisStore)
            await store_b.client.hset(store_b.keys.meta(run.id), {"cancel": "while_away"})
            info = await b.wait(run.id)
            assert info.status is RunStatus.CANCELLED
            assert info.reason == "while_away"


async def test_interrupt_across_instances_waits_for_the_old_run(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            cleaned = trio.Event()
            running = trio.Event()

            async def old_producer(ctx) -> None:
                running.set()  # its metadata (and key holder) is in Redis by now
                try:
                    while True:
                        ctx.result = "partial"
                        await ctx.emit("token", 1)
                        await trio.sleep(0.005)
                finally:
                    with ctx.cleanup():
                        await trio.sleep(0.2)  # a slow cleanup: the new run must wait for it
                        cleaned.set()

            async def new_producer(ctx) -> str:
                assert cleaned.is_set()
                return "fresh"

            old = await a.start(old_producer, key="conv")
            await running.wait()
            assert isinstance(b.store, RedisStore)
            assert await b.store.key_holder_of(None, "conv") == old.id
            with pytest.raises(RunConflict):
                await b.start(new_producer, key="conv", on_conflict="reject")
            new = await b.start(new_producer, key="conv", on_conflict="interrupt")
            new_info = await b.wait(new.id)
            old_info = await a.wait(old.id)
            assert old_info.status is RunStatus.CANCELLED
            assert old_info.reason == "interrupted"
            assert old_info.result == "partial"
            assert new_info.status is RunStatus.DONE
            assert new_info.result == "fresh"
            assert old_info.ended_at is not None
            assert new_info.started_at is not None
            assert await b.store.key_holder_of(None, "conv") is None


async def test_sigkill_of_the_owner_process_ends_the_run_dead(redis_url, prefix):
    # Long enough that the scheduling slack a loaded 2-core CI machine adds (seen
    # up to ~0.5 s) stays well inside the bound, short enough that waiting for a
    # second lease (a real bug) breaks it.
    lease = 3.0
    with trio.fail_after(30):
        owner = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.redis_owner", redis_url, prefix, str(lease)],
            stdout=subprocess.PIPE,
        )
        try:
            assert owner.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await owner.stdout.receive_some(100)
                assert chunk, "the owner process exited"
                line += chunk
            run_id = line.decode().strip()
            store = RedisStore(redis_url, prefix=prefix, follow_block=0.1)
            async with open_hub(store) as hub:
                received: list[Event] = []
                killed_at = None
                async with hub.subscribe(run_id) as sub:
                    async for item in sub:
                        assert isinstance(item, Event)
                        received.append(item)
                        if len(received) == 20:
                            owner.send_signal(signal.SIGKILL)
                            killed_at = trio.current_time()
                assert killed_at is not None
                elapsed = trio.current_time() - killed_at
                # Key expiry + claim grace = one lease after the last renewal, + one
                # block (0.1 s), + scheduling slack.
                assert elapsed < lease + 1.5, elapsed
                assert [e.seq for e in received] == list(range(1, len(received) + 1))
                dead = received[-1]
                assert dead.type == "dead"
                assert dead.data["error"]["code"] == "owner_lost"
                info = await hub.get_info(run_id)
                assert info.status is RunStatus.DEAD
                assert info.last_seq == dead.seq
                assert await store.read_events(run_id, 0, 100_000) == received
                assert await store.list_runs(status=RunStatus.RUNNING) == []
                assert await store.client.zscore(store.keys.owner_live("owner"), run_id) is None
        finally:
            if owner.returncode is None:
                owner.kill()
            await owner.wait()


async def test_a_stale_owner_is_fenced_once_its_run_is_declared_dead(redis_url, prefix):
    """Claim the run while its owner still runs it: the owner stops, and nothing
    it writes afterwards lands past the ``dead`` event."""
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix, lease_ttl=0.6) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker)
            await ticker.first.wait()
            store_a, store_b = a.store, b.store
            assert isinstance(store_a, RedisStore)
            assert isinstance(store_b, RedisStore)
            await store_a._writer.wait_durable(store_a._writer.ticket())
            # As if the owner had been partitioned away past its lease.
            await store_b.client.delete([store_b.keys.lease(run.id)])
            dead_seq = await store_b.claim_dead(run.id)
            assert dead_seq > 1
            assert await store_b.claim_dead(run.id) == 0  # exactly once
            local = await a.wait(run.id)
            assert local.status is RunStatus.CANCELLED
            assert local.reason == "owner_lost"
            assert store_a.statistics().fenced == 1
            events = await store_b.read_events(run.id, 0, 100_000)
            assert [e.seq for e in events] == list(range(1, dead_seq + 1))
            assert events[-1].type == "dead"
            stored = await store_b.get_run(run.id)
            assert stored is not None
            assert stored.status is RunStatus.DEAD
            assert stored.last_seq == dead_seq


async def test_claim_dead_leaves_a_live_run_whose_lease_exists_alone(redis_url, prefix):
    """The other half of the claim: while the owner's lease exists the run is
    alive, whatever another instance thinks, and nothing is written."""
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            ticker = Ticker()
            run = await a.start(ticker)
            await ticker.first.wait()
            store_a, store_b = a.store, b.store
            assert isinstance(store_a, RedisStore)
            assert isinstance(store_b, RedisStore)
            await store_a._writer.wait_durable(store_a._writer.ticket())
            assert await store_b.client.exists([store_b.keys.lease(run.id)]) == 1
            assert await store_b.claim_dead(run.id) == 0
            assert store_b.statistics().claimed_dead == 0
            stored = await store_b.get_run(run.id)
            assert stored is not None
            assert stored.status is RunStatus.RUNNING
            assert "dead" not in [e.type for e in await store_b.read_events(run.id, 0, 100_000)]
            assert await b.cancel(run.id) is RunStatus.RUNNING
            local = await a.wait(run.id)
            assert (local.status, local.reason) == (RunStatus.CANCELLED, "cancelled")
            assert store_a.statistics().fenced == 0
