"""trio_streams/_parking.py: trio's wait_task_rescheduled and wait_readable, with none of their
frames held while parked.

The waits on a MockClock (autojump_threshold=0, exact times); the readable waits on a real
socket pair under a trio deadline. The pins (the trio internals relied on) fail if trio changes.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

import outcome
import pytest
import trio
import trio.testing

from trio_streams import _parking
from trio_streams._parking import Parking, ReadableWait, readable

if TYPE_CHECKING:
    from collections.abc import Iterator

DEADLINE = 1000  # of mock time
REAL_DEADLINE = 10  # seconds, for the socket tests

linux = pytest.mark.skipif(sys.platform != "linux", reason="trio's epoll I/O manager")


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _Wait(Parking[int]):
    """A parked task and what its abort saw."""

    __slots__ = ("aborted", "task")

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.aborted = 0

    def __call__(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self.aborted += 1
        return trio.lowlevel.Abort.SUCCEEDED


def _awaiting(task: trio.lowlevel.Task) -> Iterator[object]:
    """What ``task``'s coroutine chain awaits, outermost first (each awaited object in turn)."""
    awaited: object = task.coro
    while awaited is not None:
        yield awaited
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


def _reading() -> int:
    """Tasks waiting for a readable fd (trio's count; the test runner may have its own)."""
    return trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read  # type: ignore[no-any-return,attr-defined]


def test_only_a_checked_trio_release_is_trusted_with_its_internals() -> None:
    assert _parking.checked("0.35.0")
    assert _parking.checked("0.35.1")
    assert not _parking.checked("0.36.0")
    assert not _parking.checked("0.3.5")
    assert not _parking.checked("1.0")


def test_pinned_trio_internals() -> None:
    """The internals it relies on are there (else it falls back: same semantics, more bytes).

    On a trio release not in ``CHECKED_TRIO``, the fallback is what is chosen (to use the lean
    waits there, read that release's internals, listed in the module docstring, and add it)."""
    if not _parking.checked(trio.__version__):
        assert vars(_parking)["_Message"] is None
        assert vars(_parking)["_Epoll"] is None
        return
    message = vars(_parking)["_Message"]
    assert message is not None
    assert message.__name__ == "WaitTaskRescheduled"
    if sys.platform == "linux":
        assert vars(_parking)["_Epoll"] is not None


async def test_the_await_gives_the_value_it_is_rescheduled_with(mock_clock: trio.testing.MockClock) -> None:
    waits: list[_Wait] = []
    got: list[int] = []

    async def waiter() -> None:
        wait = _Wait()
        waits.append(wait)
        got.append(await wait)

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            (wait,) = waits
            # Parked on the Parking itself: no coroutine or generator of trio's below it.
            assert list(_awaiting(wait.task))[-1] is wait
            await trio.sleep(5)
            trio.lowlevel.reschedule(wait.task, outcome.Value(7))
    assert got == [7]
    assert trio.current_time() == 5
    assert wait.aborted == 0


async def test_an_error_it_is_rescheduled_with_is_raised_at_the_await(
    mock_clock: trio.testing.MockClock,
) -> None:
    waits: list[_Wait] = []

    async def waiter() -> None:
        wait = _Wait()
        waits.append(wait)
        with pytest.raises(KeyError, match="gone"):
            await wait

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.reschedule(waits[0].task, outcome.Error(KeyError("gone")))


async def test_cancelled_while_parked_it_aborts_once_and_raises(mock_clock: trio.testing.MockClock) -> None:
    wait: _Wait | None = None
    with trio.fail_after(DEADLINE):
        with trio.move_on_after(3) as scope:
            wait = _Wait()
            await wait
    assert scope.cancelled_caught
    assert wait is not None
    assert wait.aborted == 1
    assert trio.current_time() == 3


async def test_cancelled_before_it_parks_it_aborts_at_once(mock_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(DEADLINE):
        with trio.CancelScope() as scope:
            scope.cancel()
            wait = _Wait()
            await wait
    assert scope.cancelled_caught
    assert wait.aborted == 1
    assert trio.current_time() == 0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@linux
async def test_readable_wakes_once_data_arrives(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    woken = trio.Event()
    tasks: list[trio.lowlevel.Task] = []

    async def reader() -> None:
        tasks.append(trio.lowlevel.current_task())
        wait = readable(a.fileno())
        assert isinstance(wait, ReadableWait)
        await wait
        woken.set()

    with trio.fail_after(REAL_DEADLINE):
        before = _reading()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert not woken.is_set()
            # Parked on its ReadableWait: none of wait_readable's coroutines held.
            assert type(list(_awaiting(tasks[0]))[-1]) is ReadableWait
            assert _reading() == before + 1
            b.send(b"x")
            await woken.wait()
        assert _reading() == before
    assert a.recv(1) == b"x"


@linux
async def test_readable_cancelled_unregisters_so_the_fd_can_be_waited_for_again(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    with trio.fail_after(REAL_DEADLINE):
        before = _reading()
        with trio.CancelScope() as scope:
            wait = readable(a.fileno())
            assert wait is not None
            scope.cancel()
            await wait
        assert scope.cancelled_caught
        assert _reading() == before
        b.send(b"y")
        await trio.lowlevel.wait_readable(a)  # not busy: the cancelled wait left
    assert a.recv(1) == b"y"


@linux
async def test_readable_is_busy_while_another_task_waits(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with trio.fail_after(REAL_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.lowlevel.wait_readable, a)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                readable(a.fileno())
            b.send(b"z")


@linux
async def test_readable_raises_closed_when_another_task_notifies_closing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    raised: list[BaseException] = []

    async def reader() -> None:
        wait = readable(a.fileno())
        assert wait is not None
        try:
            await wait
        except trio.ClosedResourceError as exc:
            raised.append(exc)

    with trio.fail_after(REAL_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.notify_closing(a)
    assert len(raised) == 1


async def test_the_fallback_to_trios_public_waits_has_the_same_semantics(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[socket.socket, socket.socket]
) -> None:
    """What another trio gets: ``Parking`` awaits ``wait_task_rescheduled``, ``readable`` is None."""
    monkeypatch.setattr(_parking, "_Message", None)
    monkeypatch.setattr(_parking, "_Epoll", None)
    left, _right = pair
    got: list[int] = []
    with trio.fail_after(REAL_DEADLINE):
        assert readable(left.fileno()) is None
        async with trio.open_nursery() as nursery:
            waits: list[_Wait] = []

            async def park() -> None:
                wait = _Wait()
                waits.append(wait)
                got.append(await wait)

            nursery.start_soon(park)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.reschedule(waits[0].task, outcome.Value(7))
        assert got == [7]
        with trio.move_on_after(0.01) as scope:
            await _Wait()
        assert scope.cancelled_caught
