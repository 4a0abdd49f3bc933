"""The publish path's shortcuts (issue 14 item 4) change costs, never behaviour.

Each shortcut skips work nobody needs -- a wake-up with nobody parked, a walk
over a flat value, a byte cut a short slice cannot need, a second check of an
event type, a second encoding of a batch another SSE writer just encoded --
and each test pins what the long way gives.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_streams import RunContext, open_hub
from trio_streams.log import Changed
from trio_streams.log._entries import cut_to_bytes
from trio_streams.log._events import _ACCEPTED, _ACCEPTED_MAX, Event, Gap, Heartbeat, Item, check_event_type
from trio_streams.log._json import encode_json
from trio_streams.log._replay_log import ReplayLog
from trio_streams.log._sizes import EVENT_OVERHEAD, _walk, event_cost
from trio_streams.protocol._sse import SHARED_BATCH_BYTES, SharedBatches, encode_batch

# -- wake-ups only for parked readers ----------------------------------------------


async def test_a_burst_of_notifies_wakes_a_parked_reader_once(autojump_clock: Any) -> None:
    changed = Changed()
    wakes: list[float] = []

    async def reader() -> None:
        for _ in range(2):
            await changed.wait()
            wakes.append(trio.current_time())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert changed.waiting == 1
            await trio.sleep(3)
            for _ in range(64):  # one producer step: only the first finds it parked
                changed.notify()
            assert changed.waiting == 0
            await trio.testing.wait_all_tasks_blocked()
            assert wakes == [3.0]
            assert changed.waiting == 1  # parked again: the next notify wakes it
            await trio.sleep(4)
            changed.notify()
    assert wakes == [3.0, 7.0]


async def test_a_cancelled_wait_leaves_the_count_right_and_the_next_waiter_is_woken(
    autojump_clock: Any,
) -> None:
    changed = Changed()
    woken: list[float] = []
    with trio.move_on_after(2):
        await changed.wait()
    assert changed.waiting == 0

    async def waiter() -> None:
        await changed.wait()
        woken.append(trio.current_time())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert changed.waiting == 2
            await trio.sleep(5)
            changed.notify()
    assert woken == [7.0, 7.0]
    assert changed.waiting == 0


async def test_a_waiter_parking_while_a_cancelled_one_has_not_run_yet_is_woken(autojump_clock: Any) -> None:
    # A cancelled waiter leaves the lot when the cancel is delivered but runs
    # its own code only later; a count kept by the waiters themselves would
    # then say "nobody parked" while this task is, and the wake-up is lost.
    changed = Changed()
    cancelled = trio.CancelScope()

    async def leaver() -> None:
        with cancelled:
            await changed.wait()

    async def notifier() -> None:
        await trio.sleep(5)
        changed.notify()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leaver)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(notifier)
            cancelled.cancel()  # the leaver is out of the lot; it has not run
            changed.notify()  # nobody parked
            await changed.wait()  # parks before the leaver runs
            assert trio.current_time() == 5.0
    assert cancelled.cancelled_caught


async def test_one_producer_step_reaches_a_parked_subscriber_as_one_batch(autojump_clock: Any) -> None:
    step = trio.Event()

    async def produce(ctx: RunContext) -> None:
        await step.wait()
        for n in range(64):
            ctx.emit_nowait("token", n)
        await trio.sleep_forever()  # the run's end is no part of this batch

    async with open_hub() as hub:
        run = await hub.start(produce)
        async with hub.subscribe(run.id) as subscription:
            await trio.testing.wait_all_tasks_blocked()
            assert run._wakeup.waiting == 0  # the subscriber has not asked yet
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    batches: list[list[int]] = []

                    async def read() -> None:
                        items = await subscription.receive_batch()
                        batches.append([item.seq if isinstance(item, Event) else -1 for item in items])

                    nursery.start_soon(read)
                    await trio.testing.wait_all_tasks_blocked()
                    assert run._wakeup.waiting == 1
                    step.set()
            assert batches == [list(range(1, 65))]


# -- sizes and checks, the short way and the long way ------------------------------


VALUES: list[Any] = [0, 7, -5, 10**30, 1.5, True, False, None, "", "tok", "é" * 10, "✓" * 3]
VALUES += [{"a": 1}, [1, "x"], {"a": {"b": [1]}}]


@pytest.mark.parametrize("data", VALUES)
def test_event_cost_of_any_value_is_the_full_walk(data: Any) -> None:
    event = Event.create(1, "token", data, 0.0)
    assert event_cost(event) == sys.getsizeof(event.data_json) + _walk(data) + EVENT_OVERHEAD


def test_an_accepted_type_stays_accepted_and_the_memory_of_them_is_bounded() -> None:
    check_event_type("token")
    assert "token" in _ACCEPTED
    for bad in ("done", "gap", "a\nb", "", "x" * 65):
        with pytest.raises(ValueError):
            check_event_type(bad)
        assert bad not in _ACCEPTED
    for n in range(3 * _ACCEPTED_MAX):
        check_event_type(f"type-{n}")
        assert len(_ACCEPTED) <= _ACCEPTED_MAX
    check_event_type("token")  # after the memory started over: checked again, accepted


def test_a_str_subclass_is_checked_every_time() -> None:
    class Sneaky(str):
        pass

    check_event_type(Sneaky("token-sub"))
    assert "token-sub" not in _ACCEPTED


def test_a_read_cut_by_bytes_is_the_full_cut_whatever_the_shortcut() -> None:
    sizes = [1, 300, 5, 5, 5, 900, 2, 2, 2, 2, 40, 1, 900, 900]
    log = ReplayLog(max_events=100, max_bytes=10**6)
    for seq, size in enumerate(sizes, start=1):
        # Event.size is its JSON plus its type plus a fixed overhead: pad the type.
        log.append(Event.create(seq, "t" * size, seq, 0.0))
    every = log.read_after(0)
    for after in range(len(sizes) + 1):
        for max_bytes in (1, 60, 66, 100, 400, 1000, 2000, 10**6):
            expected = every[after:]
            if log.nbytes > max_bytes:
                expected = cut_to_bytes(expected, max_bytes)
            assert log.read_after(after, None, max_bytes) == expected, (after, max_bytes)


# -- one SSE encoding per batch, shared ------------------------------------------------


def _events(count: int, data: Any = 1, first: int = 1) -> list[Event]:
    return [Event.create(seq, "token", data, 0.0) for seq in range(first, first + count)]


def test_writers_of_the_same_slice_share_one_encoding() -> None:
    shared = SharedBatches()
    events = _events(8)
    one = shared.encode(events[2:6])
    other = shared.encode(list(events[2:6]))  # another subscriber's slice: same events
    assert one == encode_batch(events[2:6])
    assert other is one
    assert (shared.hits, shared.misses) == (1, 1)
    longer = shared.encode(events[2:8])  # same first event, more after it
    assert longer == encode_batch(events[2:8])
    shorter = shared.encode(events[3:6])  # same last event, fewer before it
    assert shorter == encode_batch(events[3:6])
    assert (shared.hits, shared.misses) == (1, 3)


def test_equal_events_of_another_run_are_not_taken_for_the_same_slice() -> None:
    shared = SharedBatches()
    ones, trues = _events(3, 1), _events(3, True)
    assert ones[0] == trues[0]  # equal as dataclasses (1 == True), encoded differently
    shared.encode(ones)
    assert shared.encode(trues) == encode_batch(trues)
    assert b"data: true" in shared.encode(trues)


def test_control_items_and_large_batches_are_encoded_afresh() -> None:
    shared = SharedBatches()
    events = _events(3, first=5)
    with_gap: list[Item] = [Gap(missed=4, first_available=5), *events]
    assert shared.encode(with_gap) == encode_batch(with_gap)
    assert shared.encode([Heartbeat(1.0)]) == encode_batch([Heartbeat(1.0)])
    assert shared.encode([]) == b""
    big = _events(2, "x" * SHARED_BATCH_BYTES)
    assert shared.encode(big) == encode_batch(big)
    assert shared.encode(big) == encode_batch(big)
    assert shared.hits == 0  # too large to keep: each writer encodes its own


async def test_every_sse_writer_of_a_run_gets_the_same_bytes_from_one_encoding_per_step(
    autojump_clock: Any,
) -> None:
    steps, per_step, readers = 5, 64, 10
    shared = SharedBatches()
    streams: list[list[bytes]] = [[] for _ in range(readers)]

    async def produce(ctx: RunContext) -> None:
        for step in range(steps):
            # Every reader has read the last step and parked again.
            await trio.testing.wait_all_tasks_blocked()
            for n in range(per_step):
                ctx.emit_nowait("token", {"step": step, "n": n})
        await trio.testing.wait_all_tasks_blocked()

    release = trio.Event()

    async with open_hub() as hub:

        async def gated(ctx: RunContext) -> None:
            await release.wait()
            await produce(ctx)

        run = await hub.start(gated)

        async def write(stream: list[bytes], *, task_status: trio.TaskStatus[None]) -> None:
            async with hub.subscribe(run.id) as subscription:
                task_status.started()
                while True:
                    try:
                        items = await subscription.receive_batch()
                    except trio.EndOfChannel:
                        return
                    stream.append(shared.encode(items))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for stream in streams:
                    await nursery.start(write, stream)
                release.set()
    expected = b"".join(streams[0])
    assert all(b"".join(stream) == expected for stream in streams)
    assert expected.count(b"\nevent: token\n") == steps * per_step
    # One encoding per producer step (and one for the terminal event), shared by the rest.
    assert shared.misses == steps + 1
    assert shared.hits == (steps + 1) * (readers - 1)


# -- the benchmark behind RESULTS.md's figures: a smoke test of its delivery checks ----


async def test_the_hotpath_benchmark_delivers_every_event() -> None:
    from benchmarks.hub_hotpath import publish_only, sse_writers

    with trio.fail_after(60):
        assert await publish_only(200, 64) >= 0
        assert await sse_writers(200, 3, shared=True) >= 0
        assert await sse_writers(200, 3, shared=False) >= 0


# -- encoding and building an event without the general machinery ----------------

_GENERAL_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_encode_json_writes_what_the_general_encoder_writes(value: Any) -> None:
    assert encode_json(value) == _GENERAL_ENCODER.encode(value)


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**70, True, False, None, -0.0, 1e16, 2.5, 1e-300, "", 'a"\\\n\t\x00é✓', (1, "a"), [], {}],
)
def test_encode_json_of_each_scalar_and_container_shape(value: Any) -> None:
    assert encode_json(value) == _GENERAL_ENCODER.encode(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="contains itself"):
        encode_json(looped)
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    with pytest.raises(ValueError, match="contains itself"):
        encode_json({"a": [mapping]})
    assert encode_json({"a": [1]}) == '{"a":[1]}', "an error leaves nothing behind for the next call"


@given(st.integers(), _json_values, st.floats(allow_nan=False))
def test_event_create_builds_what_the_constructor_builds(seq: int, data: Any, timestamp: float) -> None:
    event = Event.create(seq, "token", data, timestamp)
    same = Event(seq, "token", data, timestamp, _GENERAL_ENCODER.encode(data))
    assert (event.seq, event.type, event.data, event.timestamp) == (seq, "token", data, timestamp)
    assert event.data_json == same.data_json
    assert event == same
    assert type(event) is Event
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 0  # type: ignore[misc]


def test_event_create_of_a_subclass_builds_the_subclass() -> None:
    class Tagged(Event):
        __slots__ = ()

    event = Tagged.create(1, "token", {"a": 1}, 0.0)
    assert type(event) is Tagged
    assert event.data_json == '{"a":1}'


@pytest.mark.parametrize("side", ["hub", "trio", "asyncio"])
def test_the_instruction_count_scenario_delivers_every_event(side: str) -> None:
    # What hub_instructions runs under callgrind; it exits when a delivery is missing.
    from benchmarks.hub_instructions import _one

    _one(side, 300, 3, 64)
    _one(side, 50, 2, 1)
