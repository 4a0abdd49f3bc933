"""The idle timer of serve's Hypercorn connections (trio_streams/cli/_idle_timer.py), on a MockClock.

Hypercorn calls ``restart`` when the connection becomes idle and ``stop``
when a request starts; the timer closes it once idle for the timeout, or idle
when the server stops. Exact clock assertions; the real connection is
covered by tests/test_serve_shutdown.py (an idle kept-alive connection closed
after ``keep_alive_timeout``) and tests/test_one_write.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import EventWrapper

from trio_streams.cli._idle_timer import BUSY_CHECK, IdleTimer

if TYPE_CHECKING:
    from trio.testing import MockClock

TIMEOUT = 5.0


class Connection:
    def __init__(self) -> None:
        self.terminated = EventWrapper()
        self.closed_at: list[float] = []
        self.timer = IdleTimer(TIMEOUT, self.terminated, self.close)

    async def close(self) -> None:
        self.closed_at.append(trio.current_time())
        await trio.lowlevel.checkpoint()


async def test_idle_for_the_timeout_closes_and_each_restart_moves_the_deadline(
    autojump_clock: trio.testing.MockClock,
):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)  # t=0
        await trio.sleep(3)
        await connection.timer.restart(group, None)  # t=3: the deadline moves to 8
    assert connection.closed_at == [3 + TIMEOUT]


async def test_a_request_in_progress_is_never_timed_out(autojump_clock: MockClock):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)
        await trio.sleep(1)
        await connection.timer.stop()  # t=1: busy
        await trio.sleep(100)
        assert connection.closed_at == []
        await connection.timer.restart(group, None)  # t=101: idle again
    assert connection.closed_at == [101 + TIMEOUT]


async def test_a_long_request_holds_no_task_and_the_next_idle_spell_gets_one(autojump_clock: MockClock):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)
        await connection.timer.stop()  # t=0: a stream starts
        await trio.sleep(BUSY_CHECK + 1)
        assert timer_tasks() == 0  # (its task ended at BUSY_CHECK)
        await connection.timer.restart(group, None)  # t=BUSY_CHECK+1: idle again
        await trio.lowlevel.checkpoint()
        assert timer_tasks() == 1
    assert connection.closed_at == [BUSY_CHECK + 1 + TIMEOUT]


def timer_tasks() -> int:
    """Tasks running the timer, under the test's task."""
    task = trio.lowlevel.current_task()
    return sum(
        child.name.endswith("IdleTimer._watch")
        for nursery in task.child_nurseries
        for sub in nursery.child_tasks
        for child in [sub, *(grand for n in sub.child_nurseries for grand in n.child_tasks)]
    )


async def test_the_server_stopping_closes_an_idle_connection_at_once(autojump_clock: MockClock):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)
        await trio.sleep(2)
        await connection.terminated.set()
    assert connection.closed_at == [2]


async def test_the_server_stopping_closes_a_busy_connection_when_its_request_ends(
    autojump_clock: trio.testing.MockClock,
):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)
        await connection.timer.stop()
        await trio.sleep(1)
        await connection.terminated.set()  # t=1, busy
        await trio.sleep(10)
        assert connection.closed_at == []
        await connection.timer.restart(group, None)  # t=11: the request ended
    assert connection.closed_at == [11]


async def test_the_connection_ending_ends_the_timer_without_a_close(autojump_clock: MockClock):
    connection = Connection()
    async with TaskGroup() as group:
        await connection.timer.restart(group, None)
        await connection.timer.stop()  # busy: no deadline at all
        await trio.sleep(1)
        connection.timer.end()
    assert connection.closed_at == []
    assert trio.current_time() == 1  # the task group did not wait for anything
