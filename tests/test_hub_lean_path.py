"""emit_nowait's lean path (a run whose events go to its log alone): what it
must keep of ``Run._publish`` -- each event charged exactly ``event_cost``, a
refusal that names its event and publishes nothing, the log's bounds and byte
count, the event-type rules on every call -- and the live read path of
``Subscription.receive_batch`` beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from trio_streams import Event, Gap, MemoryStore, ReplayLog, RunStatus, open_hub
from trio_streams.log._budget import MemoryBudgetExceeded
from trio_streams.log._sizes import event_cost
from trio_streams.testing import collect, events_of

if TYPE_CHECKING:
    from trio_streams import RunContext

MiB = 1024 * 1024

#: Flat values of each kind (and non-ASCII text, whose str is wider), and containers.
VALUES: list[Any] = [
    5,
    10**40,
    1.5,
    None,
    True,
    "tok",
    "ü€",
    "😀" * 50,
    "x" * 5000,
    {"text": "a"},
    [1, "b", None],
]


async def test_each_event_is_charged_exactly_its_event_cost(autojump_clock: Any) -> None:
    charged: list[tuple[int, int, int]] = []

    async def produce(ctx: RunContext) -> None:
        ledger = hub.budget.ledger(ctx.run_id)
        for value in VALUES:
            before, used = ledger.nbytes, hub.budget.used
            event = ctx.emit_nowait("token", value)
            charged.append((ledger.nbytes - before, hub.budget.used - used, event_cost(event)))
        await trio.lowlevel.checkpoint()

    async with open_hub(MemoryStore()) as hub:
        run = await hub.start(produce)
        assert (await run.wait()).status is RunStatus.DONE
        assert [cost for cost, _, _ in charged] == [cost for _, _, cost in charged]
        assert [used for _, used, _ in charged] == [cost for _, _, cost in charged]
        events = run.log.read_after(0)
        assert [e.data for e in events[:-1]] == VALUES
        # The log's byte count is the sum of what it retains.
        assert run.log.nbytes == sum(e.size for e in events)


async def test_a_refused_event_names_itself_and_nothing_is_published(autojump_clock: Any) -> None:
    refusals: list[tuple[str, int, int, int]] = []

    async def produce(ctx: RunContext) -> None:
        ledger = hub.budget.ledger(ctx.run_id)
        for _ in range(1000):
            seq, nbytes = ctx.last_seq, ledger.nbytes
            try:
                ctx.emit_nowait("token", "y" * 60_000)
            except MemoryBudgetExceeded as exc:
                refusals.append((str(exc), ctx.last_seq - seq, ledger.nbytes - nbytes, len(ctx.history())))
                break
        # A smaller event still fits and is published after it.
        ctx.emit_nowait("token", "small")
        await trio.lowlevel.checkpoint()

    async with open_hub(MemoryStore(), max_memory=4 * MiB, max_event_bytes=256 * 1024) as hub:
        run = await hub.start(produce)
        assert (await run.wait()).status is RunStatus.DONE
        [(message, published, counted, held)] = refusals
        assert f"an event of run {run.id}" in message
        assert (published, counted) == (0, 0)
        events = events_of(await collect(hub, run.id))
        assert held == len(events) - 2, "the refused one is not in the log"
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-2].data == "small"
        assert hub.budget.used <= hub.budget.limit + event_cost(events[-1])


async def test_every_call_checks_the_event_type(autojump_clock: Any) -> None:
    class Sly(str):
        pass

    errors: list[str] = []

    async def produce(ctx: RunContext) -> None:
        ctx.emit_nowait("token", 1)
        for bad in ("bad\ntype", "bad\ntype", "done", "", Sly("gap")):
            try:
                ctx.emit_nowait(bad, 1)
            except ValueError as exc:
                errors.append(str(exc))
        ctx.emit_nowait("token", 2)
        await trio.lowlevel.checkpoint()

    async with open_hub(MemoryStore()) as hub:
        run = await hub.start(produce)
        assert (await run.wait()).status is RunStatus.DONE
        assert len(errors) == 5, errors
        assert [(e.type, e.data) for e in events_of(await collect(hub, run.id))][:2] == [
            ("token", 1),
            ("token", 2),
        ]


async def test_the_log_keeps_its_bounds_and_a_late_reader_gets_every_event(autojump_clock: Any) -> None:
    async def produce(ctx: RunContext) -> None:
        for i in range(200):
            ctx.emit_nowait("token", {"i": i, "text": "z" * (i % 7) * 40})
            if i % 16 == 15:
                await trio.lowlevel.checkpoint()
                log = ctx._run.log
                assert (len(log) <= 10 and log.nbytes <= 2000) or len(log) == 1
                assert log.nbytes == sum(e.size for e in log.read_after(0))

    async with open_hub(MemoryStore(), log_max_events=10, log_max_bytes=2000) as hub:
        run = await hub.start(produce)
        async with hub.subscribe(run.id) as live:
            seen: list[int] = []
            while True:
                try:
                    batch = await live.receive_batch(max_items=7)
                except trio.EndOfChannel:
                    break
                seen.extend(item.seq for item in batch if isinstance(item, Event))
        assert seen == list(range(1, 202))
        # Read from the start, behind the trimmed head: the store's record has them.
        assert [e.seq for e in events_of(await collect(hub, run.id))] == list(range(1, 202))


async def test_a_reader_behind_a_store_that_dropped_events_gets_a_gap(autojump_clock: Any) -> None:
    release = trio.Event()

    async def produce(ctx: RunContext) -> None:
        for i in range(50):
            ctx.emit_nowait("token", i)
        await release.wait()

    store = MemoryStore(max_events_per_run=20)
    async with open_hub(store, log_max_events=10) as hub:
        run = await hub.start(produce)
        async with hub.subscribe(run.id) as late:
            await trio.testing.wait_all_tasks_blocked()
            batch = await late.receive_batch()
            release.set()
            assert isinstance(batch[0], Gap), batch[:2]
            rest = [item for item in await collect(hub, run.id, after=late.cursor)]
        assert isinstance(batch[0], Gap)
        assert [e.seq for e in events_of(batch)] + [e.seq for e in events_of(rest)] == list(
            range(batch[0].first_available, 52)
        )


@pytest.mark.parametrize("burst", [1, 64])
async def test_a_live_reader_gets_each_event_once_in_order(autojump_clock: Any, burst: int) -> None:
    release = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await release.wait()
        for i in range(300):
            ctx.emit_nowait("token", i)
            if (i + 1) % burst == 0:
                await trio.lowlevel.checkpoint()

    async with open_hub(MemoryStore()) as hub:
        run = await hub.start(produce)
        seen: list[int] = []
        async with hub.subscribe(run.id) as live:
            release.set()
            while True:
                try:
                    batch = await live.receive_batch()
                except trio.EndOfChannel:
                    break
                seen.extend(item.seq for item in batch if isinstance(item, Event))
        assert seen == list(range(1, 302))


async def test_a_parked_reader_is_woken_by_each_publish(autojump_clock: Any) -> None:
    got = trio.Event()
    received: list[int] = []

    async def produce(ctx: RunContext) -> None:
        for i in range(3):
            ctx.emit_nowait("token", i)
            with trio.fail_after(10):  # the reader answers only if it was woken
                await got.wait()

    async with open_hub(MemoryStore()) as hub:
        run = await hub.start(produce)
        async with hub.subscribe(run.id) as live:
            while True:
                try:
                    batch = await live.receive_batch()
                except trio.EndOfChannel:
                    break
                received.extend(item.seq for item in batch if isinstance(item, Event))
                got.set()
                got = trio.Event()
        assert (await run.wait()).status is RunStatus.DONE
        assert received == [1, 2, 3, 4]


def test_a_replay_log_extended_counts_what_appends_count() -> None:
    events = [Event.create(seq, "token" * (seq % 3 + 1), "é" * seq, 0.0) for seq in range(1, 40)]
    one_by_one = ReplayLog(max_events=25, max_bytes=1500)
    for event in events:
        one_by_one.append(event)
    extended = ReplayLog(max_events=25, max_bytes=1500)
    extended.extend(events[:5])
    extended.extend(events[5:])
    assert extended.read_after(0) == one_by_one.read_after(0)
    assert extended.nbytes == one_by_one.nbytes == sum(e.size for e in extended.read_after(0))
