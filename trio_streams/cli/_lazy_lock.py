"""A lock whose parking lot is made only under contention (a connection's send lock).

Hypercorn's ``TCPServer`` holds a ``trio.Lock`` per connection for its socket
writes: the lock, its ``ParkingLot`` and the lot's ``OrderedDict``, ~370 B
that an idle connection (an event stream) holds for its whole life. Writes to
one connection rarely overlap, so :class:`LazyLock` is an owner slot, and the
lot is made the first time a second task has to wait. Same semantics as
``trio.Lock`` (what ``async with`` uses of it): acquiring is a checkpoint;
ownership is handed to the longest waiter on release (FIFO, no barging); a
release by a task that does not hold it is a ``RuntimeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from types import TracebackType


class LazyLock:
    """``trio.Lock``'s ``async with``, with no parking lot until someone waits."""

    __slots__ = ("_lot", "_owner")

    def __init__(self) -> None:
        self._owner: trio.lowlevel.Task | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None

    def locked(self) -> bool:
        return self._owner is not None

    @trio.lowlevel.enable_ki_protection
    async def acquire(self) -> None:
        """Acquire it, waiting (FIFO) if it is held. A checkpoint, as ``trio.Lock``'s.

        Cancellation: while waiting, only the wait is cancelled (not acquired).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        if self._owner is task:
            raise RuntimeError("attempt to re-acquire an already held LazyLock")
        if self._owner is None and not self._lot:
            self._owner = task
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        lot = self._lot
        if lot is None:
            lot = self._lot = trio.lowlevel.ParkingLot()
        # Ownership is handed over by release (to this task), before it runs again.
        await lot.park()

    @trio.lowlevel.enable_ki_protection
    def release(self) -> None:
        """Release it: to the longest waiter if any. Raises RuntimeError if not held by this task."""
        if self._owner is not trio.lowlevel.current_task():
            raise RuntimeError("can't release a LazyLock you don't own")
        lot = self._lot
        if lot:
            (self._owner,) = lot.unpark(count=1)
        else:
            self._owner = None

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
