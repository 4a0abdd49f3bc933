"""ReplayLog: the bounded, shared history of one run (sans-I/O).

Theory of operation
-------------------
Events are appended in seq order to a Python list. Trimming never copies: it
advances ``_head``, the index of the oldest retained event, and the list is
compacted only once the dead prefix is at least half of it, so appends and
trims are O(1) amortized and the memory held is at most twice the bound.

Every subscriber of a run reads the same log by cursor ("everything after
seq N") and takes what is new as one list slice. Nothing is copied per
subscriber and nothing is queued per subscriber: a slow subscriber simply has
an older cursor. When its cursor falls behind the trimmed head it is told so
(:meth:`ReplayLog.read_after` reports how many it missed).

Durability
----------
A log whose store writes behind (``RedisStore``: events are queued and
flushed in batches) must not trim an event the store cannot serve yet: a
subscriber that falls behind the trimmed head reads the store, and an event
that is in neither would be reported as a ``Gap`` although it was never
lost. So such a store *holds* the log (:meth:`ReplayLog.hold`): from then on
the log trims only events with ``seq <= durable_seq``, and the store calls
:meth:`ReplayLog.mark_durable` after each flush, which advances the mark and
trims what the bounds no longer allow. Events above the bounds wait for
that flush; their bytes are the store's not-yet-durable data, bounded (and
counted) by the store, not by the log: :attr:`pending_nbytes` says how many
of the retained bytes that is, so a process-wide budget counts each event
once. A log nobody holds (``MemoryStore``, whose ``append_nowait`` makes the
event readable at once; a mirror, whose events came from the store) trims
to its bounds alone.

Invariants:
- ``first_seq .. last_seq`` are retained, contiguous, in order.
- The newest event is never trimmed, so a run's terminal event, which is last,
  is always retained.
- Every trimmed event was durable (``seq <= durable_seq``) when it was trimmed.
- ``len(self) <= max_events`` and ``nbytes <= max_bytes`` after every append
  and every :meth:`mark_durable`, except for the newest event (kept even if
  it alone exceeds ``max_bytes``) and for events not yet durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._events import Event

# Compact the list when the dead prefix is at least this long *and* at least
# half of the list; below it the slice-delete costs more than it saves.
_COMPACT_MIN = 256


@dataclass(frozen=True, slots=True)
class ReplayLogStatistics:
    """A snapshot of one log's size."""

    events: int
    nbytes: int
    first_seq: int
    last_seq: int
    trimmed: int
    #: Retained bytes the store has not made durable yet (counted by the store).
    pending_nbytes: int = 0
    #: The highest seq the store has made durable (``last_seq`` if nobody holds the log).
    durable_seq: int = 0


