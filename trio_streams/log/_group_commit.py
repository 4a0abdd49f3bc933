"""Group commit: what arrives for one log while its flush is in flight shares the next flush.

Theory of operation
-------------------
A :class:`CommitQueue` is the write queue of one log (the runs' Redis
pipeline, one Durable Stream) and the discipline that drains it; what one
flush sends and what its result means belong to the owner, who supplies
``flush``. Both Redis writers use it: ``log.redis._writer.RedisWriter`` and
``durable.redis._batch.GroupCommit``.

- :meth:`CommitQueue.push` queues an item and never blocks (no checkpoint).
- If no committer task is running, ``push`` starts one in the nursery the
  owner attached: the first item after a quiet spell is flushed at once (on
  the scheduler's next pass, once the pushing task checkpoints) -- there is
  no timer on the path, so group commit adds no latency when idle.
- The committer takes everything queued, up to ``max_items`` items and about
  ``max_bytes`` bytes (always at least one item; it stops once the bytes
  taken reach ``max_bytes``), and awaits ``flush(batch)``. Whatever is pushed
  meanwhile waits, and goes together in the next batch: concurrent appends
  share one round trip. The committer ends when the queue is empty.
- Opt-in lingering (``linger > 0``, the runs writer's ``flush_interval``):
  before a batch of fewer than ``linger_items`` items the committer waits up
  to ``linger`` seconds for more, cut short by a push that fills the batch or
  by :meth:`urge` (someone waits for durability).

Invariants: at most one committer per queue, so batches are flushed one at
a time, in push order. The queue holds what the owner admitted: each owner
bounds what it pushes (in items and bytes) before pushing, and refuses the
rest; this module bounds each batch.

Errors and cancellation: ``flush`` decides, answers and retries by itself;
an exception it raises is a bug and propagates into the owner's nursery
(the items of that batch are the owner's to account for). When the
committer is cancelled (its nursery closes), the batch in flight is
``flush``'s to clean up, and the items still queued go to ``abandon`` if the
owner gave one (else they stay queued, for a committer started later).

Pure trio, no Redis: the same core can serve any store.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


class CommitQueue(Generic[T]):
    """One log's queue of items and the committer that drains it (module docstring).

    Args:
        flush: sends one batch (a non-empty list, in push order) and settles
            it; called by the committer only, never twice at a time.
        size: an item's size in bytes, for ``max_bytes``.
        max_items: items per batch, at most (``None``: no item bound).
        max_bytes: a batch stops taking items once it holds this many bytes.
        linger: seconds to wait for a fuller batch before flushing (0: never wait).
        linger_items: with ``linger``, a batch of this many items goes at once.
        abandon: takes the items still queued when the committer is cancelled.
        on_idle: called when the committer ends (the queue is empty, or it
            was cancelled), so an owner can drop a queue nobody uses.

    Raises:
        ValueError: a bound is not positive, or ``linger`` is negative.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[None]],
        *,
        size: Callable[[T], int],
        max_items: int | None = None,
        max_bytes: int,
        linger: float = 0.0,
        linger_items: int = 1,
        abandon: Callable[[list[T]], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        if max_bytes < 1 or linger_items < 1 or (max_items is not None and max_items < 1):
            raise ValueError("the group commit bounds must be positive")
        if not 0 <= linger < float("inf"):
            raise ValueError(f"linger must be a finite number of seconds >= 0, not {linger}")
        self._flush = flush
        self._size = size
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._linger = linger
        self._linger_items = linger_items
        self._abandon = abandon
        self._on_idle = on_idle
        self._queue: deque[T] = deque()
        self._nursery: trio.Nursery | None = None
        self._running = False
        # Lingering: the committer is parked waiting for a fuller batch.
        self._lingering = False
        self._urgent = False
        self._wake = trio.lowlevel.ParkingLot()
        #: Batches flushed (each ``flush`` call that returned).
        self.batches = 0

    def __len__(self) -> int:
        """Items queued, not yet taken into a batch."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        """A committer task is running (a batch is in flight, or about to be)."""
        return self._running

    def attach(self, nursery: trio.Nursery | None) -> None:
        """Run the committer in ``nursery`` from now on (``None``: queue only).

        Items queued meanwhile are flushed at once once a nursery is attached.
        """
        self._nursery = nursery
        if nursery is not None and self._queue and not self._running:
            self._start(nursery)

    def push(self, item: T) -> None:
        """Queue ``item`` for the next batch; start a committer if none runs.

        No checkpoint. The owner has bounded what it pushes (see the module
        docstring).
        """
        self._queue.append(item)
        if self._running:
            if self._lingering and len(self._queue) >= self._linger_items:
                self._stop_lingering()
        elif self._nursery is not None:
            self._start(self._nursery)

    def withdraw(self, item: T) -> bool:
        """Remove ``item`` if it is still queued (not taken into a batch).

        Returns:
            True if it was removed (it will never be flushed); False if it
            was taken already, or abandoned.
        """
        queue = self._queue
        for index, queued in enumerate(queue):
            if queued is item:
                del queue[index]
                return True
        return False

    def urge(self) -> None:
        """Flush without lingering: now if the committer waits, else after its flush."""
        if self._linger > 0:
            self._urgent = True
            if self._lingering:
                self._stop_lingering()

    def take(self) -> list[T]:
        """Take the next batch off the queue, within the batch bounds (at least
        one item if any is queued). The committer's step, public for tests."""
        queue = self._queue
        size = self._size
        max_items = self.max_items
        max_bytes = self.max_bytes
        batch: list[T] = []
        nbytes = 0
        while queue and nbytes < max_bytes and (max_items is None or len(batch) < max_items):
            item = queue.popleft()
            nbytes += size(item)
            batch.append(item)
        return batch

    def _start(self, nursery: trio.Nursery) -> None:
        self._running = True
        nursery.start_soon(self._commit)

    def _stop_lingering(self) -> None:
        self._lingering = False
        self._wake.unpark_all()

    async def _linger_for_more(self) -> None:
        """Wait up to ``linger`` for a batch of ``linger_items``, unless urged."""
        if self._urgent or len(self._queue) >= self._linger_items:
            return
        self._lingering = True
        try:
            with trio.move_on_after(self._linger):
                await self._wake.park()
        finally:
            self._lingering = False

    async def _commit(self) -> None:
        """Flush batch after batch until the queue is empty.

        Cancellation: the batch in flight is ``flush``'s to clean up; the
        items still queued go to ``abandon`` (or stay queued).
        """
        try:
            while self._queue:
                if self._linger > 0:
                    await self._linger_for_more()
                    self._urgent = False
                batch = self.take()
                if batch:
                    await self._flush(batch)
                    self.batches += 1
        finally:
            self._running = False
            if self._queue and self._abandon is not None:
                left = list(self._queue)
                self._queue.clear()
                self._abandon(left)
            if self._on_idle is not None:
                self._on_idle()
