"""Wake-ups for a log's readers: one notifier, and the live-reads latch.

Theory of operation
-------------------
A reader of a log (a run's subscription, a Durable Streams long-poll or SSE
response) checks for data after its cursor and, finding none, waits on the
log's :class:`Changed`; whatever changes the log (an append, a close, a
deletion) calls :meth:`Changed.notify`, which wakes every waiter at once. A
reader's check and its wait happen with no checkpoint in between (trio runs
one task at a time), so no change can fall between them: no lost wake-up,
no polling. A notify with nobody waiting costs one test of the lot, so
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

    The parking lot is made on the first wait, so a log nobody waits on
    (a finished run's store record, a stream nobody follows) costs one slot.
    A notify with nobody parked costs one test of the lot: a producer that
    publishes many events per step wakes its readers once, on the first, and
    the rest find nobody parked (the readers are runnable and will read
    everything when they run).
    """

    __slots__ = ("_armed", "_lot")

    def __init__(self) -> None:
        self._lot: trio.lowlevel.ParkingLot | None = None
        # True from a wait() until the next notify(): someone may be parked.
        # Set by every waiter before it parks, cleared only by the notify
        # that wakes everyone parked, so it is never False while anyone is
        # parked (a cancelled waiter leaves it True: one notify then finds
        # the lot empty). Not a count: a count would need each waiter's own
        # code to run when it leaves, which a cancel delivers only later,
        # after other tasks may have parked. An attribute, not the lot's
        # truth (ParkingLot.__bool__ is a Python call, on every publish).
        self._armed = False

    def notify(self) -> None:
        """Wake every waiter (none: nothing happens). Synchronous, never blocks."""
        if self._armed:
            self._armed = False
            lot = self._lot
            assert lot is not None
            lot.unpark_all()

    async def wait(self) -> None:
        """Wait until the next :meth:`notify`.

        Check the condition first, with no checkpoint between the check and
        this call; then a change cannot be missed.

        Cancellation: only the wait is cancelled.
        """
        lot = self._lot
        if lot is None:
            lot = self._lot = trio.lowlevel.ParkingLot()
        self._armed = True
        await lot.park()

    @property
    def waiting(self) -> int:
        """How many tasks wait now (parked, not yet woken)."""
        return 0 if self._lot is None else len(self._lot)


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