class ReplayLog:
    """Bounded history of one run's events, by count and by bytes.

    Args:
        max_events: retain at most this many events (at least 1).
        max_bytes: retain at most about this many bytes (see :attr:`Event.size`).
    """

    __slots__ = (
        "__weakref__",
        "_durable",
        "_events",
        "_head",
        "_nbytes",
        "_pending_nbytes",
        "last_seq",
        "max_bytes",
        "max_events",
        "trimmed",
    )

    def __init__(self, *, max_events: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: list[Event] = []
        self._head = 0
        self._nbytes = 0
        #: seq of the newest event appended (0 before the first).
        self.last_seq = 0
        #: how many events were trimmed from the head so far.
        self.trimmed = 0
        # None: nobody holds the log (every appended event is durable).
        self._durable: int | None = None
        self._pending_nbytes = 0

    def __len__(self) -> int:
        return len(self._events) - self._head

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the retained events."""
        return self._nbytes

    @property
    def pending_nbytes(self) -> int:
        """Bytes of retained events the store has not made durable yet.

        The store counts them against its own bound (not-yet-durable data);
        the log's own share of a memory budget is ``nbytes - pending_nbytes``.
        """
        return self._pending_nbytes

    @property
    def durable_seq(self) -> int:
        """The highest seq the store has made durable (``last_seq`` when nobody holds the log)."""
        return self.last_seq if self._durable is None else self._durable

    @property
    def first_seq(self) -> int:
        """Seq of the oldest retained event (``last_seq + 1`` when empty)."""
        return self.last_seq - len(self) + 1

    def append(self, event: Event) -> None:
        """Append the next event and trim the head to the bounds.

        Raises:
            ValueError: ``event.seq`` is not ``last_seq + 1``.
        """
        if event.seq != self.last_seq + 1:
            raise ValueError(f"expected seq {self.last_seq + 1}, got {event.seq}")
        self._events.append(event)
        self.last_seq = event.seq
        size = event.size
        self._nbytes += size
        if self._durable is not None and event.seq > self._durable:
            self._pending_nbytes += size
        if len(self) > self.max_events or self._nbytes > self.max_bytes:
            self._trim()

    def hold(self) -> None:
        """Trim from now on only what :meth:`mark_durable` has released.

        Called by a store that writes behind, before the run's first event;
        events already in the log count as durable. Idempotent.
        """
        if self._durable is None:
            self._durable = self.last_seq

    def mark_durable(self, seq: int) -> None:
        """The store has made every event up to ``seq`` durable (or settled:
        it will never have them, e.g. a run another instance fenced off).

        Trims what the bounds no longer allow. ``seq`` may be beyond
        ``last_seq`` (a terminal event is made durable before it is
        revealed); a mark never moves back. No effect on a log nobody holds.
        """
        durable = self._durable
        if durable is None or seq <= durable:
            return
        self._durable = seq
        # Events durable now that were pending: their bytes leave the store's count.
        first = self.first_seq
        start = max(durable + 1, first)
        stop = min(seq, self.last_seq)
        if start <= stop:
            events = self._events
            base = self._head - first
            self._pending_nbytes -= sum(events[base + n].size for n in range(start, stop + 1))
        if len(self) > self.max_events or self._nbytes > self.max_bytes:
            self._trim()

    def release(self) -> None:
        """Nobody holds the log any more: trim to the bounds alone.

        For a run the store will never record (it refused the run's start):
        nothing of it is pending, so nothing is counted as pending.
        """
        self._durable = None
        self._pending_nbytes = 0
        if len(self) > self.max_events or self._nbytes > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        events = self._events
        head = self._head
        retained = len(events) - head
        # Never trim an event the store cannot serve yet (see "Durability").
        limit = len(events) if self._durable is None else self._head + self._durable - self.first_seq + 1
        while retained > 1 and head < limit and (retained > self.max_events or self._nbytes > self.max_bytes):
            self._nbytes -= events[head].size
            head += 1
            retained -= 1
        self.trimmed += head - self._head
        if head >= _COMPACT_MIN and head * 2 >= len(events):
            del events[:head]
            head = 0
        self._head = head

    def read_after(self, after: int, limit: int | None = None) -> list[Event]:
        """Return retained events with ``seq > after``, oldest first.

        If ``after + 1 < first_seq`` the events in between were trimmed; the
        result then starts at :attr:`first_seq` and the caller must report
        the gap (``first_seq - after - 1`` missed).

        Args:
            after: the cursor: the last seq the reader already has.
            limit: return at most this many events.
        """
        first = self.first_seq
        start = after + 1 if after >= first else first
        if start > self.last_seq:
            return []
        index = self._head + (start - first)
        if limit is None:
            return self._events[index:]
        return self._events[index : index + limit]

    def statistics(self) -> ReplayLogStatistics:
        """Sizes of the log now."""
        return ReplayLogStatistics(
            len(self),
            self._nbytes,
            self.first_seq,
            self.last_seq,
            self.trimmed,
            self._pending_nbytes,
            self.durable_seq,
        )
