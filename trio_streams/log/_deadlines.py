"""One timer for many deadlines: timed waits on a :class:`~._wakeup.Changed` without a cancel scope each.

Theory of operation
-------------------
An idle SSE response waits for its stream to change, or for its recycle
deadline (``sse_recycle``). With ``trio.move_on_at`` each such wait holds a
``CancelScope`` and its ``CancelStatus`` (two sets): about 0.7 KB per idle
connection, plus the frames of the coroutines around it. Here a waiter
parks itself on the ``Changed`` and in its deadline's *bucket*, the whole
second (of trio's clock) its deadline falls in, rounded up. One timer task,
:meth:`DeadlineWheel.run`, wakes a bucket's waiters when its second
comes: a deadline is kept late by less than one ``resolution``, never
early.

A waiter is woken once, by whichever comes first:

- a ``notify``: the ``Changed`` replaced its waiters' set, so the timer, which
  wakes only tasks still in the current set, skips it; it leaves its bucket
  when it runs (:meth:`DeadlineWheel.woken`);
- its bucket's time: the timer takes it out of the ``Changed`` first, so no
  notify reschedules it again;
- a cancellation: the abort (the :class:`TimedWait` itself) takes it out of
  the ``Changed``, and it leaves its bucket as it unwinds.

When the timer stops (its server stops), it wakes every waiter left: each
checks its condition again, and waits on without the wheel.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import outcome
import trio

from .._parking import Parking

if TYPE_CHECKING:
    from ._wakeup import Changed

_Abort = trio.lowlevel.Abort


class TimedWait(Parking["bool | None"]):
    """One task parked on a ``Changed`` and in a bucket; also the abort of its wait, and what
    its task awaits (:class:`~trio_streams._parking.Parking`: no frames of trio's held)."""

    __slots__ = ("bucket", "changed", "task")

    def __init__(self, task: trio.lowlevel.Task, changed: Changed, bucket: float) -> None:
        self.task = task
        self.changed = changed
        self.bucket = bucket

    def __call__(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        # Cancelled while parked: out of the Changed now (it is in it still); out of its
        # bucket in the waiter's ``finally`` (DeadlineWheel.woken).
        self.changed.unpark(self.task)
        return _Abort.SUCCEEDED


class DeadlineWheel:
    """Deadlines in buckets of ``resolution`` seconds, one timer for them all (:meth:`run`)."""

    __slots__ = ("_buckets", "_open", "_resolution", "_timer")

    def __init__(self, resolution: float = 1.0) -> None:
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, not {resolution}")
        self._resolution = resolution
        # bucket time -> its waiters (insertion-ordered: woken in the order they parked)
        self._buckets: dict[float, dict[TimedWait, None]] = {}
        self._timer: trio.CancelScope | None = None
        self._open = True

    @property
    def open(self) -> bool:
        """False once its timer has stopped: park no more (wait some other way)."""
        return self._open

    @property
    def buckets(self) -> dict[float, int]:
        """Each bucket's time and how many wait in it (for tests and gauges)."""
        return {at: len(waits) for at, waits in self._buckets.items()}

    @trio.lowlevel.enable_ki_protection
    def park(self, changed: Changed, deadline: float) -> TimedWait:
        """Park the current task on ``changed`` until its notify or ``deadline`` (rounded up).

        Synchronous: check the condition, call this, then at once
        ``await trio.lowlevel.wait_task_rescheduled(wait)`` with what it
        returns (or ``await`` it: the same, with no frames of trio's held
        while parked), and :meth:`woken` after (``finally``). Use :meth:`wait`
        unless a frame per waiter matters.
        """
        if not self._open:
            raise RuntimeError("the deadline wheel has stopped")
        resolution = self._resolution
        # (An infinite deadline, as trio.move_on_at takes: a bucket never due.)
        at = deadline if deadline == math.inf else math.ceil(deadline / resolution) * resolution
        task = trio.lowlevel.current_task()
        wait = TimedWait(task, changed, at)
        changed.park(task)
        bucket = self._buckets.get(at)
        if bucket is None:
            bucket = self._buckets[at] = {}
            timer = self._timer
            if timer is not None and at < timer.deadline:
                timer.deadline = at
        bucket[wait] = None
        return wait

    @trio.lowlevel.enable_ki_protection
    def woken(self, wait: TimedWait) -> None:
        """``wait`` is over: out of its bucket (nothing if it already is)."""
        bucket = self._buckets.get(wait.bucket)
        if bucket is not None and bucket.pop(wait, False) is None and not bucket:
            del self._buckets[wait.bucket]

    async def wait(self, changed: Changed, deadline: float) -> bool:
        """Wait for ``changed``'s next notify, or until ``deadline`` (late by under ``resolution``).

        Returns True if the deadline woke it (the wait task's result is its
        reason: ``True`` from the timer; ``None`` from a notify, ``False`` from
        the timer stopping).

        Cancellation: only the wait is cancelled.
        """
        wait = self.park(changed, deadline)
        try:
            return await wait is True
        finally:
            self.woken(wait)

    async def run(self) -> None:
        """The timer: wakes each bucket at its time, until cancelled; then wakes every waiter left."""
        try:
            while True:
                with trio.CancelScope(deadline=min(self._buckets, default=math.inf)) as timer:
                    self._timer = timer
                    await trio.sleep_forever()
                self._timer = None
                self.wake_due(trio.current_time())
        finally:
            self._timer = None
            self._open = False
            buckets, self._buckets = self._buckets, {}
            for bucket in buckets.values():
                self._wake(bucket, timed=False)

    @trio.lowlevel.enable_ki_protection
    def wake_due(self, now: float) -> None:
        """Wake the waiters of every bucket due at ``now`` (the timer's step)."""
        for at in sorted(at for at in self._buckets if at <= now):
            self._wake(self._buckets.pop(at), timed=True)

    @trio.lowlevel.enable_ki_protection
    def _wake(self, bucket: dict[TimedWait, None], *, timed: bool) -> None:
        reschedule = trio.lowlevel.reschedule
        for wait in bucket:
            # Not in the Changed's set: a notify woke it already.
            if wait.changed.unpark(wait.task):
                reschedule(wait.task, outcome.Value(timed))


_WHEEL: trio.lowlevel.RunVar[DeadlineWheel | None] = trio.lowlevel.RunVar(
    "trio_streams.deadlines", default=None
)


def current_wheel() -> DeadlineWheel | None:
    """The wheel of this trio run while one runs (:func:`run_wheel`), else None."""
    return _WHEEL.get()


async def run_wheel(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run this trio run's :class:`DeadlineWheel` until cancelled (``nursery.start`` it).

    A second call while one runs returns at once: the first one's serves
    all (a server in a run that has one already). When it stops, its
    waiters are woken and wait on without it.
    """
    if _WHEEL.get() is not None:
        task_status.started()
        return
    wheel = DeadlineWheel()
    _WHEEL.set(wheel)
    try:
        task_status.started()
        await wheel.run()
    finally:
        _WHEEL.set(None)
