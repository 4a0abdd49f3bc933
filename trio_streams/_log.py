"""ReplayLog: the bounded, shared history of one run (sans-I/O).

Theory of operation
-------------------
Events are appended in seq order to a Python list. Trimming never copies: it
advances ``_head``, the index of the oldest retained event (the dead prefix
points at one shared placeholder, so trimmed events are freed at once), and
the list is compacted only once the dead prefix is at least half of it, so
appends and trims are O(1) amortized and the list holds at most twice the
bound in slots.

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

Memory
------
A log given a :class:`~trio_streams._budget.RunLedger` is one of the run's
holders there: every trim reports the new first seq, so the budget gives
back an event's bytes once no holder keeps it any more (events a store
holds the log for stay counted, once, as the log's). :meth:`ReplayLog.shrink`
(an evicted run some subscriber still reads) and :meth:`ReplayLog.discard`
(the run is gone from memory) give back the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._events import Event

if TYPE_CHECKING:
    from ._budget import RunLedger

# What the dead prefix of the list holds instead of trimmed events.
_TRIMMED: Final = Event(0, "trimmed", None, 0.0, "null")

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
        ledger: the run's memory ledger, which this log reports its trims to.
        holder: this log's name in the ledger.
    """

    __slots__ = (
        "__weakref__",
        "_durable",
        "_events",
        "_head",
        "_holder",
        "_ledger",
        "_nbytes",
        "_pending_nbytes",
        "last_seq",
        "max_bytes",
        "max_events",
        "trimmed",
    )

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        max_bytes: int = 8 * 1024 * 1024,
        ledger: RunLedger | None = None,
        holder: str = "log",
    ) -> None:
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
        self._ledger: RunLedger | None = None
        self._holder = holder
        if ledger is not None:
            self.bind(ledger, holder)

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
        events = self._events
        events.append(event)
        self.last_seq = event.seq
        size = event.size
        self._nbytes += size
        if self._durable is not None and event.seq > self._durable:
            self._pending_nbytes += size
        if len(events) - self._head > self.max_events or self._nbytes > self.max_bytes:
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
        if head != self._head:
            self._advance(head)

    def _advance(self, head: int) -> None:
        """Make ``head`` the index of the oldest retained event."""
        events = self._events
        old = self._head
        self.trimmed += head - old
        # The dead prefix points at one placeholder, not at the trimmed events:
        # they are freed now, when the budget gives their bytes back, not at
        # the next compaction.
        if head == old + 1:
            events[old] = _TRIMMED  # the usual trim: one event
        else:
            events[old:head] = [_TRIMMED] * (head - old)
        length = len(events)
        if head >= _COMPACT_MIN and head * 2 >= length:
            del events[:head]
            length -= head
            head = 0
        self._head = head
        if self._ledger is not None:
            self._ledger.release_before(self._holder, self.last_seq - (length - head) + 1)

    @property
    def ledger(self) -> RunLedger | None:
        """The memory ledger this log reports to, if any."""
        return self._ledger

    def bind(self, ledger: RunLedger, holder: str = "log") -> None:
        """Report to ``ledger`` as ``holder`` from now on (its events are counted
        there already, or the caller counts them; a holder registered already
        keeps its overhead)."""
        if self._ledger is not None:
            self._ledger.drop(self._holder)
        self._ledger, self._holder = ledger, holder
        ledger.attach(holder, self.first_seq)

    def shrink(self) -> None:
        """Keep only the newest event (a run's terminal event) -- and whatever
        the store has not made durable yet -- and give back the rest."""
        keep = self.last_seq  # the newest stays
        if self._durable is not None:
            keep = min(keep, max(self.first_seq, self._durable + 1))
        if keep > self.first_seq:
            head = self._head + (keep - self.first_seq)
            for event in self._events[self._head : head]:
                self._nbytes -= event.size
            self._advance(head)

    def discard(self) -> None:
        """Hold nothing any more: the run is gone from memory (finished, so
        everything in it was durable). ``last_seq`` stays."""
        self.trimmed += len(self)
        self._events = []
        self._head = 0
        self._nbytes = 0
        self._pending_nbytes = 0
        if self._ledger is not None:
            self._ledger.drop(self._holder)
            self._ledger = None

    def read_after(self, after: int, limit: int | None = None, max_bytes: int | None = None) -> list[Event]:
        """Return retained events with ``seq > after``, oldest first.

        If ``after + 1 < first_seq`` the events in between were trimmed; the
        result then starts at :attr:`first_seq` and the caller must report
        the gap (``first_seq - after - 1`` missed).

        Args:
            after: the cursor: the last seq the reader already has.
            limit: return at most this many events.
            max_bytes: stop after the event that reaches this many bytes (of
                :attr:`Event.size`; at least one event is returned).
        """
        first = self.first_seq
        start = after + 1 if after >= first else first
        if start > self.last_seq:
            return []
        index = self._head + (start - first)
        found = self._events[index:] if limit is None else self._events[index : index + limit]
        if max_bytes is not None and self._nbytes > max_bytes:
            return cut_to_bytes(found, max_bytes)
        return found

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


def cut_to_bytes(events: list[Event], max_bytes: int) -> list[Event]:
    """The first events of ``events`` up to the one that reaches ``max_bytes``
    (of :attr:`Event.size`), at least one."""
    total = 0
    for index, event in enumerate(events):
        total += event.size
        if total >= max_bytes:
            return events[: index + 1]
    return events
