"""TimerQueue: many one-shot deadlines served by one task.

Theory of operation
-------------------
A hub arms a timer per finished run (grace-period eviction) and per
abandoned run (disconnect grace). One task per timer would cost a task each
and a cancel scope dance to re-arm; instead timers sit in a heap and one
task sleeps until the earliest deadline (a trio deadline: no polling), runs
what is due, and sleeps again. Arming an earlier timer wakes it.

Cancelling a timer only marks it (lazy deletion): a cancelled timer never
fires, which is what makes re-arming safe -- a stale eviction can never hit
a run that was re-armed or replaced.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable


class Timer:
    """A handle to an armed callback; :meth:`cancel` makes sure it never runs."""

    __slots__ = ("callback", "cancelled", "deadline", "order")

    def __init__(self, deadline: float, order: int, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.order = order
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: Timer) -> bool:
        return (self.deadline, self.order) < (other.deadline, other.order)

    def cancel(self) -> None:
        """Disarm the timer (idempotent)."""
        self.cancelled = True


class TimerQueue:
    """One-shot callbacks at trio-clock deadlines, run by :meth:`run`."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._order = itertools.count()
        self._wakeup = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return sum(not timer.cancelled for timer in self._heap)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` (synchronously, in the queue's task) at ``deadline``."""
        timer = Timer(deadline, next(self._order), callback)
        heapq.heappush(self._heap, timer)
        if self._heap[0] is timer:
            self._wakeup.unpark_all()
        return timer

    def call_after(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` ``delay`` seconds from now."""
        return self.call_at(trio.current_time() + delay, callback)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve timers forever. Callbacks' exceptions propagate (they are bugs).

        Cancellation: stops serving; pending timers never fire.
        """
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and (heap[0].cancelled or heap[0].deadline <= now):
                timer = heapq.heappop(heap)
                if not timer.cancelled:
                    timer.cancelled = True
                    timer.callback()
            deadline = heap[0].deadline if heap else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.park()
