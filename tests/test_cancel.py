"""Abort: partial results, shielded cleanup under deadlines, and the order of the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from trio_streams import MemoryStore, RunClosed, RunContext, RunOutcome, RunStatus, open_hub
from trio_streams.testing import Gate, Script, assert_well_formed, collect, events_of, types_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def test_cancel_before_the_first_event(stream_hub, autojump_clock) -> None:
    script = Script().emit_many(3)
    run = await stream_hub.start(script)
    assert await stream_hub.cancel(run.id) == RunStatus.RUNNING
    info = await run.wait()
    assert info.status == RunStatus.CANCELLED
    assert info.reason == "cancelled"
    assert not script.started.is_set()  # the producer never ran
    assert types_of(await collect(stream_hub, run.id)) == ["cancelled"]
    assert trio.current_time() == 0.0


async def test_cancel_while_blocked_saves_partial_and_publishes_cancelled_last(
    stream_hub, autojump_clock
) -> None:
    gate = Gate()
    script = Script().emit_many(3, every=1.0).wait(gate)
    run = await stream_hub.start(script)
    await gate.reached()
    await trio.sleep(10)
    await stream_hub.cancel(run.id, reason="user pressed stop")
    info = await run.wait()
    assert script.cancelled_at == 12.0
    assert (info.status, info.result, info.partial, info.reason) == (
        RunStatus.CANCELLED,
        "t0t1t2",
        True,
        "user pressed stop",
    )
    items = await collect(stream_hub, run.id)
    assert_well_formed(items)
    assert events_of(items)[-1].data == {"result": "t0t1t2", "partial": True, "reason": "user pressed stop"}


async def test_cleanup_runs_shielded_and_the_terminal_waits_for_it(stream_hub, autojump_clock) -> None:
    gate = Gate()
    script = Script().emit().wait(gate).on_cancel(cleanup_time=2.0, save="saved partial")
    run = await stream_hub.start(script)
    await gate.reached()
    await stream_hub.cancel(run.id)
    async with stream_hub.subscribe(run.id, after=1) as subscription:
        (terminal,) = events_of(await subscription.receive_batch())
        assert trio.current_time() == 2.0
    assert script.cleanup_done_at == 2.0
    assert terminal.data["result"] == "saved partial"


async def test_cleanup_past_the_finalize_deadline_is_cut_short(autojump_clock) -> None:
    gate = Gate()
    script = Script().wait(gate).on_cancel(cleanup_time=100.0, save="never")
    async with open_hub(finalize_timeout=5.0) as hub:
        run = await hub.start(script)
        await gate.reached()
        await hub.cancel(run.id)
        info = await run.wait()
    assert trio.current_time() == 5.0
    assert script.cleanup_done_at is None
    assert info.status == RunStatus.CANCELLED
    assert info.result is None


async def test_producer_slow_to_honour_cancel_delays_the_end(stream_hub, autojump_clock) -> None:
    gate = Gate()
    script = Script().wait(gate).on_cancel(ignore_for=3.0, save="late")
    run = await stream_hub.start(script)
    await gate.reached()
    await stream_hub.cancel(run.id)
    info = await run.wait()
    assert trio.current_time() == 3.0
    assert info.result == "late"


async def test_async_generator_cleanup_delays_the_terminal(stream_hub, autojump_clock) -> None:
    # A generator's finally runs while Cancelled unwinds through its frame,
    # so it shields its own awaits (documented on Producer).
    cleaned: list[float] = []

    async def tokens() -> AsyncIterator[Any]:
        try:
            for i in range(100):
                yield ("token", i)
                await trio.sleep(1)
        finally:
            with trio.move_on_after(10, shield=True):
                await trio.sleep(1.5)  # e.g. closing an upstream HTTP response
                cleaned.append(trio.current_time())

    run = await stream_hub.start(tokens())
    await trio.sleep(2.5)
    await stream_hub.cancel(run.id)
    info = await run.wait()
    assert cleaned == [4.0]
    assert info.status == RunStatus.CANCELLED
    assert info.ended_at == 4.0


async def test_on_finish_runs_before_the_terminal_event_with_the_outcome(autojump_clock) -> None:
    seen: list[tuple[float, RunOutcome, int]] = []

    async def save_partial(run: Any, outcome: RunOutcome) -> None:
        await trio.sleep(3)  # a database write
        seen.append((trio.current_time(), outcome, run.last_seq))

    gate = Gate()
    async with open_hub(on_finish=save_partial) as hub:
        run = await hub.start(Script().emit_many(2).wait(gate))
        await gate.reached()
        await trio.sleep(1)
        await hub.cancel(run.id)
        async with hub.subscribe(run.id, after=2) as subscription:
            (terminal,) = events_of(await subscription.receive_batch())
            assert trio.current_time() == 4.0
    assert seen == [(4.0, RunOutcome(RunStatus.CANCELLED, "t0t1", True, "cancelled", None), 2)]
    assert terminal.type == "cancelled"


async def test_a_hanging_on_finish_hook_is_cut_at_its_deadline(autojump_clock) -> None:
    async def hangs(run: Any, outcome: RunOutcome) -> None:
        await trio.sleep_forever()

    gate = Gate()
    async with open_hub(on_finish=hangs, finalize_timeout=10.0) as hub:
        run = await hub.start(Script().emit().wait(gate))
        await gate.reached()
        await hub.cancel(run.id)
        info = await run.wait()
    assert trio.current_time() == 10.0
    assert info.status == RunStatus.CANCELLED
    assert info.finalize_error == "on_finish did not finish within 10.0s"


async def test_per_run_hook_runs_after_the_hubs(autojump_clock) -> None:
    order: list[str] = []

    async def hub_hook(run: Any, outcome: RunOutcome) -> None:
        order.append("hub")

    async def run_hook(run: Any, outcome: RunOutcome) -> None:
        order.append(f"run:{outcome.status}")

    async with open_hub(on_finish=hub_hook) as hub:
        await (await hub.start(Script().emit(), on_finish=run_hook)).wait()
    assert order == ["hub", "run:done"]


async def test_a_second_cancel_during_finalization_changes_nothing(stream_hub, autojump_clock) -> None:
    gate = Gate()
    script = Script().wait(gate).on_cancel(cleanup_time=4.0, save="p")
    run = await stream_hub.start(script)
    await gate.reached()
    await stream_hub.cancel(run.id, reason="first")
    await trio.sleep(1)
    assert await stream_hub.cancel(run.id, reason="second") == RunStatus.RUNNING
    info = await run.wait()
    assert trio.current_time() == 4.0
    assert (info.reason, info.result) == ("first", "p")
    assert types_of(await collect(stream_hub, run.id)) == ["cancelled"]


async def test_hub_shutdown_during_finalization_lets_it_finish(autojump_clock) -> None:
    store = MemoryStore()
    gate = Gate()
    script = Script().emit().wait(gate).on_cancel(cleanup_time=4.0, save="partial")
    async with open_hub(store) as hub:
        run = await hub.start(script)
        await gate.reached()
        await hub.cancel(run.id)
        await trio.sleep(1)
        # leave the block mid-cleanup
    assert trio.current_time() == 4.0
    info = await store.get_run(run.id)
    assert info is not None
    assert (info.status, info.result, info.reason) == (RunStatus.CANCELLED, "partial", "cancelled")
    stored = await store.read_events(run.id, 0, 10)
    assert types_of(stored) == ["token", "cancelled"]


async def test_hub_shutdown_cancels_live_runs_and_saves_their_partial_results(autojump_clock) -> None:
    store = MemoryStore()
    async with open_hub(store) as hub:
        runs = [await hub.start(Script().emit_many(100, every=1.0)) for _ in range(3)]
        queued = await hub.start(Script().emit(), key="k")
        behind = await hub.start(Script().emit(), key="k", on_conflict="enqueue")
        await trio.sleep(2.5)
    assert trio.current_time() == 2.5
    for run in runs:
        info = await store.get_run(run.id)
        assert info is not None
        assert (info.status, info.reason, info.result, info.partial) == (
            RunStatus.CANCELLED,
            "hub_closed",
            "t0t1t2",
            True,
        )
    assert (await store.get_run(queued.id)).status == RunStatus.DONE  # type: ignore[union-attr]
    assert (await store.get_run(behind.id)).status in (RunStatus.DONE, RunStatus.CANCELLED)  # type: ignore[union-attr]


async def test_an_outer_cancel_of_the_hub_block_finalizes_runs(autojump_clock) -> None:
    store = MemoryStore()
    with trio.move_on_after(5) as outer:
        async with open_hub(store) as hub:
            run = await hub.start(Script().emit_many(100, every=1.0).on_cancel(cleanup_time=1.0))
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert trio.current_time() == 6.0  # 5 s, then 1 s of shielded cleanup
    info = await store.get_run(run.id)
    assert info is not None
    assert (info.status, info.reason) == (RunStatus.CANCELLED, "hub_closed")


async def test_cancelling_a_finished_run_reports_its_status(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit())
    await run.wait()
    assert await stream_hub.cancel(run.id) == RunStatus.DONE
    assert (await stream_hub.get_info(run.id)).status == RunStatus.DONE
    assert run.last_seq == 2


async def test_a_stale_producer_cannot_write_into_anything(stream_hub, autojump_clock) -> None:
    contexts: list[RunContext] = []

    async def producer(ctx: RunContext) -> None:
        contexts.append(ctx)
        await ctx.emit("token", ctx.input)
        await trio.sleep_forever()

    old = await stream_hub.start(producer, key="conv", input="old")
    await trio.testing.wait_all_tasks_blocked()
    new = await stream_hub.start(producer, key="conv", input="new", on_conflict="interrupt")
    await old.wait()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(RunClosed):
        await contexts[0].emit("token", "late")
    with pytest.raises(RunClosed):
        contexts[0].emit_nowait("token", "late")
    assert [e.data for e in new.log.read_after(0)] == ["new"]
    assert old.last_seq == 2


async def test_cancel_reason_is_visible_to_the_producer(stream_hub, autojump_clock) -> None:
    reasons: list[str | None] = []

    async def producer(ctx: RunContext) -> None:
        reasons.append(ctx.cancel_reason)
        try:
            await trio.sleep_forever()
        finally:
            reasons.append(ctx.cancel_reason)

    run = await stream_hub.start(producer)
    await trio.testing.wait_all_tasks_blocked()
    await stream_hub.cancel(run.id, reason="budget exceeded")
    await run.wait()
    assert reasons == [None, "budget exceeded"]


async def test_emit_is_a_checkpoint_and_a_cancelled_run_publishes_nothing_more(
    stream_hub, autojump_clock
) -> None:
    done = trio.Event()

    async def producer(ctx: RunContext) -> None:
        with trio.testing.assert_checkpoints():
            await ctx.emit("token", 1)
        ctx._run._request_cancel("test")
        try:
            await ctx.emit("token", 2)
        finally:
            done.set()

    run = await stream_hub.start(producer)
    await done.wait()
    await run.wait()
    assert types_of(run.log.read_after(0)) == ["token", "cancelled"]


# -- disconnect is not stop ------------------------------------------------------


async def test_default_runs_continue_when_every_subscriber_leaves(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(10, every=1.0))
    async with stream_hub.subscribe(run.id) as subscription:
        await subscription.receive_batch()
    info = await run.wait()
    assert (info.status, trio.current_time()) == (RunStatus.DONE, 9.0)


async def test_on_disconnect_cancel_fires_after_the_grace(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(100, every=1.0), on_disconnect="cancel")
    with trio.move_on_after(2.5):
        await collect(stream_hub, run.id)
    info = await run.wait()
    assert (info.status, info.reason) == (RunStatus.CANCELLED, "disconnected")
    assert trio.current_time() == 2.5 + 5.0  # the default disconnect_grace


async def test_a_reload_within_the_grace_keeps_the_run(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(20, every=1.0), on_disconnect="cancel")
    with trio.move_on_after(2.5):
        await collect(stream_hub, run.id)
    await trio.sleep(4.0)  # the page reloads...
    items = await collect(stream_hub, run.id, after=2)  # ...and resumes
    assert_well_formed(items, after=2)
    assert (await run.wait()).status == RunStatus.DONE


async def test_disconnect_grace_zero_cancels_at_once(autojump_clock) -> None:
    async with open_hub(disconnect_grace=0) as hub:
        run = await hub.start(Script().emit_many(100, every=1.0), on_disconnect="cancel")
        with trio.move_on_after(2.5):
            await collect(hub, run.id)
        info = await run.wait()
    assert (info.status, info.reason, trio.current_time()) == (RunStatus.CANCELLED, "disconnected", 2.5)


async def test_on_disconnect_cancel_needs_a_subscriber_first(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(5, every=1.0), on_disconnect="cancel")
    assert (await run.wait()).status == RunStatus.DONE


# -- the subscription's own cancellation semantics ---------------------------------


async def test_receive_cancelled_before_it_starts_consumes_nothing(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit_many(3))
    await run.wait()
    async with stream_hub.subscribe(run.id) as subscription:
        with trio.CancelScope() as scope:
            scope.cancel()
            await subscription.receive_batch()
        assert scope.cancelled_caught
        assert [e.seq for e in events_of(await subscription.receive_batch())] == [1, 2, 3, 4]


async def test_receive_cancelled_while_blocked_loses_nothing(stream_hub, autojump_clock) -> None:
    gate = Gate()
    run = await stream_hub.start(Script().emit().wait(gate).emit_many(2))
    await gate.reached()
    async with stream_hub.subscribe(run.id, after=1) as subscription, trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def blocked_reader() -> None:
            with scope:
                await subscription.receive_batch()

        nursery.start_soon(blocked_reader)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert scope.cancelled_caught
        assert len(nursery.child_tasks) == 0
        gate.release()
        assert_well_formed([item async for item in subscription], after=1)


async def test_receive_is_a_checkpoint(stream_hub, autojump_clock) -> None:
    run = await stream_hub.start(Script().emit())
    await run.wait()
    async with stream_hub.subscribe(run.id) as subscription:
        with trio.testing.assert_checkpoints():
            await subscription.receive_batch()
        subscription.close()
        with pytest.raises(trio.ClosedResourceError):
            await subscription.receive_batch()


async def test_a_run_that_is_ending_shows_its_end_all_at_once(autojump_clock) -> None:
    """While its hooks run and the store records its end, a run is still ``running``, with no
    ``ended_at``, ``partial`` or ``error`` yet: a cancel's answer said running *and* partial."""
    seen: list[tuple[RunStatus, float | None, bool]] = []
    release = trio.Event()

    async def slow_save(run: Any, outcome: RunOutcome) -> None:
        info = run.info()
        seen.append((info.status, info.ended_at, info.partial))
        await release.wait()

    gate = Gate()
    async with open_hub(on_finish=slow_save) as hub:
        run = await hub.start(Script().emit_many(2).wait(gate))
        await gate.reached()
        await hub.cancel(run.id)
        await trio.testing.wait_all_tasks_blocked()
        during = await hub.get_info(run.id)
        assert seen == [(RunStatus.RUNNING, None, False)]
        release.set()
        info = await run.wait()
    assert (during.status, during.ended_at, during.partial, during.error) == (
        RunStatus.RUNNING,
        None,
        False,
        None,
    )
    assert (info.status, info.partial, info.ended_at is not None) == (RunStatus.CANCELLED, True, True)


