"""A bounded queue of a request's ASGI ``receive`` messages, lighter than a trio memory channel.

Hypercorn's trio worker hands each request's messages to its app task over
a memory channel: two channel objects (a set each), their shared state (a
``deque`` whose first block is ~0.7 KB, two ``OrderedDict`` of waiting
tasks), ~1.7 KB held for as long as the request lasts -- an idle event
stream's whole life. :class:`AppQueue` keeps the same promises for the way
the server uses it (one producer at a time in practice, any number allowed;
the app's ``receive`` as consumer): bounded, a ``send`` that waits while it
is full, a ``receive`` that waits while it is empty, each a checkpoint as
trio's; the waiting tasks' parking lots are made only when someone waits,
and its buffer is a list (an idle stream holds an empty one).

It has trio's ``receive_nowait`` (``trio.WouldBlock`` when empty), which
:class:`~._asgi.Exchange` uses as it uses a memory channel's. Never closed
(nor are Hypercorn's channels).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class AppQueue(Generic[T]):
    """A bounded FIFO of messages (see the module docstring).

    Args:
        max_size: messages it holds at most (``send`` waits beyond); at least 1.

    Raises:
        ValueError: ``max_size`` is below 1.
    """

    __slots__ = ("_getters", "_items", "_max", "_putters")

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("AppQueue needs room for one message at least")
        self._max = max_size
        self._items: list[T] = []
        self._getters: trio.lowlevel.ParkingLot | None = None
        self._putters: trio.lowlevel.ParkingLot | None = None

    def send_nowait(self, item: T) -> None:
        """Add ``item`` (no I/O). Raises ``trio.WouldBlock`` when full."""
        if len(self._items) >= self._max:
            raise trio.WouldBlock
        self._items.append(item)
        if self._getters is not None:
            self._getters.unpark()

    def receive_nowait(self) -> T:
        """The oldest message (no I/O). Raises ``trio.WouldBlock`` when empty."""
        items = self._items
        if not items:
            raise trio.WouldBlock
        item = items.pop(0)
        if self._putters is not None:
            self._putters.unpark()
        return item

    async def send(self, item: T) -> None:
        """Add ``item``, waiting while the queue is full. Cancellation: nothing is added."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.send_nowait(item)
            except trio.WouldBlock:
                if self._putters is None:
                    self._putters = trio.lowlevel.ParkingLot()
                await self._putters.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return

    async def receive(self) -> T:
        """The oldest message, waiting while there is none. Cancellation: nothing is taken."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                if self._getters is None:
                    self._getters = trio.lowlevel.ParkingLot()
                await self._getters.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
