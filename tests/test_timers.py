"""Timers as trio deadlines: eviction, watchdog, input limit, max age, capacity."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams import AtCapacity, RunStatus, open_hub
from trio_streams.runs._timers import TimerQueue
from trio_streams.testing import Gate, Script, collect, types_of


async def at(time: float) -> None:
    """Advance to ``time`` and let every task (the timer task too) settle."""
    await trio.sleep_until(time)
    await trio.testing.wait_all_tasks_blocked()


async def test_eviction_at_exactly_the_grace_period_and_not_before(autojump_clock) -> None:
    async with open_hub(grace_period=180.0) as hub:
        run = await hub.start(Script().sleep(1))
        await run.wait()
        await at(180.999)
        assert hub.get(run.id) is run
        await at(181.0)
        assert hub.get(run.id) is None
        # Evicted from memory, still served in full from the store.
        assert types_of(await collect(hub, run.id)) == ["done"]
        assert (await hub.get_info(run.id)).status == RunStatus.DONE


async def test_a_subscriber_holds_off_eviction_and_leaving_rearms_it(autojump_clock) -> None:
    async with open_hub(grace_period=10.0) as hub:
        run = await hub.start(Script().emit())
        await run.wait()
        async with hub.subscribe(run.id, after=2):
            await at(50)
            assert hub.get(run.id) is run
        await at(59.999)
        assert hub.get(run.id) is run
        await at(60)
        assert hub.get(run.id) is None


async def test_a_stale_timer_never_evicts(autojump_clock) -> None:
    async with open_hub(grace_period=10.0) as hub:
        old = await hub.start(Script().emit(), key="conv")
        await old.wait()  # its eviction is armed for t=10
        await at(5)
        async with hub.subscribe(old.id, after=2):
            pass  # re-armed for t=15: the t=10 timer is stale now
        new = await hub.start(Script().sleep(100), key="conv")
        await at(10)
        assert hub.get(old.id) is old
        await at(15)
        assert hub.get(old.id) is None
        assert hub.get(new.id) is new
        assert hub.current("conv", owner=None) is new


async def test_grace_period_zero_evicts_at_once(autojump_clock) -> None:
    async with open_hub(grace_period=0) as hub:
        run = await hub.start(Script().emit())
        await run.wait()
        assert hub.get(run.id) is None
        assert types_of(await collect(hub, run.id)) == ["token", "done"]


async def test_no_event_watchdog_ends_the_run_dead(autojump_clock) -> None:
    gate = Gate()
    async with open_hub(no_event_timeout=30.0) as hub:
        run = await hub.start(Script().emit_many(3, every=2.0).wait(gate))
        info = await run.wait()
    assert trio.current_time() == 4.0 + 30.0
    assert (info.status, info.result, info.partial) == (RunStatus.DEAD, "t0t1t2", True)
    assert info.error == {"code": "no_events", "message": "no event for 30.0s"}


async def test_awaiting_input_uses_the_longer_limit(autojump_clock) -> None:
    gate = Gate()
    async with open_hub(no_event_timeout=30.0, input_timeout=3600.0) as hub:
        run = await hub.start(Script().emit().await_input(gate).emit().sleep(100))
        await gate.reached()
        await at(1000)
        assert run.awaiting_input
        assert run.status == RunStatus.RUNNING
        gate.release()  # the human answered at t=1000
        info = await run.wait()
    # After the answer, the 30 s watchdog applies again: the 100 s sleep is fatal.
    assert trio.current_time() == 1030.0
    assert info.status == RunStatus.DEAD


async def test_awaiting_input_past_its_limit_is_dead(autojump_clock) -> None:
    gate = Gate()
    async with open_hub(no_event_timeout=30.0, input_timeout=3600.0) as hub:
        run = await hub.start(Script().emit().await_input(gate))
        info = await run.wait()
    assert (trio.current_time(), info.status) == (3600.0, RunStatus.DEAD)


async def test_max_age_cancels_with_its_own_reason(autojump_clock) -> None:
    async with open_hub(max_age=100.0) as hub:
        run = await hub.start(Script().emit_many(1000, every=10.0))
        info = await run.wait()
    assert trio.current_time() == 100.0
    assert (info.status, info.reason, info.result) == (
        RunStatus.CANCELLED,
        "max_age",
        "t0t1t2t3t4t5t6t7t8t9",
    )  # the deadline beats the emit due at t=100


async def test_max_age_counts_from_the_start_not_the_queueing(autojump_clock) -> None:
    async with open_hub(max_age=100.0) as hub:
        await hub.start(Script().sleep(50), key="k")
        queued = await hub.start(Script().sleep(80), key="k", on_conflict="enqueue")
        info = await queued.wait()
    assert (info.status, trio.current_time()) == (RunStatus.DONE, 130.0)


async def test_max_runs_evicts_the_oldest_finished_run(autojump_clock) -> None:
    async with open_hub(max_runs=3) as hub:
        finished = [await hub.start(Script().emit()) for _ in range(2)]
        for run in finished:
            await run.wait()
        live = await hub.start(Script().sleep(100))
        fourth = await hub.start(Script().sleep(100))
        assert hub.get(finished[0].id) is None
        assert hub.get(finished[1].id) is finished[1]
        assert {hub.get(live.id), hub.get(fourth.id)} == {live, fourth}
        await hub.start(Script().sleep(100))  # evicts finished[1]
        with pytest.raises(AtCapacity) as caught:
            await hub.start(Script())  # all three are live
        assert caught.value.limit == "max_runs"


async def test_max_runs_can_refuse_instead_of_evicting(autojump_clock) -> None:
    async with open_hub(max_runs=1, evict_finished_when_full=False) as hub:
        run = await hub.start(Script().emit())
        await run.wait()
        with pytest.raises(AtCapacity):
            await hub.start(Script())


async def test_per_owner_cap(autojump_clock) -> None:
    async with open_hub(max_live_runs_per_owner=2) as hub:
        gate = Gate()
        a = await hub.start(Script().wait(gate), owner="ann")
        await hub.start(Script().wait(gate), owner="ann")
        with pytest.raises(AtCapacity) as caught:
            await hub.start(Script(), owner="ann")
        assert caught.value.limit == "max_live_runs_per_owner"
        await hub.start(Script(), owner="bob")
        gate.release()
        await a.wait()
        await trio.testing.wait_all_tasks_blocked()
        await hub.start(Script(), owner="ann")


async def test_timer_queue_orders_fires_once_and_honours_cancel(autojump_clock) -> None:
    timers = TimerQueue()
    fired: list[tuple[str, float]] = []

    def note(name: str):  # type: ignore[no-untyped-def]
        return lambda: fired.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        timers.call_at(10, note("late"))
        cancelled = timers.call_at(5, note("cancelled"))
        timers.call_at(3, note("early"))  # earlier than the one it sleeps for
        cancelled.cancel()
        assert len(timers) == 2
        await at(20)
        timers.call_after(1, note("again"))
        await at(30)
        nursery.cancel_scope.cancel()
    assert fired == [("early", 3.0), ("late", 10.0), ("again", 21.0)]