async def test_a_hook_s_failure_shows_with_the_run_s_end_not_before(autojump_clock) -> None:
    """The hub's ``on_finish`` raising gives the run a ``finalize_error``: it appears with the
    final status, not while the run's own hook still runs (status ``running``)."""
    release = trio.Event()

    async def failing(run: Any, outcome: RunOutcome) -> None:
        raise RuntimeError("hook broke")

    async def slow(run: Any, outcome: RunOutcome) -> None:
        await release.wait()

    async with open_hub(on_finish=failing) as hub:
        run = await hub.start(Script().emit_many(2), on_finish=slow)
        await trio.testing.wait_all_tasks_blocked()
        during = await hub.get_info(run.id)
        release.set()
        info = await run.wait()
        stored = await hub.store.get_run(run.id)
    assert (during.status, during.finalize_error) == (RunStatus.RUNNING, None)
    assert info.status is RunStatus.DONE
    assert info.finalize_error == "on_finish raised RuntimeError: hook broke"
    assert stored is not None
    assert stored.finalize_error == info.finalize_error


class _StuckFinish(MemoryStore):
    """A store that never records a run's end (an outage past the hub's ``store_timeout``)."""

    async def finish_run(self, info: Any) -> None:
        await trio.sleep_forever()


async def test_a_store_that_does_not_record_the_end_in_time_is_a_finalize_error(autojump_clock) -> None:
    """The store failing to record a run's end gave ``finalize_error``; the store taking longer
    than ``store_timeout`` gave none: the run said done, with nothing of its end being unrecorded."""
    async with open_hub(_StuckFinish(), store_timeout=3) as hub:
        run = await hub.start(Script().emit_many(2))
        start = trio.current_time()
        info = await run.wait()
    assert trio.current_time() - start == 3
    assert info.status is RunStatus.DONE
    assert info.finalize_error == "store: did not record the run's end within 3s"


async def test_a_run_whose_end_the_store_is_recording_is_still_running(autojump_clock) -> None:
    """The window the black-box pass found: while the store records the end (``ended_at`` and
    ``partial`` already set on the run), a cancel's answer said running with both."""
    gate = Gate()
    async with open_hub(_StuckFinish(), store_timeout=3) as hub:
        run = await hub.start(Script().emit_many(2).wait(gate))
        await gate.reached()
        await hub.cancel(run.id)
        await trio.sleep(1)  # (mock clock) inside the store's write, before its deadline
        during = await hub.get_info(run.id)
        info = await run.wait()
    assert (during.status, during.ended_at, during.partial) == (RunStatus.RUNNING, None, False)
    assert (info.status, info.partial, info.ended_at is not None) == (RunStatus.CANCELLED, True, True)
