"""LazyLock (cli/_lazy_lock.py): trio.Lock's semantics, a parking lot only under contention.

On a MockClock (autojump_threshold=0): the times asserted are exact.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams.cli._lazy_lock import LazyLock

DEADLINE = 1000  # of mock time


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_uncontended_it_makes_no_lot_and_is_a_checkpoint(mock_clock: trio.testing.MockClock) -> None:
    lock = LazyLock()
    with trio.fail_after(DEADLINE):
        for _ in range(3):
            async with lock:
                assert lock.locked()
        assert not lock.locked()
        assert lock._lot is None
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await lock.acquire()
        assert not lock.locked()


async def test_exclusive_and_handed_over_in_fifo_order(mock_clock: trio.testing.MockClock) -> None:
    lock = LazyLock()
    held: list[tuple[str, float]] = []
    inside = 0

    async def writer(name: str, start: float) -> None:
        nonlocal inside
        await trio.sleep_until(start)
        async with lock:
            inside += 1
            assert inside == 1  # exclusive
            held.append((name, trio.current_time()))
            await trio.sleep(10)
            inside -= 1

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, "a", 0.0)
            nursery.start_soon(writer, "c", 2.0)
            nursery.start_soon(writer, "b", 1.0)
            nursery.start_soon(writer, "d", 10.0)  # comes as a's release hands over to b: no barging
    assert held == [("a", 0.0), ("b", 10.0), ("c", 20.0), ("d", 30.0)]
    assert not lock.locked()


async def test_a_cancelled_waiter_does_not_get_it(mock_clock: trio.testing.MockClock) -> None:
    lock = LazyLock()
    got: list[str] = []

    async def waiter(name: str) -> None:
        async with lock:
            got.append(name)

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await lock.acquire()
            async with trio.open_nursery() as cancelled:
                cancelled.start_soon(waiter, "cancelled")
                await trio.testing.wait_all_tasks_blocked()
                cancelled.cancel_scope.cancel()
            nursery.start_soon(waiter, "next")
            await trio.testing.wait_all_tasks_blocked()
            lock.release()
    assert got == ["next"]
    assert not lock.locked()


async def test_misuse_is_an_error(mock_clock: trio.testing.MockClock) -> None:
    lock = LazyLock()
    with pytest.raises(RuntimeError):
        lock.release()
    with trio.fail_after(DEADLINE):
        await lock.acquire()
        with pytest.raises(RuntimeError):
            await lock.acquire()
        async with trio.open_nursery() as nursery:

            async def other() -> None:
                with pytest.raises(RuntimeError):
                    lock.release()

            nursery.start_soon(other)
        lock.release()
