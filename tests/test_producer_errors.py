"""How a run ends when its producer raises from its own nursery (issue 12, item 6).

A producer that runs child tasks raises an ``ExceptionGroup``; exactly one
``RunFailed`` or ``StoreOverflow`` in it (``Cancelled`` set aside) must end
the run as it would alone, and several errors end it with the generic
``producer_error``, every one of them logged. All on the MockClock.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trio_streams import MemoryStore, RunContext, RunFailed, RunStatus, StoreOverflow, open_hub
from trio_streams.testing import collect, events_of

if TYPE_CHECKING:
    from trio_streams import Event


async def test_run_failed_in_a_child_task_ends_the_run_with_its_message(stream_hub, autojump_clock) -> None:
    async def producer(ctx: RunContext) -> None:
        async def child() -> None:
            await trio.sleep(2)
            raise RunFailed("the upstream model refused", code="x")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep_forever)  # a sibling: cancelled, not an error
            await ctx.emit("token", "a")

    run = await stream_hub.start(producer)
    info = await run.wait()
    assert info.status == RunStatus.ERROR
    assert info.error == {"code": "x", "message": "the upstream model refused"}
    assert trio.current_time() == 2.0
    terminal = events_of(await collect(stream_hub, run.id))[-1]
    assert (terminal.type, terminal.data["error"]["code"]) == ("error", "x")


async def test_run_failed_nested_two_nurseries_deep_still_speaks_for_the_run(
    stream_hub, autojump_clock
) -> None:
    async def grandchild() -> None:
        await trio.sleep(1)
        raise RunFailed("deep", code="nested")

    async def child() -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(grandchild)

    async def producer(ctx: RunContext) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    info = await (await stream_hub.start(producer)).wait()
    assert info.error == {"code": "nested", "message": "deep"}


class _FullStore(MemoryStore):
    """A store whose write buffer is full after the first event (as a RedisStore's is during an outage)."""

    def append_nowait(self, run_id: str, event: Event) -> None:
        if not event.terminal and event.seq > 1:
            raise StoreOverflow("the buffer is full")
        super().append_nowait(run_id, event)


async def test_store_overflow_in_a_child_task_ends_the_run_as_store_overflow(autojump_clock) -> None:
    async def producer(ctx: RunContext) -> None:
        async def child() -> None:
            for index in range(5):
                await ctx.emit("token", index)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    async with open_hub(_FullStore()) as hub:
        run = await hub.start(producer)
        info = await run.wait()
    assert info.status == RunStatus.ERROR
    assert info.error == {"code": "store_overflow", "message": "the store could not keep up"}
    assert info.last_seq == 2  # the one event the store took, then the terminal


async def test_two_errors_end_the_run_with_the_generic_error_and_both_are_logged(
    stream_hub, autojump_clock, caplog
) -> None:
    async def first() -> None:
        await trio.sleep(1)
        raise RunFailed("first secret=abc", code="x")

    async def second() -> None:
        try:
            await trio.sleep_forever()
        finally:  # cancelled by the first error, it fails too
            raise ValueError("second secret=xyz")

    async def producer(ctx: RunContext) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            nursery.start_soon(second)

    caplog.set_level(logging.ERROR, logger="trio_streams")
    info = await (await stream_hub.start(producer)).wait()
    assert info.status == RunStatus.ERROR
    # Neither error speaks for the run: picking one would hide the other.
    assert info.error == {"code": "producer_error", "message": "the producer failed (several errors)"}
    [record] = [r for r in caplog.records if "several errors" in r.getMessage()]
    assert record.getMessage().endswith("RunFailed, ValueError")
    assert "first secret=abc" in caplog.text
    assert "second secret=xyz" in caplog.text  # both tracebacks, in the log only
    terminal = events_of(await collect(stream_hub, info.run_id))[-1]
    assert "secret" not in terminal.data_json


async def test_a_plain_error_in_a_child_is_the_generic_error_naming_its_type(
    stream_hub, autojump_clock, caplog
) -> None:
    async def producer(ctx: RunContext) -> None:
        async def child() -> None:
            raise KeyError("k")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    info = await (await stream_hub.start(producer)).wait()
    assert info.error == {"code": "producer_error", "message": "the producer failed (KeyError)"}
    assert "KeyError" in caplog.text


async def test_a_cancel_while_a_child_fails_still_ends_the_run_cancelled(stream_hub, autojump_clock) -> None:
    """A cancel reaching the run's scope is caught there; the child's error is not the outcome."""
    started = trio.Event()

    async def producer(ctx: RunContext) -> None:
        async def child() -> None:
            try:
                started.set()
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    run = await stream_hub.start(producer)
    await started.wait()
    await stream_hub.cancel(run.id, reason="user")
    info = await run.wait()
    assert (info.status, info.reason) == (RunStatus.CANCELLED, "user")


async def test_closing_the_hub_while_a_child_fails_keeps_the_error(autojump_clock) -> None:
    """The hub's block is cancelled by an outer scope while a child of the
    producer fails with RunFailed: the run records that error, and the outer
    scope still sees its cancellation. (Whether the drain task itself
    re-raises its Cancelled part is not observable from here: the hub's
    nursery is cancelled as a whole either way.)
    """
    outcome: list[RunStatus] = []
    with trio.CancelScope() as outer:
        async with open_hub() as hub:

            async def producer(ctx: RunContext) -> None:
                async def child() -> None:
                    try:
                        await trio.sleep_forever()
                    finally:
                        raise RunFailed("gave up while closing", code="closing")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(child)

            run = await hub.start(producer)
            await trio.testing.wait_all_tasks_blocked()
            outer.cancel()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    outcome.append((await run.wait()).status)
    assert outer.cancelled_caught
    assert outcome == [RunStatus.ERROR]
    assert run.error == {"code": "closing", "message": "gave up while closing"}


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_beside_run_failed_is_never_turned_into_an_error(
    autojump_clock, exc_type: type[BaseException]
) -> None:
    """Several errors, one of them not an Exception: the group propagates as it is.

    Not an ``error`` event, and not a ``TrioStreamsInternalError`` (an
    ordinary Exception) from ``open_hub`` either.
    """

    async def interrupts() -> None:
        await trio.sleep(1)
        raise exc_type

    async def fails_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise RunFailed("also", code="y")

    async def producer(ctx: RunContext) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(interrupts)
            nursery.start_soon(fails_when_cancelled)

    # The mock clock jumps: a wrong outcome fails at once instead of hanging.
    with trio.fail_after(60), pytest.RaisesGroup(exc_type, RunFailed, flatten_subgroups=True):
        async with open_hub() as hub:
            run = await hub.start(producer)
            await trio.sleep_forever()
    assert run.status is RunStatus.CANCELLED
    assert run.error is None


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_alone_in_a_child_propagates_as_itself(
    autojump_clock, exc_type: type[BaseException]
) -> None:
    async def producer(ctx: RunContext) -> None:
        async def child() -> None:
            await trio.sleep(1)
            raise exc_type

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    with trio.fail_after(60), pytest.raises(exc_type):
        async with open_hub() as hub:
            run = await hub.start(producer)
            await trio.sleep_forever()
    assert run.status is RunStatus.CANCELLED
