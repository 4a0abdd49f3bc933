"""Trimmed history: the store fills in, and what nobody has left is an explicit gap."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_streams import Event, Gap, MemoryStore, ReplayLog, RunStatus, open_hub
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._pending import Pending
from trio_streams.testing import Gate, Script, assert_well_formed, collect, events_of, types_of

from .burst_support import Burst, throttling_proxy

if TYPE_CHECKING:
    from trio_streams import Run, RunInfo


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
        if evicted:
            assert len(run.log) == 0, "evicted: the hub gave its copy's memory back"
        else:
            assert run.log.first_seq == 2
        assert (await store.read_events(run.id, 0, 100))[0].seq == 2
        items = await collect(hub, run.id)
    assert items[0] == Gap(missed=1, first_available=2)
    assert [e.seq for e in events_of(items)] == list(range(2, 11))
    assert_well_formed(items)


# -- the log never trims what the store cannot serve yet ------------------------------


def ev(seq: int, data: str = "x") -> Event:
    return Event.create(seq, "token", data, 0.0)


def test_a_held_log_keeps_what_the_store_has_not_made_durable() -> None:
    log = ReplayLog(max_events=3)
    log.hold()
    for seq in range(1, 11):
        log.append(ev(seq))
    assert (len(log), log.first_seq, log.trimmed) == (10, 1, 0)
    assert log.pending_nbytes == log.nbytes == sum(ev(seq).size for seq in range(1, 11))
    # A flush lands: the log trims up to the mark, at once, with no append.
    log.mark_durable(4)
    assert (len(log), log.first_seq, log.durable_seq) == (6, 5, 4)
    assert log.pending_nbytes == log.nbytes
    log.mark_durable(10)
    assert (len(log), log.first_seq, log.pending_nbytes) == (3, 8, 0)
    # Durable events trim to the bounds as before.
    log.append(ev(11))
    assert (len(log), log.first_seq, log.pending_nbytes) == (3, 9, ev(11).size)


def test_a_mark_past_the_log_and_backwards() -> None:
    log = ReplayLog(max_events=2)
    log.hold()
    for seq in range(1, 6):
        log.append(ev(seq))
    # The terminal event is made durable before it is revealed.
    log.mark_durable(6)
    assert (log.durable_seq, log.first_seq, log.pending_nbytes) == (6, 4, 0)
    log.mark_durable(3)  # a mark never moves back
    assert log.durable_seq == 6
    log.append(Event.create(6, "done", None, 0.0))
    assert (log.first_seq, log.pending_nbytes) == (5, 0)


def test_a_released_log_trims_to_its_bounds_alone() -> None:
    log = ReplayLog(max_events=2)
    log.hold()
    fill = [ev(seq) for seq in range(1, 6)]
    for event in fill:
        log.append(event)
    log.release()
    assert (len(log), log.first_seq, log.pending_nbytes, log.durable_seq) == (2, 4, 0, 5)
    # Nobody holds it: marks do nothing, everything is durable.
    log.mark_durable(99)
    assert log.durable_seq == 5


def test_a_log_nobody_holds_ignores_marks() -> None:
    log = ReplayLog(max_events=2)
    for seq in range(1, 6):
        log.append(ev(seq))
    log.mark_durable(2)
    assert (len(log), log.first_seq, log.durable_seq, log.pending_nbytes) == (2, 4, 5, 0)


@given(
    st.lists(st.one_of(st.just("append"), st.integers(min_value=0, max_value=40)), max_size=120),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=400),
)
def test_a_held_log_trims_only_durable_events(ops: list[str | int], max_events: int, max_bytes: int) -> None:
    log = ReplayLog(max_events=max_events, max_bytes=max_bytes)
    log.hold()
    durable = 0
    for op in ops:
        first_before = log.first_seq
        if op == "append":
            log.append(ev(log.last_seq + 1, "y" * (log.last_seq % 7)))
        else:
            assert isinstance(op, int)
            log.mark_durable(op)
            durable = max(durable, op)
        # Every trimmed event was durable; the log is contiguous up to last_seq.
        assert log.first_seq - 1 <= max(durable, first_before - 1)
        retained = log.read_after(0)
        assert [e.seq for e in retained] == list(range(log.first_seq, log.last_seq + 1))
        assert log.nbytes == sum(e.size for e in retained)
        assert log.pending_nbytes == sum(e.size for e in retained if e.seq > durable)
        # Over the bounds only for events not yet durable (and the newest).
        over = len(retained) > max_events or log.nbytes > max_bytes
        assert not over or len(retained) == 1 or retained[0].seq > durable


class WriteBehindStore(MemoryStore):
    """A store that writes behind, like ``RedisStore``'s writer, without Redis:
    an event becomes readable (``read_events``) only when the test calls
    :meth:`flush` (or the run ends), and the held log learns it then."""

    def __init__(self, **options: int) -> None:
        super().__init__(**options)
        self.queued: list[tuple[str, Event]] = []
        self._held: dict[str, ReplayLog] = {}

    def hold_log(self, run_id: str, log: ReplayLog) -> None:
        log.hold()
        self._held[run_id] = log

    def append_nowait(self, run_id: str, event: Event) -> None:
        self.queued.append((run_id, event))

    def flush(self) -> None:
        queued, self.queued = self.queued, []
        for run_id, event in queued:
            super().append_nowait(run_id, event)
        for run_id, event in queued:
            log = self._held.get(run_id)
            if log is not None:
                log.mark_durable(event.seq)

    async def finish_run(self, info: RunInfo) -> None:
        self.flush()
        await super().finish_run(info)


async def test_subscribers_behind_a_burst_get_it_all_before_the_store_has_it(autojump_clock) -> None:
    store = WriteBehindStore()
    burst = Burst()

    async def during(run: Run) -> None:
        await burst.caught_up.wait()
        # 97 pauses of 1 ms between the 98 batches of 256 events: all of it
        # came from the log, which kept what the store does not have yet.
        assert trio.current_time() == pytest.approx(0.097)
        assert (len(run.log), run.log.first_seq) == (25_000, 1)
        assert run.log.pending_nbytes == run.log.nbytes == sum(e.size for _, e in store.queued)
        store.flush()
        # The flush landed: the log trims back to its bounds at once.
        assert (len(run.log), run.log.first_seq, run.log.pending_nbytes) == (10_000, 15_001, 0)

    async with open_hub(store) as hub:
        run = await burst.run(hub, during=during)
        # A subscriber arriving now reads 1..15,000 from the store, the rest from the log.
        late = await collect(hub, run.id)
    assert burst.missed == [0, 0, 0]
    assert burst.complete
    assert not [item for item in late if isinstance(item, Gap)]
    assert_well_formed(late)
    assert len(late) == 25_001


async def test_a_store_flushing_as_readers_fall_behind_loses_none_of_the_burst(autojump_clock) -> None:
    store = WriteBehindStore()
    burst = Burst()

    async def during(run: Run) -> None:
        # The store flushes every 5 ms while the readers work through the burst.
        while not burst.caught_up.is_set():
            await trio.sleep(0.005)
            store.flush()

    async with open_hub(store) as hub:
        await burst.run(hub, during=during)
    assert burst.missed == [0, 0, 0]
    assert burst.complete


async def test_with_the_memory_store_the_burst_reaches_every_subscriber(autojump_clock) -> None:
    burst = Burst()
    async with open_hub(MemoryStore()) as hub:
        await burst.run(hub)
    assert burst.missed == [0, 0, 0]
    assert burst.complete


async def test_a_write_behind_store_still_reports_what_it_no_longer_has(autojump_clock) -> None:
    store = WriteBehindStore(max_events_per_run=5)
    async with open_hub(store, log_max_events=3) as hub:
        run = await hub.start(Script().emit_many(20))
        async with hub.subscribe(run.id) as subscription:
            first = await subscription.receive_batch(max_items=1)
            await run.wait()  # finish_run flushed: the log trimmed, the store kept 5
            rest = [item async for item in subscription]
    assert [e.seq for e in events_of(first)] == [1]
    assert rest[0] == Gap(missed=15, first_available=17)
    assert [e.seq for e in events_of(rest)] == [17, 18, 19, 20, 21]


# -- on a real Redis: direct, slowed down, and through another instance ----------------


async def test_a_burst_past_the_log_reaches_every_subscriber_through_redis(redis_url, prefix) -> None:
    burst = Burst()
    with trio.fail_after(120):
        async with open_hub(RedisStore(redis_url, prefix=prefix)) as hub:
            run = await burst.run(hub)
            assert (len(run.log), run.log.pending_nbytes) == (10_000, 0)
    assert burst.missed == [0, 0, 0]
    assert burst.complete


async def test_a_burst_reaches_every_subscriber_through_a_slow_redis(redis_server, prefix) -> None:
    burst = Burst()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            # About 2 MB/s and 2 ms per chunk each way: flushing the burst takes a while.
            port = await throttling_proxy(nursery, redis_server.port, bytes_per_second=2e6, delay=0.002)
            store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix=prefix)
            async with open_hub(store) as hub:
                run = await burst.run(hub)
                events = await store.read_events(run.id, 0, 30_000)
            nursery.cancel_scope.cancel()
    assert burst.missed == [0, 0, 0]
    assert burst.complete
    assert [e.seq for e in events] == list(range(1, 25_002))
    assert store.statistics().flushes > 1


async def test_a_mirror_trims_only_what_it_read_from_redis(redis_url, prefix) -> None:
    """Readers on another instance follow through a mirror, whose log holds
    events read back from Redis -- durable, so trimming them loses nothing."""
    burst = Burst()
    with trio.fail_after(120):
        async with (
            open_hub(RedisStore(redis_url, prefix=prefix)) as owner,
            open_hub(RedisStore(redis_url, prefix=prefix)) as other,
        ):
            run = await burst.run(owner, readers_hub=other)
            assert other.get(run.id) is None  # followed through a mirror, not owned
    assert burst.missed == [0, 0, 0]
    assert burst.complete


def test_the_writer_holds_logs_weakly_and_forgets_them_at_the_end() -> None:
    pending = Pending(max_bytes=1 << 20)
    kept, dropped = ReplayLog(max_events=1), ReplayLog(max_events=1)
    pending.hold("kept", kept)
    pending.hold("dropped", dropped)
    for seq in (1, 2):
        for run_id, log in (("kept", kept), ("dropped", dropped)):
            event = ev(seq)
            assert pending.admit_event(run_id, event, healthy=True)
            log.append(event)
    assert len(kept) == len(dropped) == 2  # nothing durable yet
    del dropped, log  # an evicted run's log: pending writes do not keep it alive
    gc.collect()
    pending.settle(
        events=4, meta=0, nbytes=4 * ev(1).size, durable={"kept": 2, "dropped": 2}, finals=["kept"]
    )
    assert (len(kept), kept.durable_seq, pending.nbytes) == (1, 2, 0)
    assert pending._logs == {}
