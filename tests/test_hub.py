"""The hub's basic contract: runs drain detached, events are numbered, fan-out is exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_streams import (
    Event,
    Heartbeat,
    HubClosed,
    RunContext,
    RunFailed,
    RunNotFound,
    RunStatus,
    TrioStreamsInternalError,
    open_hub,
)
from trio_streams.testing import Gate, Script, assert_well_formed, collect, events_of, types_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def test_events_are_numbered_and_end_with_one_terminal(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(3, every=1.0).result("abc"))
    items = await collect(stream_hub, run.id)
    assert_well_formed(items)
    assert [(e.seq, e.type, e.data) for e in events_of(items)] == [
        (1, "token", "t0"),
        (2, "token", "t1"),
        (3, "token", "t2"),
        (4, "done", {"result": "abc"}),
    ]
    assert trio.current_time() == 2.0
    info = await stream_hub.wait(run.id)
    assert (info.status, info.result, info.partial, info.last_seq) == (RunStatus.DONE, "abc", False, 4)
    assert (info.created_at, info.started_at, info.ended_at) == (0.0, 0.0, 2.0)


async def test_function_producer_return_value_is_the_result(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> dict[str, int]:
        await ctx.emit("step", {"n": 1})
        return {"answer": 42}

    run = await stream_hub.start(producer)
    info = await run.wait()
    assert info.result == {"answer": 42}
    assert events_of(await collect(stream_hub, run.id))[-1].data == {"result": {"answer": 42}}


async def test_async_iterable_and_generator_function_producers(stream_hub, autojump_clock) -> None:
    async def items() -> AsyncIterator[Any]:
        yield ("token", "a")
        yield {"free": "form"}
        yield "plain"

    async def generator_function(ctx: RunContext) -> AsyncIterator[Any]:
        yield ("token", ctx.input["word"])

    first = await stream_hub.start(items())
    second = await stream_hub.start(generator_function, input={"word": "hi"})
    first_items = events_of(await collect(stream_hub, first.id))
    assert [(e.type, e.data) for e in first_items] == [
        ("token", "a"),
        ("message", {"free": "form"}),
        ("message", "plain"),
        ("done", {"result": None}),
    ]
    assert next((e.type, e.data) for e in events_of(await collect(stream_hub, second.id))) == ("token", "hi")


async def test_run_outlives_the_task_that_started_it(stream_hub, autojump_clock) -> None:
    started: list[str] = []

    async def request_handler() -> None:
        run = await stream_hub.start(Script().emit_many(5, every=1.0))
        started.append(run.id)
        await trio.sleep_forever()

    with trio.move_on_after(1.5):
        await request_handler()
    info = await stream_hub.wait(started[0])
    assert info.status == RunStatus.DONE
    assert info.last_seq == 6
    assert trio.current_time() == 4.0


async def test_late_subscriber_replays_then_follows_live(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(6, every=1.0))
    await trio.sleep(2.5)
    async with stream_hub.subscribe(run.id) as subscription:
        first = await subscription.receive_batch()
        assert [e.seq for e in events_of(first)] == [1, 2, 3]  # the backlog, as one batch
        rest = [item async for item in subscription]
    assert_well_formed(first + rest)
    assert trio.current_time() == 5.0


async def test_resume_after_n_gets_exactly_the_rest(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(5))
    await run.wait()
    items = await collect(stream_hub, run.id, after=3)
    assert [e.seq for e in events_of(items)] == [4, 5, 6]
    assert_well_formed(items, after=3)
    assert await collect(stream_hub, run.id, after=6) == []


async def test_subscribers_joining_at_different_times_each_get_everything_once(
    stream_hub, autojump_clock
) -> None:
    run = await stream_hub.start(Script().emit_many(20, every=0.5))
    results: dict[int, list[Any]] = {}

    async def follow(index: int, join_at: float, after: int) -> None:
        await trio.sleep_until(join_at)
        results[index] = await collect(stream_hub, run.id, after=min(after, run.last_seq))

    async with trio.open_nursery() as nursery:
        for index in range(8):
            nursery.start_soon(follow, index, index * 1.3, index)
    for index, items in results.items():
        assert_well_formed(items, after=min(index, events_of(items)[0].seq - 1))
        assert events_of(items)[-1].seq == 21


async def test_producer_exception_becomes_a_safe_error_event(stream_hub, autojump_clock, caplog) -> None:
    run = await stream_hub.start(Script().emit_many(2).fail("password=hunter2 leaked"))
    items = events_of(await collect(stream_hub, run.id))
    assert types_of(items) == ["token", "token", "error"]
    assert items[-1].data["error"] == {
        "code": "producer_error",
        "message": "the producer failed (RuntimeError)",
    }
    assert "hunter2" not in items[-1].data_json
    assert "hunter2" in caplog.text  # the traceback goes to the log, not to clients
    info = await stream_hub.get_info(run.id)
    assert info.status == RunStatus.ERROR
    assert info.result == "t0t1"
    assert info.partial
    # The hub is unharmed.
    assert (await (await stream_hub.start(Script().emit())).wait()).status == RunStatus.DONE


async def test_run_failed_publishes_its_own_message(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> None:
        raise RunFailed("the model is overloaded, try again", code="overloaded")

    run = await stream_hub.start(producer)
    await run.wait()
    error = events_of(await collect(stream_hub, run.id))[-1]
    assert error.data["error"] == {"code": "overloaded", "message": "the model is overloaded, try again"}


@pytest.mark.parametrize("reserved", ["done", "error", "cancelled", "dead", "gap", "heartbeat", ""])
async def test_producers_cannot_emit_reserved_types(stream_hub, autojump_clock, reserved: str) -> None:
    async def producer(ctx: RunContext) -> None:
        await ctx.emit(reserved, None)

    run = await stream_hub.start(producer)
    info = await run.wait()
    assert info.status == RunStatus.ERROR
    assert info.last_seq == 1  # only the terminal


async def test_non_json_event_data_is_the_producers_error(stream_hub, autojump_clock) -> None:
    raised: list[BaseException] = []

    async def producer(ctx: RunContext) -> str:
        try:
            await ctx.emit("token", object())
        except TypeError as exc:
            raised.append(exc)
        return "recovered"

    run = await stream_hub.start(producer)
    assert (await run.wait()).result == "recovered"
    assert isinstance(raised[0], TypeError)
    assert run.last_seq == 1


async def test_non_json_result_ends_the_run_in_error(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> object:
        return object()

    run = await stream_hub.start(producer)
    info = await run.wait()
    assert info.status == RunStatus.ERROR
    assert info.error == {"code": "bad_result", "message": "the run's result is not JSON-serializable"}


async def test_history_and_last_seq_in_context(stream_hub, autojump_clock) -> None:
    seen: list[Any] = []

    async def producer(ctx: RunContext) -> None:
        await ctx.emit("a", 1)
        await ctx.emit("b", 2)
        seen.append((ctx.last_seq, [e.data for e in ctx.history()], [e.data for e in ctx.history(after=1)]))

    await (await stream_hub.start(producer)).wait()
    assert seen == [(2, [1, 2], [2])]


async def test_hundred_concurrent_runs_have_no_cross_talk(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> None:
        for i in range(10):
            await ctx.emit("token", {"run": ctx.input, "i": i})
            await trio.sleep(0.1 * (ctx.input % 7 + 1))

    runs = [await stream_hub.start(producer, input=n, key=f"conv-{n}") for n in range(100)]
    collected: dict[int, list[Any]] = {}

    async def follow(n: int) -> None:
        collected[n] = await collect(stream_hub, runs[n].id)

    async with trio.open_nursery() as nursery:
        for n in range(100):
            nursery.start_soon(follow, n)
    for n, items in collected.items():
        assert_well_formed(items)
        assert [e.data for e in events_of(items)[:-1]] == [{"run": n, "i": i} for i in range(10)]
    assert stream_hub.statistics().runs_by_status == {"done": 100}


async def test_heartbeats_on_idle_at_exact_times(stream_hub, autojump_clock) -> None:
    gate = Gate()
    run = await stream_hub.start(Script().emit().wait(gate).emit())
    beats: list[float] = []
    async with stream_hub.subscribe(run.id, heartbeat=15.0) as subscription:
        assert events_of(await subscription.receive_batch())[0].seq == 1
        for _ in range(3):
            (beat,) = await subscription.receive_batch()
            assert isinstance(beat, Heartbeat)
            beats.append(trio.current_time())
        gate.release()
        assert types_of([item async for item in subscription]) == ["token", "done"]
    assert beats == [15.0, 30.0, 45.0]


async def test_heartbeat_idle_time_counts_from_the_last_item_delivered(stream_hub, autojump_clock) -> None:
    # A heartbeat at 15, then an event at 20: the next heartbeat is 15 s after
    # the event (35), not 15 s after the previous heartbeat (30).
    gate = Gate()
    run = await stream_hub.start(Script().emit().emit(at=20.0).wait(gate))
    seen: list[tuple[float, str]] = []
    async with stream_hub.subscribe(run.id, heartbeat=15.0) as subscription:
        while len(seen) < 5:
            for item in await subscription.receive_batch():
                seen.append((trio.current_time(), item.type))
        gate.release()
        assert types_of([item async for item in subscription]) == ["done"]
    assert seen == [
        (0.0, "token"),
        (15.0, "heartbeat"),
        (20.0, "token"),
        (35.0, "heartbeat"),
        (50.0, "heartbeat"),
    ]


async def test_slow_subscriber_never_blocks_the_producer(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(5000))
    async with stream_hub.subscribe(run.id) as subscription:
        first = await subscription.receive_batch(max_items=1)
        assert events_of(first)[0].seq == 1
        await run.wait()  # the producer finished while we read nothing
        assert trio.current_time() == 0.0
        rest = [item async for item in subscription]
    assert_well_formed(first + rest)


async def test_receive_batch_respects_max_items(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(10))
    await run.wait()
    async with stream_hub.subscribe(run.id) as subscription:
        sizes = []
        while not subscription.ended:
            sizes.append(len(await subscription.receive_batch(max_items=4)))
        with pytest.raises(trio.EndOfChannel):
            await subscription.receive_batch()
    assert sizes == [4, 4, 3]


async def test_subscribe_rejects_bad_cursors_and_unknown_runs(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(2))
    await run.wait()
    with pytest.raises(ValueError, match="beyond"):
        async with stream_hub.subscribe(run.id, after=4):
            pass
    with pytest.raises(ValueError, match=">= 0"):
        async with stream_hub.subscribe(run.id, after=-1):
            pass
    with pytest.raises(RunNotFound):
        async with stream_hub.subscribe("no-such-run"):
            pass
    with pytest.raises(RunNotFound):
        await stream_hub.cancel("no-such-run")
    with pytest.raises(RunNotFound):
        await stream_hub.get_info("no-such-run")


async def test_statistics(stream_hub, autojump_clock) -> None:
    gate = Gate()
    live = await stream_hub.start(Script().emit_many(3).wait(gate), owner="ann")
    done = await stream_hub.start(Script().emit_many(2), owner="bob")
    await done.wait()
    await gate.reached()
    async with stream_hub.subscribe(live.id):
        stats = stream_hub.statistics()
        assert (stats.runs_running, stats.runs_finished, stats.runs_queued) == (1, 1, 0)
        assert stats.subscribers == 1
        assert stats.log_events == 3 + 3
        assert stats.events_published == 3 + 3
        assert stats.runs_started == 2
        assert stats.runs_by_status == {"done": 1}
    gate.release()
    await live.wait()
    assert stream_hub.statistics().events_published == 4 + 3


async def test_list_runs_filters_by_owner_and_status(stream_hub, autojump_clock) -> None:
    gate = Gate()
    a = await stream_hub.start(Script().wait(gate), owner="ann")
    b = await stream_hub.start(Script().emit(), owner="ann")
    c = await stream_hub.start(Script().emit(), owner="bob")
    await b.wait()
    await c.wait()
    assert {i.run_id for i in await stream_hub.list_runs(owner="ann")} == {a.id, b.id}
    assert [i.run_id for i in await stream_hub.list_runs(owner="ann", status=RunStatus.RUNNING)] == [a.id]
    assert len(await stream_hub.list_runs()) == 3
    gate.release()


async def test_metadata_must_be_json(stream_hub, autojump_clock) -> None:
    with pytest.raises(TypeError):
        await stream_hub.start(Script(), metadata={"x": object()})
    with pytest.raises(TypeError, match="producer must be"):
        await stream_hub.start(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_conflict"):
        await stream_hub.start(Script(), key="k", on_conflict="replace")  # type: ignore[arg-type]


async def test_open_hub_rejects_unknown_and_invalid_options() -> None:
    with pytest.raises(TypeError, match="grace_perod"):
        async with open_hub(grace_perod=3):
            pass
    with pytest.raises(ValueError, match="grace_period"):
        async with open_hub(grace_period=-1):
            pass


async def test_an_error_in_the_block_propagates_as_itself(autojump_clock) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_hub() as hub:
            await hub.start(Script().sleep(100))
            raise KeyError("mine")


async def test_start_after_close_is_refused(autojump_clock) -> None:
    async with open_hub() as hub:
        pass
    with pytest.raises(HubClosed):
        await hub.start(Script())


async def test_a_bug_in_a_hook_does_not_escape_but_several_errors_are_collapsed(autojump_clock) -> None:
    async def hook(run: Any, outcome: Any) -> None:
        raise ValueError("hook bug")

    async with open_hub(on_finish=hook) as hub:
        run = await hub.start(Script().emit())
        info = await run.wait()
    assert info.status == RunStatus.DONE
    assert info.finalize_error == "on_finish raised ValueError: hook bug"

    async def fail(error: Exception) -> None:
        raise error

    # One error escaping the block is raised as itself, not in a group ...
    with pytest.raises(KeyError, match="alone"):
        async with open_hub():
            raise KeyError("alone")
    # ... several at once are collapsed into one error that carries them all,
    # never unwrapped to the first of them.
    with pytest.raises(TrioStreamsInternalError, match=r"^2 errors escaped the hub at once$") as caught:
        async with open_hub(), trio.open_nursery() as nursery:
            nursery.start_soon(fail, ValueError("one"))
            nursery.start_soon(fail, KeyError("two"))
    assert pytest.RaisesGroup(
        pytest.RaisesExc(ValueError, match="^one$"),
        pytest.RaisesExc(KeyError, match="^'two'$"),
        flatten_subgroups=True,
    ).matches(caught.value.__cause__)


async def test_event_timestamps_come_from_the_wall_clock_option(autojump_clock) -> None:
    times = iter([100.0, 101.0, 102.0, 103.0, 104.0])
    async with open_hub(wall_clock=lambda: next(times)) as hub:
        run = await hub.start(Script().emit())
        await run.wait()
        events = events_of(await collect(hub, run.id))
    # created 100, the token 101, ended_at 102, the terminal event 103
    assert [e.timestamp for e in events] == [101.0, 103.0]
    assert (run.created_at, run.ended_at) == (100.0, 102.0)
    assert isinstance(events[0], Event)
