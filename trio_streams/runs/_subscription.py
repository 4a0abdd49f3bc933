"""Subscription: one reader of one run -- replay, then live, then the end.

Theory of operation
-------------------
A subscription is a cursor (the last seq it delivered) into its run's shared
:class:`~trio_streams.log._replay_log.ReplayLog`. Reading takes everything after the
cursor as one slice; when there is nothing new it waits on the run's
:class:`~trio_streams.log.Changed` (a set of waiting tasks), which every publish
notifies. So there is no per-subscriber queue at all -- the bounded
resource is the log -- and a subscriber that cannot keep up never slows the
producer: it just reads a bigger slice next time. The hub counts a
subscriber the moment the subscription exists, and the cursor starts at
``after``, so nothing can fall between replay and live.

If the cursor is behind the log's trimmed head, the missing range is read
from the store; whatever the store no longer has either is reported as one
:class:`~trio_streams.log._events.Gap`, and the cursor jumps past it. A log
trims only what its store has made durable (``Store.hold_log``), so the
range behind its head is in the store unless the store's own bounds dropped
it: a ``Gap`` means the events exist nowhere any more, never "not written yet".

A finished run that the hub no longer holds is read from the store alone;
if the store drops it in the middle (a ``MemoryStore`` giving memory back),
what the reader had not read yet is one ``Gap``, and the subscription ends.

A batch holds at most ``max_items`` events and about ``max_bytes`` of them
(at least one), so what one reader holds and encodes at once is bounded
whatever the events' sizes.

Every item is delivered exactly once and in seq order; the terminal event is
the last, after which reads raise ``trio.EndOfChannel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import trio

from ..log._deadlines import current_wheel
from ..log._events import TERMINAL_TYPES, Event, Gap, Heartbeat, Item
from ..log._replay_log import cut_to_bytes
from ..log._run_info import ROLLED_BACK

if TYPE_CHECKING:
    from ..log._store import Store
    from ._run import Run, RunInfo

#: Default upper bound on one batch, in events ...
DEFAULT_BATCH = 1024
#: ... and in bytes (of ``Event.size``; at least one event).
DEFAULT_BATCH_BYTES = 1024 * 1024


class Subscription:
    """Reads one run's events after a cursor. Create it with ``hub.subscribe``.

    Iterate it (``async for item in sub``) for single items, or call
    :meth:`receive_batch` to get everything available at once (what an SSE
    writer wants: one write per batch).
    """

    def __init__(
        self,
        run_id: str,
        *,
        run: Run | None,
        stored: RunInfo | None,
        store: Store,
        after: int,
        heartbeat: float | None,
    ) -> None:
        if heartbeat is not None and heartbeat <= 0:
            raise ValueError(f"heartbeat must be positive, not {heartbeat}")
        self.run_id = run_id
        #: The seq of the last event delivered (or the ``after`` it started at).
        self.cursor = after
        self._run = run
        self._stored = stored
        self._store = store
        self._heartbeat = heartbeat
        self._ended = False
        self._closed = False
        # Items already read but not yet returned by receive().
        self._pending: list[Item] = []
        self._pending_index = 0
        self._last_activity = trio.current_time()
        #: Events delivered and gap items produced, for statistics.
        self.delivered = 0
        self.gaps = 0

    @property
    def ended(self) -> bool:
        """True once the terminal event has been delivered (or passed)."""
        return self._ended

    def close(self) -> None:
        """Stop reading; later reads raise ``trio.ClosedResourceError``. Idempotent."""
        self._closed = True

    async def receive_batch(
        self, max_items: int = DEFAULT_BATCH, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> list[Item]:
        """Return the next items: at least one, at most ``max_items`` and about
        ``max_bytes`` of events (more only if one event alone is larger).

        Blocks until there is something: events, a :class:`Gap` (history was
        trimmed), or a :class:`Heartbeat` after ``heartbeat`` idle seconds.

        Raises:
            trio.EndOfChannel: the terminal event was already delivered.
            trio.ClosedResourceError: this subscription was closed.

        Cancellation: if cancelled, nothing is consumed; the next call returns
        what this one would have.
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        run = self._run
        # Every call is a checkpoint, but one is enough. A live reader that
        # has read everything will park, and the wait is its checkpoint (a
        # cancel is delivered there, before anything is consumed): no cancel
        # check first. Otherwise check now, before consuming anything; after
        # parking, return at once rather than yield a second time.
        if (
            run is None
            or self._closed
            or self._ended
            or self._pending_index < len(self._pending)
            or self.cursor < run.log.last_seq
            or run._closed
        ):
            await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError("subscription closed")
            if self._pending_index < len(self._pending):
                start = self._pending_index
                items = self._pending[start : start + max_items]
                self._pending_index = start + len(items)
                await trio.lowlevel.cancel_shielded_checkpoint()
                return items
            if self._ended:
                raise trio.EndOfChannel
            if run is not None and self.cursor >= run.log.last_seq and not run._closed:
                items = []  # a live reader with nothing new: park (what _read would find)
            elif run is not None and self.cursor < run.log.last_seq:
                # What is new after the cursor in the log, unless the cursor is
                # behind the trimmed head: then _read (the store, a Gap, a rollback).
                cursor = self.cursor
                found = run.log.read_after(cursor, max_items, max_bytes)
                if found and found[0].seq == cursor + 1:
                    items = self._deliver(found)
                else:
                    items = await self._read(max_items, max_bytes)
            else:
                items = await self._read(max_items, max_bytes)
            if items:
                if self._heartbeat is not None:  # idle time is measured from here
                    self._last_activity = trio.current_time()
                if not parked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return items
            if self._ended:  # _read may have just ended it (mypy narrowed it above)
                continue  # type: ignore[unreachable]
            # Nothing new: wait for a publish, or a heartbeat's worth of idle.
            assert run is not None, "a stored run is finished, so never idle"
            parked = True
            if self._heartbeat is None:
                await run._wakeup.wait()
                continue
            deadline = self._last_activity + self._heartbeat
            wheel = current_wheel()
            if wheel is None or not wheel.open:
                with trio.move_on_at(deadline) as idle:
                    await run._wakeup.wait()
                idle_for_long = idle.cancelled_caught
            else:
                # serve: parked on the run's Changed and the shared deadline wheel (DeadlineWheel.wait
                # inline: no cancel scope, no frame of Changed.wait per idle stream). The heartbeat
                # comes at the deadline's second, rounded up; True is the timer's wake-up.
                wait = wheel.park(run._wakeup, deadline)
                try:
                    idle_for_long = await wait is True
                finally:
                    wheel.woken(wait)
            if idle_for_long:
                self._last_activity = trio.current_time()
                return [Heartbeat(self._last_activity)]

    async def receive(self) -> Item:
        """Return the next single item. Same errors and cancellation as :meth:`receive_batch`."""
        if self._pending_index >= len(self._pending):
            self._pending = await self.receive_batch()
            self._pending_index = 0
        else:
            await trio.lowlevel.checkpoint()
        item = self._pending[self._pending_index]
        self._pending_index += 1
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    # -- reading ----------------------------------------------------------------

    async def _read(self, max_items: int, max_bytes: int) -> list[Item]:
        """What is available after the cursor now (may be empty for a live run)."""
        run = self._run
        if run is None:
            return await self._read_stored(max_items, max_bytes)
        log = run.log
        cursor = self.cursor
        if cursor >= log.last_seq:
            # Nothing new (the common case of a live reader woken early): no slice.
            if run._closed:
                self._ended = True
            return []
        first = log.first_seq
        if cursor + 1 < first and run.reason == ROLLED_BACK:
            # Rolled back: the store is deleting that range, on purpose (not
            # a Gap); what is left to deliver is the terminal event (the log keeps it).
            return self._deliver(log.read_after(log.last_seq - 1, 1)) if run._closed else []
        if cursor + 1 < first:
            # Behind the trimmed head: the store may still have that range.
            return await self._read_stored(min(max_items, first - 1 - cursor), max_bytes, upto=first)
        return self._deliver(log.read_after(cursor, max_items, max_bytes))

    async def _read_stored(self, limit: int, max_bytes: int, upto: int | None = None) -> list[Item]:
        """Read from the store; ``upto`` is where the live log takes over."""
        events = await self._store.read_events(self.run_id, self.cursor, limit)
        events = cut_to_bytes([event for event in events if event.seq > self.cursor], max_bytes)
        items: list[Item] = []
        first = events[0].seq if events else upto
        if first is None:
            # A stored run with nothing after the cursor: it is over. If the
            # reader had not reached its end, the store dropped the rest (to
            # give memory back): say so, then end.
            self._ended = True
            stored = self._stored
            last = 0 if stored is None else stored.last_seq
            if stored is not None and self.cursor < last and stored.reason == ROLLED_BACK:
                # Deleted by a rollback while being read: its end, never a Gap.
                return self._deliver([_terminal_of(stored)])
            if self.cursor < last:
                self.gaps += 1
                gap = Gap(missed=last - self.cursor, first_available=last + 1)
                self.cursor = last
                return [gap]
            return []
        if first > self.cursor + 1:
            items.append(Gap(missed=first - self.cursor - 1, first_available=first))
            self.gaps += 1
            self.cursor = first - 1
        items.extend(self._deliver(events) if events else [])
        return items

    def _deliver(self, events: list[Event]) -> list[Item]:
        last = events[-1]
        self.cursor = last.seq
        self.delivered += len(events)
        if last.type in TERMINAL_TYPES:  # Event.terminal
            self._ended = True
        return cast("list[Item]", events)


def _terminal_of(info: RunInfo) -> Event:
    """A finished run's terminal event, rebuilt from its record (as ``finalize`` wrote it)."""
    data: dict[str, Any] = {"result": info.result}
    if info.partial:
        data["partial"] = True
    if info.reason is not None:
        data["reason"] = info.reason
    if info.error is not None:
        data["error"] = info.error
    return Event.create(info.last_seq, info.status.value, data, info.ended_at or info.created_at)
