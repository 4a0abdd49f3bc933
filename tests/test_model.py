"""Random start/subscribe/cancel/release/advance-clock programs against a simple model.

Hypothesis generates a program of operations; each runs in a fresh trio run
on ``MockClock(autojump_threshold=0)`` and, at the end, the invariants are
checked against what the model expects:

- every subscriber's stream is in seq order, each event exactly once, with
  exactly one terminal event, last (gaps only where history was trimmed and
  then accounted for exactly);
- what a subscriber saw is exactly what the run published;
- a run's events are its producer's tokens in order, then its terminal,
  whose type is the run's final status; a cancel request before the end
  yields ``cancelled``;
- runs with the same key never run at the same time;
- logs never exceed their bounds; at the end nothing is running, queued or
  subscribed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_streams import Event, Gap, MemoryStore, Run, RunConflict, RunStatus, open_hub
from trio_streams.testing import Gate, Script, assert_well_formed, virtual_deadline


@dataclass(frozen=True)
class Start:
    key: int | None
    policy: str
    tokens: int
    every: float
    blocks: bool


@dataclass(frozen=True)
class Subscribe:
    run: int
    after: int
    leave_after: float | None


@dataclass(frozen=True)
class Cancel:
    run: int


@dataclass(frozen=True)
class Release:
    run: int


@dataclass(frozen=True)
class Advance:
    seconds: float


operations = st.one_of(
    st.builds(
        Start,
        key=st.one_of(st.none(), st.integers(0, 2)),
        policy=st.sampled_from(["reject", "interrupt", "enqueue"]),
        tokens=st.integers(0, 6),
        every=st.sampled_from([0.0, 0.5, 1.0]),
        blocks=st.booleans(),
    ),
    st.builds(
        Subscribe,
        run=st.integers(0, 20),
        after=st.integers(0, 8),
        leave_after=st.one_of(st.none(), st.sampled_from([0.5, 2.0])),
    ),
    st.builds(Cancel, run=st.integers(0, 20)),
    st.builds(Release, run=st.integers(0, 20)),
    st.builds(Advance, seconds=st.sampled_from([0.0, 0.25, 1.0, 3.0])),
)


@dataclass(eq=False)
class Reader:
    after: int
    items: list[Any] = field(default_factory=list)
    complete: bool = False


@dataclass
class Started:
    run: Run
    script: Script
    gate: Gate
    tokens: int
    cancel_requested_at: float | None = None
    readers: list[Reader] = field(default_factory=list)


async def play(program: list[Any], log_max_events: int, store_max_events: int) -> None:
    # Its own trio.run, so not covered by conftest's deadline: a lost wake-up
    # must fail the example, not hang it.
    async with virtual_deadline():
        await _play(program, log_max_events, store_max_events)


async def _play(program: list[Any], log_max_events: int, store_max_events: int) -> None:
    store = MemoryStore(max_events_per_run=store_max_events)
    started: list[Started] = []
    max_log = 0
    async with (
        open_hub(store, log_max_events=log_max_events, grace_period=5.0, wall_clock=trio.current_time) as hub,
        trio.open_nursery() as readers,
    ):

        async def read(target: Started, after: int, leave_after: float | None) -> None:
            reader = Reader(after)
            target.readers.append(reader)
            with trio.move_on_after(leave_after if leave_after is not None else float("inf")):
                async with hub.subscribe(target.run.id, after=after) as subscription:
                    async for item in subscription:
                        reader.items.append(item)
                reader.complete = True

        for op in program:
            if isinstance(op, Start):
                gate = Gate()
                script = Script().emit_many(op.tokens, every=op.every)
                if op.blocks:
                    script.wait(gate)
                key = None if op.key is None else f"k{op.key}"
                try:
                    run = await hub.start(script, key=key, on_conflict=op.policy)  # type: ignore[arg-type]
                except RunConflict as conflict:
                    assert op.policy == "reject"
                    holder = hub.get(conflict.live_run_id)
                    assert holder is not None
                    assert not holder.status.finished
                    continue
                started.append(Started(run, script, gate, op.tokens))
            elif isinstance(op, Subscribe) and started:
                target = started[op.run % len(started)]
                after = min(op.after, target.run.last_seq)
                readers.start_soon(read, target, after, op.leave_after)
            elif isinstance(op, Cancel) and started:
                target = started[op.run % len(started)]
                if not target.run.status.finished and target.cancel_requested_at is None:
                    target.cancel_requested_at = trio.current_time()
                await hub.cancel(target.run.id)
            elif isinstance(op, Release) and started:
                started[op.run % len(started)].gate.release()
            elif isinstance(op, Advance):
                await trio.sleep(op.seconds)
            await trio.testing.wait_all_tasks_blocked()
            max_log = max([max_log, *(len(s.run.log) for s in started)])
        for entry in started:
            entry.gate.release()
        for entry in started:
            await entry.run.wait()
        await trio.testing.wait_all_tasks_blocked()
        stats = hub.statistics()
        assert (stats.runs_running, stats.runs_queued, stats.subscribers) == (0, 0, 0)
        published = {entry.run.id: await collect_all(store, entry.run.id) for entry in started}

    assert max_log <= log_max_events
    check_runs(started, published, store_max_events)


async def collect_all(store: MemoryStore, run_id: str) -> list[Event]:
    return await store.read_events(run_id, 0, 10_000)


def check_prefix(items: list[Any], after: int) -> None:
    """Seqs strictly contiguous from ``after`` (gaps accounted for)."""
    cursor = after
    for item in items:
        if isinstance(item, Gap):
            assert item.first_available == cursor + item.missed + 1
            cursor = item.first_available - 1
        else:
            assert item.seq == cursor + 1
            cursor = item.seq


def check_runs(started: list[Started], published: dict[str, list[Event]], store_max_events: int) -> None:
    by_key: dict[str, list[Started]] = {}
    for entry in started:
        run = entry.run
        events = published[run.id]
        terminal = events[-1]
        assert terminal.terminal
        assert terminal.type == run.status.value
        assert terminal.seq == run.last_seq
        assert sum(e.terminal for e in events) == 1
        tokens = [e.data for e in events[:-1]]
        if run.last_seq <= store_max_events:
            expected = [f"t{i}" for i in range(len(tokens))]
            assert tokens == expected, (tokens, expected)
            assert len(tokens) <= entry.tokens
        if entry.cancel_requested_at is not None:
            assert run.status in (RunStatus.CANCELLED, RunStatus.DONE)
        if run.status == RunStatus.DONE:
            assert run.last_seq == entry.tokens + 1
        for reader in entry.readers:
            after, items = reader.after, reader.items
            if reader.complete and after == run.last_seq:
                assert items == []  # resumed at the terminal: nothing left to see
                continue
            if reader.complete:
                assert_well_formed(items, after=after)
            else:
                # Left early: a well-formed prefix, with no terminal.
                assert not any(isinstance(i, Event) and i.terminal for i in items)
                check_prefix(items, after)
                continue
            seen = {item.seq: item for item in items if isinstance(item, Event)}
            by_seq = {event.seq: event for event in events}
            for seq, event in seen.items():
                if seq in by_seq:
                    assert by_seq[seq] is event or by_seq[seq] == event
            gaps = [item for item in items if isinstance(item, Gap)]
            if not gaps:
                assert sorted(seen) == list(range(after + 1, run.last_seq + 1))
        if run.key is not None:
            by_key.setdefault(run.key, []).append(entry)
    for entries in by_key.values():
        intervals = sorted(
            (e.run.started_at, e.run.ended_at) for e in entries if e.run.started_at is not None
        )
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end is not None
            assert start is not None
            assert start >= end, f"two runs of one key overlapped: {intervals}"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=st.lists(operations, max_size=30),
    log_max_events=st.sampled_from([2, 5, 100]),
    store_max_events=st.sampled_from([3, 1000]),
)
def test_random_programs_keep_the_invariants(
    program: list[Any], log_max_events: int, store_max_events: int
) -> None:
    trio.run(
        play, program, log_max_events, store_max_events, clock=trio.testing.MockClock(autojump_threshold=0)
    )
