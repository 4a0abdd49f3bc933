"""Wake-ups for a log's readers: one notifier, and the live-reads latch.

Theory of operation
-------------------
A reader of a log (a run's subscription, a Durable Streams long-poll or SSE
response) checks for data after its cursor and, finding none, waits on the
log's :class:`Changed`; whatever changes the log (an append, a close, a
deletion) calls :meth:`Changed.notify`, which wakes every waiter at once. A
reader's check and its wait happen with no checkpoint in between (trio runs
one task at a time), so no change can fall between them: no lost wake-up,
no polling. A notify with nobody waiting costs one test of its waiters, so
writers notify on every change and readers take everything new as one slice.

:class:`LiveReads` is the latch a store closes at shutdown: every live read
returns at once (it is woken, and sees the latch closed) and later ones do
not wait, so a server stopping does not sit out long-poll timeouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable


class Changed:
    """Wakes every task waiting for a log to change.

    The waiters' set is made on the first wait, so a log nobody waits on
    (a finished run's store record, a stream nobody follows) costs one slot.
    A notify with nobody waiting costs one truth test of that set: a
    producer that publishes many events per step wakes its readers once, on
    the first, and the rest find nobody waiting (the readers are runnable
    and will read everything when they run).

    It is trio's ``ParkingLot`` reduced to what a log needs (park, wake
    all), on the same low-level primitives (``wait_task_rescheduled``,
    ``reschedule``): a wake-up is one ``reschedule`` per waiter, without the
    lot's generator and per-call bookkeeping, which a producer of one event
    per step pays on every event.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        # Insertion-ordered: waiters wake in the order they began to wait.
        self._waiters: dict[trio.lowlevel.Task, None] | None = None

    @trio.lowlevel.enable_ki_protection
    def notify(self) -> None:
        """Wake every waiter (none: nothing happens). Synchronous, never blocks."""
        waiters = self._waiters
        if waiters:
            # A new set for whoever waits next: those woken now are not in it,
            # and a cancelled waiter left its set when the cancel was delivered.
            self._waiters = {}
            reschedule = trio.lowlevel.reschedule
            for task in waiters:
                reschedule(task)

    @trio.lowlevel.enable_ki_protection
    async def wait(self) -> None:
        """Wait until the next :meth:`notify`.

        Check the condition first, with no checkpoint between the check and
        this call; then a change cannot be missed.

        Cancellation: only the wait is cancelled (the waiter leaves the set
        when the cancel is delivered, before anything else runs).
        """
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = {}
        task = trio.lowlevel.current_task()
        waiters[task] = None

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # Still waiting, so no notify has replaced the set it is in.
            del waiters[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def park(self, task: trio.lowlevel.Task) -> None:
        """Add ``task`` to the waiters; its caller parks it (:mod:`._deadlines`: a timed wait)."""
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = {}
        waiters[task] = None

    def unpark(self, task: trio.lowlevel.Task) -> bool:
        """Take ``task`` out of the waiters; False if it is not there (a notify woke it)."""
        waiters = self._waiters
        if waiters and task in waiters:
            del waiters[task]
            return True
        return False

    @property
    def waiting(self) -> int:
        """How many tasks wait now (not yet woken)."""
        return 0 if self._waiters is None else len(self._waiters)


class LiveReads:
    """The live-reads latch of a store: open, until shutdown ends live reads.

    Args:
        wake_all: wakes every reader waiting anywhere in the store (each then
            checks :attr:`open` and returns).
    """

    __slots__ = ("_open", "_wake_all")

    def __init__(self, wake_all: Callable[[], None]) -> None:
        self._open = True
        self._wake_all = wake_all

    @property
    def open(self) -> bool:
        """False between :meth:`end` and :meth:`resume`."""
        return self._open

    def end(self) -> None:
        """For shutdown: every wait returns now, and later ones do not wait.

        Long-polls then answer at once and SSE responses end; clients resume
        elsewhere (or after the restart) from their last offset.
        """
        self._open = False
        self._wake_all()

    def resume(self) -> None:
        """Live reads wait again (a store served again after a stop)."""
        self._open = True
