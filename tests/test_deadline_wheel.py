"""The shared deadline wheel (log/_deadlines.py): timed waits on a Changed with one timer.

All on a MockClock (autojump_threshold=0): the times asserted are exact.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams.log._deadlines import DeadlineWheel, current_wheel, run_wheel
from trio_streams.log._wakeup import Changed

DEADLINE = 1000  # of mock time: every test is over well before it


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _timed(
    wheel: DeadlineWheel, changed: Changed, deadline: float, woken: list[tuple[str, float]], name: str
) -> None:
    timed = await wheel.wait(changed, deadline)
    woken.append((name if timed else f"{name} (not timed)", trio.current_time()))


async def test_deadlines_of_one_second_share_its_wakeup(mock_clock: trio.testing.MockClock) -> None:
    wheel = DeadlineWheel()
    changed = Changed()
    woken: list[tuple[str, float]] = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_timed, wheel, changed, 10.2, woken, "a")
                waiters.start_soon(_timed, wheel, changed, 10.7, woken, "b")
                waiters.start_soon(_timed, wheel, changed, 11.5, woken, "c")
                await trio.testing.wait_all_tasks_blocked()
                assert wheel.buckets == {11.0: 2, 12.0: 1}
                assert changed.waiting == 3
            nursery.cancel_scope.cancel()
    # Late by under a second, never early; one bucket per second (a and b: in one batch,
    # which trio runs in either order).
    assert sorted(woken) == [("a", 11.0), ("b", 11.0), ("c", 12.0)]
    assert wheel.buckets == {}
    assert changed.waiting == 0


async def test_an_earlier_deadline_while_the_timer_sleeps(mock_clock: trio.testing.MockClock) -> None:
    wheel = DeadlineWheel()
    changed = Changed()
    woken: list[tuple[str, float]] = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_timed, wheel, changed, 60.0, woken, "late")
                await trio.testing.wait_all_tasks_blocked()
                waiters.start_soon(_timed, wheel, changed, 3.5, woken, "early")
            nursery.cancel_scope.cancel()
    assert woken == [("early", 4.0), ("late", 60.0)]


async def test_a_notify_first_wakes_once_and_leaves_the_bucket(mock_clock: trio.testing.MockClock) -> None:
    wheel = DeadlineWheel()
    changed = Changed()
    after: list[float] = []

    async def notified_then_sleeps() -> None:
        assert not await wheel.wait(changed, 5.0)  # the notify's, not the deadline's
        after.append(trio.current_time())
        # Parked elsewhere past the old deadline: a second wake-up would end this early
        # (or crash trio's scheduler).
        await trio.sleep(20)
        after.append(trio.current_time())

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(notified_then_sleeps)
                await trio.sleep(2)
                changed.notify()
                await trio.testing.wait_all_tasks_blocked()
                assert wheel.buckets == {}
            nursery.cancel_scope.cancel()
    assert after == [2.0, 22.0]


async def test_woken_by_its_notify_and_its_bucket_in_one_batch(mock_clock: trio.testing.MockClock) -> None:
    # The notify and the timer's step both come before the waiter runs: it is woken once.
    wheel = DeadlineWheel()  # no timer: its step is taken here, with no checkpoint after the notify
    changed = Changed()
    after: list[float] = []

    async def waiter() -> None:
        await wheel.wait(changed, 4.5)
        after.append(trio.current_time())
        await trio.sleep(10)  # a second wake-up would end this early (or crash the scheduler)
        after.append(trio.current_time())

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(2)
            assert wheel.buckets == {5.0: 1}
            changed.notify()
            wheel.wake_due(10.0)
            assert wheel.buckets == {}
    assert after == [2.0, 12.0]


async def test_a_cancelled_wait_leaves_the_changed_and_its_bucket(mock_clock: trio.testing.MockClock) -> None:
    wheel = DeadlineWheel()
    changed = Changed()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            with trio.move_on_after(3) as scope:
                await wheel.wait(changed, 30.0)
            assert scope.cancelled_caught
            assert trio.current_time() == 3.0
            assert changed.waiting == 0
            assert wheel.buckets == {}
            nursery.cancel_scope.cancel()


async def test_the_timer_stopping_wakes_every_waiter(mock_clock: trio.testing.MockClock) -> None:
    changed = Changed()
    woken: list[tuple[str, float]] = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as waiters:
            async with trio.open_nursery() as timer:
                await timer.start(run_wheel)
                wheel = current_wheel()
                assert wheel is not None
                waiters.start_soon(_timed, wheel, changed, 50.0, woken, "a")
                await trio.sleep(7)
                timer.cancel_scope.cancel()
            assert current_wheel() is None
            assert not wheel.open
    assert woken == [("a (not timed)", 7.0)]
    assert changed.waiting == 0
    with pytest.raises(RuntimeError):
        wheel.park(changed, 60.0)


async def test_one_wheel_per_run(mock_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_wheel)
            first = current_wheel()
            await nursery.start(run_wheel)  # a second server of the run: shares it
            assert current_wheel() is first
            nursery.cancel_scope.cancel()
    assert current_wheel() is None


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadlineWheel(0)


async def test_an_infinite_deadline_waits_for_a_notify(mock_clock: trio.testing.MockClock) -> None:
    # No deadline (an sse_recycle or heartbeat of math.inf, as trio.move_on_at takes): parked
    # until the notify, and the timer never wakes for it.
    wheel = DeadlineWheel()
    changed = Changed()
    woken: list[tuple[str, float]] = []
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_timed, wheel, changed, float("inf"), woken, "forever")
                await trio.testing.wait_all_tasks_blocked()
                assert wheel.buckets == {float("inf"): 1}
                await trio.sleep(500)
                assert woken == []
                changed.notify()
            nursery.cancel_scope.cancel()
    assert woken == [("forever (not timed)", 500.0)]
    assert wheel.buckets == {}
