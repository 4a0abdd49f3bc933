"""One append per event: the ``MemoryStore`` records a live run from its log.

The hub hands the store each run's log (``Store.record_from_log``); the
store copies what is new from it in one slice when it needs to (a read, the
terminal event, the log about to trim an event it has not copied), so the
hot path appends each event once. These tests pin that the store's record is
exactly what per-event appends gave, and that the hot path really skips it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from trio_streams import MemoryStore, RunContext, open_hub
from trio_streams.log._events import Event
from trio_streams.log._replay_log import ReplayLog
from trio_streams.log._tail import Tail
from trio_streams.testing import Script


def _sized(seq: int, size: int) -> Event:
    return Event.create(seq, "token", "x" * size, 0.0)


async def test_the_hot_path_hands_the_store_only_the_terminal_event(autojump_clock: Any) -> None:
    store = MemoryStore()
    handed: list[int] = []
    append = store.append_nowait

    def spy(run_id: str, event: Event) -> None:
        handed.append(event.seq)
        append(run_id, event)

    store.append_nowait = spy  # type: ignore[method-assign]
    async with open_hub(store) as hub:
        run = await hub.start(Script().emit_many(50))
        await run.wait()
        stored = await store.read_events(run.id, 0, 100)
    assert handed == [51], "only the terminal event, staged before it is in the log"
    assert [event.seq for event in stored] == list(range(1, 52))
    assert [event for event in stored] == run.log.read_after(0)


@pytest.mark.parametrize(("log_events", "store_events"), [(3, 100), (3, 5), (8, 3), (1, 1)])
async def test_a_live_runs_record_is_what_per_event_appends_gave(
    autojump_clock: Any, log_events: int, store_events: int
) -> None:
    # The store read in the middle of a live run whose log has trimmed: the
    # record has every event the log let go, within the store's own bound.
    store = MemoryStore(max_events_per_run=store_events)
    seen: list[list[int]] = []

    async def produce(ctx: RunContext) -> None:
        for i in range(1, 21):
            ctx.emit_nowait("token", i)
            if i % 7 == 0:
                seen.append([event.seq for event in await store.read_events(ctx.run_id, 0, 1000)])

    async with open_hub(store, log_max_events=log_events) as hub:
        run = await hub.start(produce)
        await run.wait()
        final = [event.seq for event in await store.read_events(run.id, 0, 1000)]
    expected = [list(range(max(1, n - store_events + 1), n + 1)) for n in (7, 14)]
    assert seen == expected
    assert final == list(range(max(1, 21 - store_events + 1), 22))
    assert store.statistics().events == len(final)


async def test_a_log_never_trims_what_the_record_has_not_copied(autojump_clock: Any) -> None:
    # No read in between: only the log's own call before it trims saves the
    # events it lets go.
    store = MemoryStore()
    async with open_hub(store, log_max_events=3, grace_period=0) as hub:
        run = await hub.start(Script().emit_many(40))
        await run.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert hub.get(run.id) is None, "evicted: only the store has it now"
        stored = await store.read_events(run.id, 0, 1000)
    assert [event.seq for event in stored] == list(range(1, 42))


def test_a_subclass_that_takes_appends_itself_is_handed_every_event() -> None:
    class Counting(MemoryStore):
        def append_nowait(self, run_id: str, event: Event) -> None:
            super().append_nowait(run_id, event)

    assert not Counting().record_from_log("r", ReplayLog())
    assert MemoryStore().record_from_log("r", ReplayLog())
    log = ReplayLog()
    log.append(_sized(1, 1))
    assert not MemoryStore().record_from_log("r", log), "a log with history: events would be missing"


@pytest.mark.parametrize("seed", range(40))
def test_extend_leaves_what_appending_one_by_one_leaves(seed: int) -> None:
    rng = random.Random(seed)
    max_entries, max_bytes = rng.randint(1, 12), rng.randint(100, 1500)
    one, batch = (
        Tail[Event](max_entries=max_entries, max_bytes=max_bytes),
        Tail[Event](max_entries=max_entries, max_bytes=max_bytes),
    )
    held = rng.random() < 0.5
    if held:
        one.hold()
        batch.hold()
    seq = 0
    for _ in range(rng.randint(1, 6)):
        chunk = [_sized(seq + n + 1, rng.randint(0, 300)) for n in range(rng.randint(0, 15))]
        seq += len(chunk)
        for event in chunk:
            one.append(event)
        batch.extend(chunk)
        if held and rng.random() < 0.5 and seq:
            mark = rng.randint(0, seq)
            one.mark_durable(mark)
            batch.mark_durable(mark)
        state = [(t.read_after(0), t.nbytes, t.pending_nbytes, t.first_seq, t.trimmed) for t in (one, batch)]
        assert state[0] == state[1]


def test_extend_refuses_entries_that_do_not_continue_the_tail() -> None:
    tail = Tail[Event]()
    tail.extend([_sized(1, 1), _sized(2, 1)])
    with pytest.raises(ValueError, match="expected seqs 3"):
        tail.extend([_sized(4, 1)])
    with pytest.raises(ValueError, match="expected seqs 3"):
        tail.extend([_sized(3, 1), _sized(5, 1)])
    assert tail.last_seq == 2
    assert len(tail) == 2
