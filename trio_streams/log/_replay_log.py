"""ReplayLog: the bounded, shared history of one run (sans-I/O).

Theory of operation
-------------------
A ``ReplayLog`` is the log engine's :class:`~trio_streams.log.Tail` of
:class:`~._events.Event` s with the runs' policy: bounded by
``log_max_events`` and ``log_max_bytes``, numbered from 1, reporting its
trims to the run's :class:`~._budget.RunLedger`. The list, the trimming,
the durable watermark and the cursor reads are the tail's (``log/_tail.py``);
this module adds the run's names for them and its statistics.

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
A log given a :class:`~trio_streams.log._budget.RunLedger` is one of the run's
holders there: every trim reports the new first seq, so the budget gives
back an event's bytes once no holder keeps it any more (events a store
holds the log for stay counted, once, as the log's). :meth:`ReplayLog.shrink`
(an evicted run some subscriber still reads) and :meth:`ReplayLog.discard`
(the run is gone from memory) give back the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._entries import cut_to_bytes as cut_to_bytes
from ._events import EVENT_SIZE_OVERHEAD, Event
from ._tail import TRIMMED, Tail

if TYPE_CHECKING:
    from ._budget import RunLedger

#: What the dead prefix of the list holds instead of trimmed events (the tail's placeholder).
_TRIMMED: Final = TRIMMED


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


class ReplayLog(Tail[Event]):
    """Bounded history of one run's events, by count and by bytes.

    Args:
        max_events: retain at most this many events (at least 1).
        max_bytes: retain at most about this many bytes (see :attr:`Event.size`).
        ledger: the run's memory ledger, which this log reports its trims to.
        holder: this log's name in the ledger.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        max_bytes: int = 8 * 1024 * 1024,
        ledger: RunLedger | None = None,
        holder: str = "log",
    ) -> None:
        super().__init__(max_entries=max_events, max_bytes=max_bytes, meter=ledger, holder=holder)

    @property
    def max_events(self) -> int:
        """Retain at most this many events."""
        return self.max_entries

    @max_events.setter
    def max_events(self, value: int) -> None:
        self.max_entries = value

    def extend(self, entries: list[Event]) -> None:
        """:meth:`Tail.extend` with each :attr:`Event.size` computed inline (the
        store's record copies the log in batches: no property call per event)."""
        if entries:
            self._extend(entries, [len(e.data_json) + len(e.type) + EVENT_SIZE_OVERHEAD for e in entries])

    @property
    def ledger(self) -> RunLedger | None:
        """The memory ledger this log reports to, if any."""
        # Not typing.cast: this is read once per event (MemoryStore.append_nowait).
        return self._meter  # type: ignore[return-value]

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
