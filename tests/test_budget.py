"""The memory budget: what an event costs, counting it once, giving memory back, refusing.

Accounting is synchronous (no trio); the hub's behaviour runs on the mock
clock with exact assertions on what the budget counts.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_streams import AtCapacity, Event, Gap, MemoryStore, ReplayLog, RunNotFound, RunStatus, open_hub
from trio_streams.durable import (
    AppendRequest,
    CreateRequest,
    DurableStreamError,
    DurableStreamStore,
    ForkSpec,
    Offset,
)
from trio_streams.log._budget import EventTooLarge, MemoryBudget, MemoryBudgetExceeded
from trio_streams.log._replay_log import _TRIMMED
from trio_streams.log._sizes import (
    CHUNK_OVERHEAD,
    MESSAGE_OVERHEAD,
    RECORD_OVERHEAD,
    RUN_OVERHEAD,
    STREAM_OVERHEAD,
    data_size,
    event_cost,
)
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._server import RedisServer
from trio_streams.runs._retention import reclaim_oldest
from trio_streams.testing import Gate, assert_well_formed, collect, events_of

from .redis_support import eventually, unique_prefix

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_streams import Hub, RunContext

KiB = 1024
MiB = 1024 * 1024
TEXT = "text/plain"
JSON = "application/json"


def ev(seq: int, text: str = "x") -> Event:
    return Event.create(seq, "token", {"i": seq, "text": text}, 0.0)


# -- what an event costs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("64 KiB token", lambda i: {"i": i, "text": ("lorem " * 11_000)[:65_536], "ts": time.time()}),
        ("small token", lambda i: {"i": i, "text": f"tok{i}", "ts": time.time()}),
        ("text", lambda i: f"hello {i}"),
        ("ints", lambda i: list(range(i, i + 1000))),
        ("floats", lambda i: [i + 0.5 * k for k in range(500)]),
        ("nested", lambda i: {"rows": [{"id": i + k, "tags": ["a", str(k)]} for k in range(20)]}),
    ],
)
def test_event_cost_tracks_what_python_holds(name: str, make: Callable[[int], Any]) -> None:
    # Held the way the hub holds them: a run's log and a MemoryStore record,
    # plus the budget's own cost entry per event.
    count = 300
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        logs = [ReplayLog(max_events=10**6, max_bytes=10**12) for _ in range(2)]
        costs: list[int] = []
        for seq in range(1, count + 1):
            event = Event.create(seq, "token", make(seq), time.time())
            for log in logs:
                log.append(event)
            costs.append(event_cost(event) + 10**6)  # a cost entry, not a cached small int
        measured = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    counted = sum(costs) / count - 10**6
    assert 0.85 <= counted / measured <= 1.6, (name, counted, measured)


def test_event_size_used_to_count_half_of_a_big_event() -> None:
    # What the log bounds use (Event.size) is the JSON alone; the budget counts
    # the data objects as well: about twice as much for a text token.
    event = ev(1, "y" * 65_536)
    assert event_cost(event) > 2 * 65_536 > event.size


def test_data_size_walks_nested_values_and_counts_dict_subclasses() -> None:
    class Tagged(dict[str, Any]):
        pass

    flat = {"a": "x" * 1000}
    assert data_size([Tagged(flat)]) > data_size(flat), "the subclass's contents count too"
    deep: Any = "leaf"
    for _ in range(5000):  # deeper than the recursion limit: walked with a stack
        deep = [deep]
    assert data_size(deep) > 5000 * 56


# -- the ledger: each event once, released by its last holder ------------------------


def test_an_event_held_twice_is_counted_once_and_released_by_the_last_holder() -> None:
    budget = MemoryBudget(4 * MiB)
    ledger = budget.ledger("r")
    ledger.hold("log", overhead=100)
    ledger.hold("store", overhead=50)
    log = ReplayLog(max_events=2, ledger=ledger, holder="log")
    record = ReplayLog(max_events=4, ledger=ledger, holder="store")
    events = [ev(seq, "z" * 1000) for seq in range(1, 6)]
    for event in events:
        assert ledger.charge(event.seq, event_cost(event)) is True
        assert ledger.charge(event.seq, event_cost(event)) is False  # the second holder's append
        record.append(event)
        log.append(event)
    cost = [event_cost(event) for event in events]
    # The log keeps 4 and 5, the record 2..5: the union is 2..5.
    assert (log.first_seq, record.first_seq) == (4, 2)
    assert budget.used == 150 + sum(cost[1:])
    log.discard()
    assert budget.used == 50 + sum(cost[1:]), "the record still holds them"
    record.shrink()
    assert budget.used == 50 + cost[4]
    record.discard()
    assert budget.used == 0
    assert budget.statistics().runs == 0


def test_charge_counts_refuses_and_tracks_reclaimable_bytes_exactly() -> None:
    """``RunLedger.charge``, once per published event: the exact figures after
    every kind of step (the next seq, one counted already, a refusal, a forced
    charge past the limit, a finished run's event, a skipped seq). A per-batch
    or fast-path charge must keep every one of them (benchmarks/RESULTS.md,
    "round 2")."""
    budget = MemoryBudget(10_000)
    ledger = budget.ledger("r")
    ledger.hold("log")
    assert ledger.charge(1, 1000) is True  # the first: general path (no costs yet)
    assert ledger.charge(2, 1000) is True  # fast path
    assert ledger.charge(2, 1000) is False  # counted already
    assert (budget.used, ledger.nbytes, ledger.next_seq) == (2000, 2000, 3)
    with pytest.raises(MemoryBudgetExceeded):
        ledger.charge(3, 9000)  # does not fit: refused on the fast path, nothing counted
    assert (budget.used, ledger.nbytes, ledger.next_seq, budget.refused) == (2000, 2000, 3, 1)
    assert ledger.charge(3, 9000, force=True) is True  # a terminal event: counted past the limit
    assert (budget.used, ledger.nbytes) == (11_000, 11_000)
    ledger.release_before("log", 3)
    assert budget.used == 9000
    ledger.finish()
    assert budget.reclaimable == 9000
    assert ledger.charge(4, 500, force=True) is True  # a finished run's event: reclaimable too
    assert (budget.used, budget.reclaimable) == (9500, 9500)
    assert ledger.charge(6, 100, force=True) is True  # a seq skipped: it costs nothing
    assert (ledger.next_seq, ledger.nbytes, budget.used) == (7, 9600, 9600)
    ledger.drop("log")
    assert (budget.used, budget.reclaimable) == (0, 0)


def test_trimmed_events_are_not_kept_alive_by_the_dead_prefix() -> None:
    log = ReplayLog(max_events=3)
    for seq in range(1, 11):
        log.append(ev(seq))
    dead = log._entries[: log._head]
    assert dead, "a dead prefix (not compacted yet)"
    assert all(event is _TRIMMED for event in dead)


def test_refund_and_reservation() -> None:
    budget = MemoryBudget(4 * MiB)
    ledger = budget.ledger("r")
    ledger.hold("log", overhead=10, admit=True, reserve=1000)
    assert budget.used == 1010
    ledger.charge(1, 600)
    ledger.charge(2, 600)  # 400 from the reservation, 200 more
    assert (budget.used, ledger.reserved) == (1210, 0)
    ledger.refund(2)
    assert budget.used == 610
    ledger.hold("store")
    ledger.drop("store")
    assert budget.used == 610
    ledger.drop("log")
    assert budget.used == 0


def test_unreserve_gives_back_the_rest() -> None:
    budget = MemoryBudget(4 * MiB)
    ledger = budget.ledger("r")
    ledger.hold("log", admit=True, reserve=5000)
    ledger.charge(1, 1200)
    assert budget.used == 5000
    ledger.unreserve()
    assert budget.used == 1200


def test_a_new_run_leaves_the_headroom_and_a_refusal_names_the_limit() -> None:
    budget = MemoryBudget(8 * MiB)
    assert budget.headroom == MiB
    budget.reserve(7 * MiB - 10)
    ledger = budget.ledger("r")
    with pytest.raises(MemoryBudgetExceeded, match=r"max_memory=8 MiB.*1 MiB kept for live runs"):
        ledger.hold("log", overhead=11, admit=True)
    assert budget.used == 7 * MiB - 10
    assert budget.ledger("r") is not ledger, "a refused ledger is forgotten"
    budget.reserve(MiB)  # a live run's event may use the headroom
    with pytest.raises(MemoryBudgetExceeded) as refused:
        budget.reserve(11)
    assert (refused.value.limit, refused.value.needed) == (8 * MiB, 11)
    assert budget.statistics().refused == 2


def test_reclaimers_are_asked_in_order_one_run_at_a_time() -> None:
    budget = MemoryBudget(MiB)
    calls: list[str] = []
    held: dict[str, list[str]] = {"store": ["s1", "s2"], "hub": ["h1"]}
    sizes = {"s1": 300 * KiB, "s2": 300 * KiB, "h1": 200 * KiB}
    for run_id, size in sizes.items():
        ledger = budget.ledger(run_id)
        ledger.hold("log", overhead=size)
        ledger.finish()
    assert budget.reclaimable == 800 * KiB
    for name in held:

        def reclaim(name: str = name) -> bool:
            if not held[name]:
                return False
            calls.append(name)
            budget.ledger(held[name].pop(0)).drop("log")
            return True

        budget.add_reclaimer(reclaim)
    budget.reserve(600 * KiB)
    assert calls == ["store", "store"], "stops as soon as it fits"
    budget.reserve(400 * KiB)
    assert calls == ["store", "store", "hub"]
    assert (budget.used, budget.reclaimable) == (1000 * KiB, 0)
    assert budget.statistics().evicted == 3


def test_nothing_is_evicted_for_a_reservation_that_could_not_fit_anyway() -> None:
    budget = MemoryBudget(MiB)
    budget.reserve(600 * KiB)  # live
    finished = budget.ledger("done")
    finished.hold("log", overhead=300 * KiB)
    finished.finish()
    evicted: list[str] = []

    def reclaim() -> bool:
        if evicted:
            return False
        evicted.append("done")
        finished.drop("log")
        return True

    budget.add_reclaimer(reclaim)
    with pytest.raises(MemoryBudgetExceeded):
        budget.reserve(500 * KiB)  # 600 + 500 > 1024 even without the finished run
    assert evicted == []
    budget.reserve(400 * KiB)
    assert evicted == ["done"]


def test_the_pending_sub_budget_defaults_to_a_quarter() -> None:
    assert MemoryBudget(8 * MiB).max_pending_bytes == 2 * MiB
    assert MemoryBudget(8 * MiB, max_pending_bytes=MiB).max_pending_bytes == MiB
    with pytest.raises(ValueError, match="max_pending_bytes"):
        MemoryBudget(8 * MiB, max_pending_bytes=0)


# -- the hub --------------------------------------------------------------------------


def emitter(count: int, size: int, gate: Gate | None = None, at: int = 0) -> Callable[[RunContext], Any]:
    """Emit ``count`` events of ``size`` characters (blocking at ``gate`` after ``at`` of them)."""

    async def produce(ctx: RunContext) -> str:
        for i in range(count):
            if gate is not None and i == at:
                await gate._pass()
            await ctx.emit("token", {"i": i, "text": "y" * size})
        return "ok"

    return produce


#: A run without metadata, held by the hub and the MemoryStore.
OVERHEADS = RUN_OVERHEAD + RECORD_OVERHEAD + 2 * data_size({})


def counted(hub: Hub, run_id: str) -> int:
    """What the budget counts for the run's events now."""
    return hub.budget.ledger(run_id).nbytes


async def test_a_run_in_the_hub_and_the_memory_store_is_counted_once(autojump_clock) -> None:
    store = MemoryStore()
    async with open_hub(store, grace_period=60) as hub:
        run = await hub.start(emitter(20, 1000), metadata={"m": 1})
        await run.wait()
        events = run.log.read_after(0)
        assert len(events) == 21
        costs = sum(map(event_cost, events))
        meta = data_size({"m": 1})
        assert hub.budget.used == costs + RUN_OVERHEAD + meta + RECORD_OVERHEAD + meta
        assert hub.statistics().memory.runs == hub.budget.used
        await trio.sleep(61)  # past the grace: evicted from the hub, kept by the store
        assert hub.get(run.id) is None
        assert hub.budget.used == costs + RECORD_OVERHEAD + meta
        assert events_of(await collect(hub, run.id)) == events


async def test_finished_runs_give_memory_back_first(autojump_clock) -> None:
    store = MemoryStore()
    async with open_hub(store, grace_period=1000, max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        old = await hub.start(emitter(10, 100_000))
        await old.wait()
        assert hub.budget.used > 1.9 * MiB
        new = await hub.start(emitter(12, 100_000))
        info = await new.wait()
        assert info.status is RunStatus.DONE, info.error
        assert [e.seq for e in events_of(await collect(hub, new.id))] == list(range(1, 14))
        # The old run gave its memory back: gone from the hub and the store.
        assert hub.get(old.id) is None
        with pytest.raises(RunNotFound):
            await hub.get_info(old.id)
        assert hub.budget.used == counted(hub, new.id) + OVERHEADS
        assert hub.budget.statistics().evicted == 2  # its store record, then the hub's copy


async def test_a_live_run_whose_event_cannot_fit_fails_loudly(autojump_clock) -> None:
    async with open_hub(MemoryStore(), max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        gate = Gate()
        holder = await hub.start(emitter(20, 100_000, gate, at=12))
        await gate.reached()
        greedy = await hub.start(emitter(1000, 100_000))
        info = await greedy.wait()
        assert info.status is RunStatus.ERROR
        assert info.error is not None
        assert info.error["code"] == "memory_budget"
        assert "max_memory=4 MiB" in info.error["message"]
        # Whatever it did publish is there, and ends with the error.
        items = await collect(hub, greedy.id)
        assert_well_formed(items)
        assert 0 < info.last_seq - 1 < 20
        # The budget never went past its limit (the terminal is tiny), and
        # the other run goes on; now that greedy is finished it gives back.
        assert hub.budget.used <= hub.budget.limit
        gate.release()
        assert (await holder.wait()).status is RunStatus.DONE
        assert [e.seq for e in events_of(await collect(hub, holder.id))] == list(range(1, 22))


async def test_a_run_can_always_end_even_with_the_budget_full(autojump_clock) -> None:
    async with open_hub(MemoryStore(), max_memory=2 * MiB, max_event_bytes=64 * KiB) as hub:
        greedy = await hub.start(emitter(100_000, 10))  # small events: the budget fills up to the byte
        info = await greedy.wait()
        assert info.error is not None
        assert info.error["code"] == "memory_budget"
        terminal = events_of(await collect(hub, greedy.id))[-1]
        assert terminal.type == "error"
        # The terminal event (larger than a token) did not fit: counted anyway.
        assert 0 < hub.budget.used - hub.budget.limit <= event_cost(terminal)
        # Now finished, it gives its memory back to the next run.
        run = await hub.start(emitter(1, 10))
        assert (await run.wait()).status is RunStatus.DONE


async def test_a_new_run_is_refused_when_live_runs_hold_the_budget(autojump_clock) -> None:
    async with open_hub(max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        gate = Gate()
        live = await hub.start(emitter(30, 100_000, gate, at=19))
        await gate.reached()
        assert hub.budget.used > 4 * MiB - hub.budget.headroom
        with pytest.raises(AtCapacity, match=r"max_memory=4 MiB.*retry later") as refused:
            await hub.start(emitter(1, 10))
        assert refused.value.limit == "max_memory"
        assert len(hub._runs) == 1, "nothing registered"
        gate.release()
        await live.wait()
        # Finished, it is evicted to admit the next run.
        run = await hub.start(emitter(1, 10))
        assert (await run.wait()).status is RunStatus.DONE
        assert hub.get(live.id) is None


async def test_a_reservation_refuses_up_front_and_is_given_back(autojump_clock) -> None:
    async with open_hub(max_memory=4 * MiB, max_event_bytes=256 * KiB, grace_period=60) as hub:
        gate = Gate()
        big = await hub.start(emitter(6, 100_000, gate, at=5), reserve=3 * MiB)
        await gate.reached()
        events = sum(map(event_cost, big.log.read_after(0)))
        assert events > 500 * KiB
        assert hub.budget.used == 3 * MiB + OVERHEADS, "drawn from the reservation"
        with pytest.raises(AtCapacity, match=r"a new run needs 1\.00\d MiB"):
            await hub.start(emitter(1, 10), reserve=MiB)
        with pytest.raises(ValueError, match="reserve"):
            await hub.start(emitter(1, 10), reserve=-1)
        gate.release()
        await big.wait()
        everything = sum(map(event_cost, big.log.read_after(0)))
        assert hub.budget.used == everything + OVERHEADS


async def test_an_event_over_max_event_bytes_is_refused(autojump_clock) -> None:
    refused: list[Exception] = []

    async def careful(ctx: RunContext) -> None:
        await ctx.emit("token", "small")
        try:
            await ctx.emit("token", "y" * (64 * KiB))
        except ValueError as exc:  # EventTooLarge is a ValueError
            refused.append(exc)
        await ctx.emit("token", "y" * (64 * KiB - 2))  # its JSON: exactly the limit

    async with open_hub(max_event_bytes=64 * KiB) as hub:
        run = await hub.start(careful)
        assert (await run.wait()).status is RunStatus.DONE
        assert len(refused) == 1
        assert isinstance(refused[0], EventTooLarge)
        assert "max_event_bytes is 64 KiB" in str(refused[0])
        assert [e.seq for e in events_of(await collect(hub, run.id))] == [1, 2, 3]
        careless = await hub.start(emitter(3, 64 * KiB))
        info = await careless.wait()
        assert info.status is RunStatus.ERROR
        size = f"{(64 * KiB + 21) / KiB:.4g} KiB"  # {"i":0,"text":"..."}
        assert info.error == {
            "code": "event_too_large",
            "message": f"the event's data is {size} encoded; max_event_bytes is 64 KiB",
        }
        assert info.last_seq == 1, "nothing published but the terminal event"


async def test_a_result_too_large_for_its_terminal_event_fails_the_run(autojump_clock) -> None:
    async def produce(ctx: RunContext) -> str:
        await ctx.emit("token", "a")
        return "r" * (200 * KiB)

    async with open_hub(max_event_bytes=128 * KiB) as hub:
        run = await hub.start(produce)
        info = await run.wait()
        assert info.status is RunStatus.ERROR
        assert info.error is not None
        assert info.error["code"] == "result_too_large"
        assert info.result is None
        terminal = events_of(await collect(hub, run.id))[-1]
        assert terminal.type == "error"
        assert terminal.data["result"] is None


async def test_a_reader_of_a_dropped_record_gets_a_true_gap(autojump_clock) -> None:
    async with open_hub(MemoryStore(), grace_period=0, max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        old = await hub.start(emitter(10, 100_000))
        await old.wait()
        assert hub.get(old.id) is None, "evicted at once; the store has it"
        async with hub.subscribe(old.id) as subscription:
            first = await subscription.receive_batch(max_items=3)
            assert [item.seq for item in events_of(first)] == [1, 2, 3]
            # Memory is short: the store drops the old record.
            new = await hub.start(emitter(15, 100_000))
            assert (await new.wait()).status is RunStatus.DONE
            with pytest.raises(RunNotFound):
                await hub.get_info(old.id)
            rest = await subscription.receive_batch()
            assert rest == [Gap(missed=8, first_available=12)]
            with pytest.raises(trio.EndOfChannel):
                await subscription.receive_batch()


async def test_a_run_evicted_while_read_keeps_its_end_until_the_reader_leaves(autojump_clock) -> None:
    store = MemoryStore()
    async with open_hub(store, grace_period=1000, max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        old = await hub.start(emitter(10, 100_000))
        await old.wait()
        async with hub.subscribe(old.id) as subscription:
            items = list(await subscription.receive_batch(max_items=2))
            new = await hub.start(emitter(12, 100_000))
            assert (await new.wait()).status is RunStatus.DONE
            assert hub.get(old.id) is None
            assert len(old.log) == 1, "shrunk to its terminal event"
            async for item in subscription:
                items.append(item)
        assert_well_formed(items)
        assert [getattr(item, "seq", None) for item in items] == [1, 2, None, 11]
        assert items[2] == Gap(missed=8, first_available=11)
        assert len(old.log) == 0, "released once its reader left"
        assert hub.budget.used == counted(hub, new.id) + OVERHEADS


async def test_memory_statistics(autojump_clock) -> None:
    async with open_hub(max_memory=64 * MiB, max_pending_bytes=3 * MiB) as hub:
        run = await hub.start(emitter(3, 10))
        await run.wait()
        memory = hub.statistics().memory
        assert (memory.limit, memory.pending_limit, memory.max_event_bytes) == (64 * MiB, 3 * MiB, MiB)
        assert memory.used == memory.runs == hub.budget.used > 0
        assert (memory.durable, memory.pending, memory.evicted, memory.refused) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_memory": 1000}, "at least 1 MiB"),
        ({"max_memory": 8 * MiB, "max_event_bytes": MiB + 1}, "max_memory / 8"),
        ({"max_event_bytes": 0}, "max_event_bytes"),
        ({"max_pending_bytes": 0}, "max_pending_bytes"),
        ({"max_memory": 8 * MiB, "max_event_bytes": 1, "max_pending_bytes": 9 * MiB}, "max_pending_bytes"),
    ],
)
async def test_invalid_memory_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with open_hub(**options):
            pass


# -- Durable Streams ------------------------------------------------------------------


async def test_durable_streams_count_in_the_budget_and_give_it_all_back() -> None:
    store = DurableStreamStore()
    store.create("old", CreateRequest(TEXT, body=b"x" * 1000))
    budget = MemoryBudget(MiB)
    store.use_memory_budget(budget)  # what it held already counts at once
    assert budget.used == STREAM_OVERHEAD + 1000 + CHUNK_OVERHEAD
    store.create("j", CreateRequest(JSON))
    store.append("j", AppendRequest(b'[1, "ab"]', JSON))
    json_cost = STREAM_OVERHEAD + len(b'1"ab"') + CHUNK_OVERHEAD + 2 * MESSAGE_OVERHEAD
    assert budget.statistics().durable == budget.used == STREAM_OVERHEAD + 1000 + CHUNK_OVERHEAD + json_cost
    # Forks (with a sub-offset prefix) and soft deletion give back exactly what was counted.
    start = Offset(0, 0)
    store.create("fork", CreateRequest(None, fork=ForkSpec("old", start, 3), body=b"XY"))
    store.create("jfork", CreateRequest(None, fork=ForkSpec("j", start, 1)))
    store.delete("old")  # soft: the fork still reads it
    store.delete("j")
    assert budget.used > 2 * STREAM_OVERHEAD
    store.delete("fork")
    store.delete("jfork")
    assert budget.used == store.statistics().bytes == 0
    assert budget.statistics().runs == 0


async def test_a_durable_append_that_does_not_fit_is_a_507_naming_the_budget() -> None:
    store = DurableStreamStore()
    budget = MemoryBudget(MiB, max_event_bytes=KiB)
    store.use_memory_budget(budget)
    store.create("s", CreateRequest(TEXT, body=b"x" * (900 * KiB)))
    with pytest.raises(DurableStreamError, match=r"max_memory=1 MiB") as refused:
        store.append("s", AppendRequest(b"y" * (200 * KiB), TEXT))
    assert (refused.value.status, refused.value.code) == (507, "store_full")
    assert store.statistics().bytes == 900 * KiB, "nothing appended"
    with pytest.raises(DurableStreamError, match=r"max_memory=1 MiB"):
        store.create("t", CreateRequest(TEXT, body=b"y" * (200 * KiB)))
    with pytest.raises(DurableStreamError):
        store.head("t")


async def test_finished_runs_give_memory_back_to_durable_streams_first(autojump_clock) -> None:
    store = DurableStreamStore()
    async with open_hub(MemoryStore(), max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
        store.use_memory_budget(hub.budget)
        run = await hub.start(emitter(15, 100_000))
        await run.wait()
        assert hub.budget.used > 2.8 * MiB
        store.create("s", CreateRequest(TEXT, body=b"x" * (2 * MiB)))
        with pytest.raises(RunNotFound):
            await hub.get_info(run.id)
        assert (
            hub.budget.used == hub.budget.statistics().durable == STREAM_OVERHEAD + 2 * MiB + CHUNK_OVERHEAD
        )
        # Streams are never evicted: with no finished run left, the next is refused.
        with pytest.raises(DurableStreamError, match="max_memory=4 MiB"):
            store.append("s", AppendRequest(b"x" * (2 * MiB), TEXT))


async def test_with_redis_a_finished_run_gives_back_everything_when_evicted(redis_url, prefix) -> None:
    # Real Redis, real clock: Redis keeps the record, so the hub's copy is all
    # this process holds, and evicting it gives everything back.
    with trio.fail_after(20):
        async with open_hub(RedisStore(redis_url, prefix=prefix), grace_period=0) as hub:
            gate = Gate()
            run = await hub.start(emitter(21, 1000, gate, at=20))
            await gate.reached()
            events = run.log.read_after(0)
            assert len(events) == 20
            assert hub.budget.used == sum(map(event_cost, events)) + RUN_OVERHEAD + data_size({})
            gate.release()
            await run.wait()
            assert hub.get(run.id) is None, "evicted at once (grace 0)"
            assert hub.budget.used == 0
            assert [e.seq for e in events_of(await collect(hub, run.id))] == list(range(1, 23)), "from Redis"


async def test_the_size_cap_counts_utf8_bytes(autojump_clock) -> None:
    async def produce(ctx: RunContext) -> None:
        await ctx.emit("token", "é" * 32_767)  # 65,534 bytes + 2 quotes: exactly 64 KiB in UTF-8
        with pytest.raises(EventTooLarge):
            await ctx.emit("token", "é" * 32_768)  # 32,770 characters, but 65,538 bytes

    async with open_hub(max_event_bytes=64 * KiB) as hub:
        run = await hub.start(produce)
        info = await run.wait()
        assert info.status is RunStatus.DONE, info.error
        assert info.last_seq == 2


async def test_a_mirror_counts_what_it_holds_and_gives_it_back(redis_url, prefix) -> None:
    # Two hubs on one Redis stand for two servers: B follows A's live run
    # through a mirror, whose events count in B's budget while B holds them.
    with trio.fail_after(20):
        a_store, b_store = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
        async with open_hub(a_store, grace_period=0) as a, open_hub(b_store, grace_period=0) as b:
            gate = Gate()
            run = await a.start(emitter(11, 1000, gate, at=10))
            await gate.reached()
            async with b.subscribe(run.id) as subscription:
                received: list[Event] = []
                while len(received) < 10:
                    received.extend(events_of(await subscription.receive_batch()))
                # Events 1-10 may all be in Redis already (the writer flushes at
                # once), read from the store, not held: event 11, published
                # after B subscribed, reaches B through the mirror's log.
                gate.release()
                while received[-1].seq < 11:
                    received.extend(events_of(await subscription.receive_batch()))
                mirror = b._mirrors._mirrors[run.id].run  # type: ignore[union-attr]
                held = mirror.log.read_after(0)
                assert held
                assert b.budget.used == sum(map(event_cost, held)) + RUN_OVERHEAD + data_size({})
                async for item in subscription:
                    received.append(item)  # type: ignore[arg-type]
            assert [e.seq for e in received] == list(range(1, 13))
            assert b.budget.used == 0, "the mirror is gone with its last subscriber"


async def test_a_memory_store_kept_across_hubs_counts_in_the_new_budget(autojump_clock) -> None:
    store = MemoryStore()
    async with open_hub(store, grace_period=0) as first:
        run = await first.start(emitter(10, 100_000))
        await run.wait()
    events = await store.read_events(run.id, 0, 100)
    record = sum(map(event_cost, events)) + RECORD_OVERHEAD + data_size({})
    async with open_hub(store, max_memory=4 * MiB, max_event_bytes=256 * KiB) as second:
        assert second.budget.used == record
        assert second.budget.reclaimable == record, "a finished record: it can be given back"
        big = await second.start(emitter(15, 100_000))
        assert (await big.wait()).status is RunStatus.DONE
        assert await store.get_run(run.id) is None, "the old record gave its memory back"


async def test_a_batch_is_bounded_in_bytes_too(autojump_clock) -> None:
    async with open_hub(MemoryStore(), grace_period=60) as hub:
        run = await hub.start(emitter(20, 300_000))
        await run.wait()
        async with hub.subscribe(run.id) as subscription:
            assert run.log.first_seq == 1, "all in the log"
            batches = [len(await subscription.receive_batch()) for _ in range(3)]
            assert batches == [4, 4, 4], "about 1 MiB per batch: 4 events of 300 kB"
    async with open_hub(MemoryStore(), log_max_bytes=MiB, grace_period=60) as hub:
        run = await hub.start(emitter(20, 300_000))
        await run.wait()
        async with hub.subscribe(run.id) as subscription:
            assert run.log.first_seq == 18, "the log keeps 1 MiB of them; the store has the rest"
            batches = [len(await subscription.receive_batch()) for _ in range(3)]
            assert batches == [4, 4, 4], "from the store, bounded the same way"
            # Without the byte bound the store gives all of 13..17 at once,
            # then the log all of the rest.
            rest = [await subscription.receive_batch(max_bytes=10**9) for _ in range(2)]
            assert [[e.seq for e in events_of(b)] for b in rest] == [[13, 14, 15, 16, 17], [18, 19, 20, 21]]


async def test_with_redis_finished_runs_give_memory_back_and_stay_served(redis_url, prefix) -> None:
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store, grace_period=1000, max_memory=4 * MiB, max_event_bytes=256 * KiB) as hub:
            old = await hub.start(emitter(10, 100_000))
            await old.wait()
            assert hub.budget.reclaimable == hub.budget.used > 1.9 * MiB
            new = await hub.start(emitter(1, 10), reserve=2 * MiB)  # fits only without the old run
            assert hub.get(old.id) is None
            assert (await new.wait()).status is RunStatus.DONE
            # Evicted from memory, kept by a store with room of its own.
            assert [e.seq for e in events_of(await collect(hub, old.id))] == list(range(1, 12))


async def test_an_event_the_store_refuses_is_not_counted(redis_url, prefix) -> None:
    # The writer holds about one event at most and flushes only when asked:
    # the second event overflows, and the run fails with store_overflow.
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix, max_pending_bytes=1500, flush_interval=30)
        async with open_hub(store, grace_period=1000) as hub:
            run = await hub.start(emitter(5, 1000))
            info = await run.wait()
            assert info.error is not None
            assert info.error["code"] == "store_overflow"
            held = run.log.read_after(0)
            assert [e.type for e in held] == ["token", "error"]
            assert hub.budget.used == sum(map(event_cost, held)) + RUN_OVERHEAD + data_size({})


async def test_the_redis_writer_is_bounded_by_the_pending_sub_budget(redis_url, prefix) -> None:
    # The writer flushes only when asked (flush_interval): events pile up as
    # in an outage, and its bound is the hub's sub-budget (1 MiB), not its
    # own default (64 MiB).
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix, flush_interval=30)
        options: dict[str, Any] = {
            "max_memory": 16 * MiB,
            "max_pending_bytes": MiB,
            "max_event_bytes": 256 * KiB,
        }
        async with open_hub(store, **options) as hub:
            assert store.statistics().max_pending_bytes == MiB
            run = await hub.start(emitter(30, 100_000))
            info = await run.wait()
            assert info.error is not None
            assert info.error["code"] == "store_overflow"
            assert 5 < info.last_seq - 1 <= 11, "about 1 MiB of 100 kB events"
            assert hub.statistics().memory.pending_limit == MiB
    store = RedisStore(redis_url, prefix=prefix)
    async with open_hub(store, max_memory=16 * MiB):
        assert store.statistics().max_pending_bytes == 4 * MiB, "a quarter of max_memory"


@pytest.mark.redis
async def test_a_finished_run_keeps_what_redis_lacks_until_it_has_it(tmp_path) -> None:
    # Redis dies mid-run; the run ends anyway (its end waits store_timeout),
    # with events only its log and the writer hold. Eviction (grace 0 would
    # evict at once) waits until they are durable: they stay counted and
    # readable; then the run leaves memory and Redis serves it in full.
    with trio.fail_after(30):
        server = RedisServer(tmp_path / "redis", appendonly=True, args=("--appendfsync", "always"))
        await server.start()
        try:
            store = RedisStore(server.url, prefix=unique_prefix(), backoff_min=0.02, backoff_max=0.2)
            async with open_hub(store, grace_period=0, store_timeout=0.5) as hub:
                gate = Gate()
                run = await hub.start(emitter(6, 1000, gate, at=3))
                await gate.reached()
                await store._writer.wait_durable(store._writer.ticket())
                server.kill()
                await server.wait_exited()
                gate.release()
                await run.wait()
                assert run.log.pending_nbytes > 0
                assert hub.get(run.id) is run, "not evicted: the store lacks some of it"
                assert reclaim_oldest(hub._state) is False, "nor given back under memory pressure"
                held = sum(map(event_cost, run.log.read_after(0)))
                assert hub.budget.used == held + RUN_OVERHEAD + data_size({})
                await server.start()

                async def evicted() -> bool:
                    await trio.lowlevel.checkpoint()
                    return hub.get(run.id) is None

                await eventually(evicted)
                assert hub.budget.used == 0
                assert [e.seq for e in events_of(await collect(hub, run.id))] == list(range(1, 8))
        finally:
            await server.stop()
