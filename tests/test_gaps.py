"""Trimmed history: the store fills in, and what nobody has left is an explicit gap."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams import Gap, MemoryStore, RunStatus, open_hub
from trio_streams.testing import Gate, Script, assert_well_formed, collect, events_of, types_of


async def test_a_trimmed_log_is_filled_in_from_the_store(autojump_clock) -> None:
    async with open_hub(log_max_events=3) as hub:
        run = await hub.start(Script().emit_many(20))
        await run.wait()
        assert run.log.first_seq == 19
        items = await collect(hub, run.id)
    assert not [item for item in items if isinstance(item, Gap)]
    assert_well_formed(items)
    assert len(items) == 21


async def test_what_the_store_no_longer_has_is_one_gap(autojump_clock) -> None:
    store = MemoryStore(max_events_per_run=5)
    async with open_hub(store, log_max_events=3) as hub:
        run = await hub.start(Script().emit_many(20))
        async with hub.subscribe(run.id) as subscription:
            first = await subscription.receive_batch(max_items=1)
            await run.wait()
            rest = [item async for item in subscription]
    items = first + rest
    assert_well_formed(items)
    gap = rest[0]
    assert gap == Gap(missed=15, first_available=17)
    assert [e.seq for e in events_of(rest)] == [17, 18, 19, 20, 21]
    assert subscription.gaps == 1


async def test_a_stored_run_with_trimmed_history_reports_its_gap(autojump_clock) -> None:
    store = MemoryStore(max_events_per_run=4)
    async with open_hub(store, grace_period=0) as hub:
        run = await hub.start(Script().emit_many(9))
        await run.wait()
        assert hub.get(run.id) is None
        items = await collect(hub, run.id, after=2)
    assert items[0] == Gap(missed=4, first_available=7)
    assert_well_formed(items, after=2)


async def test_a_byte_bounded_log_gaps_a_slow_reader_without_slowing_the_producer(autojump_clock) -> None:
    store = MemoryStore(max_events_per_run=1)
    async with open_hub(store, log_max_bytes=2_000) as hub:
        run = await hub.start(Script().emit_many(1000, text="x" * 100))
        async with hub.subscribe(run.id) as subscription:
            await subscription.receive_batch(max_items=1)
            await run.wait()
            assert trio.current_time() == 0.0
            rest = [item async for item in subscription]
    assert isinstance(rest[0], Gap)
    assert_well_formed(rest, after=1)
    # The 100 kB result makes the terminal event alone exceed the bound: it is
    # the one event always kept.
    assert [e.type for e in run.log.read_after(0)] == ["done"]


async def test_a_subscriber_arriving_during_finalization_gets_the_end(autojump_clock) -> None:
    gate = Gate()
    async with open_hub() as hub:
        run = await hub.start(Script().emit_many(2).wait(gate).on_cancel(cleanup_time=5.0))
        await gate.reached()
        await hub.cancel(run.id)
        await trio.sleep(2)  # finalizing now
        assert run.status == RunStatus.RUNNING
        items = await collect(hub, run.id)
    assert types_of(items) == ["token", "token", "cancelled"]
    assert trio.current_time() == 5.0


async def test_a_finished_run_is_served_in_full_after_eviction(autojump_clock) -> None:
    async with open_hub(grace_period=1.0, log_max_events=10) as hub:
        run = await hub.start(Script().emit_many(500))
        await run.wait()
        await trio.sleep(2)
        await trio.testing.wait_all_tasks_blocked()
        assert hub.get(run.id) is None
        items = await collect(hub, run.id)
        assert_well_formed(items)
        assert len(items) == 501
        # A stored run is not a subscriber and keeps nothing alive.
        assert hub.statistics().subscribers == 0


@pytest.mark.parametrize("evicted", [False, True], ids=["live-log", "stored-run"])
async def test_a_gap_of_exactly_one_event_is_reported(autojump_clock, evicted: bool) -> None:
    # A log and a store bounded at 9 events, a 10-event run, a reader at 0:
    # event 1 exists nowhere any more, and that is one gap of exactly one.
    store = MemoryStore(max_events_per_run=9)
    async with open_hub(store, log_max_events=9, grace_period=0 if evicted else 60) as hub:
        run = await hub.start(Script().emit_many(9))
        await run.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert (hub.get(run.id) is None) is evicted
        assert run.log.first_seq == 2
        items = await collect(hub, run.id)
    assert items[0] == Gap(missed=1, first_available=2)
    assert [e.seq for e in events_of(items)] == list(range(2, 11))
    assert_well_formed(items)
