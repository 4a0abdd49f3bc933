"""Tail: the bounded in-memory part of a log (sans-I/O), shared by runs and Durable Streams.

Theory of operation
-------------------
Entries are appended in ``seq`` order to a Python list. Trimming never
copies: it advances ``_head``, the index of the oldest retained entry (the
dead prefix points at one shared placeholder, so trimmed entries are freed
at once), and the list is compacted only once the dead prefix is at least
half of it, so appends and trims are O(1) amortized and the list holds at
most twice the bound in slots.

Readers read by cursor ("everything after seq N") and take what is new as
one list slice: nothing is copied or queued per reader. A reader whose
cursor fell behind the trimmed head gets what is retained and must report
what it missed (``first_seq - after - 1`` entries).

Bounds, and who sets them: a run's ``ReplayLog`` keeps ``max_entries`` /
``max_bytes``; a Durable Stream's log keeps everything (:data:`UNBOUNDED`:
its lifetime is explicit, and its store bounds its bytes).

Durability
----------
A tail whose store writes behind must not trim an entry the store cannot
serve yet (a reader behind the trimmed head reads the store; an entry in
neither would be reported missing although it was never lost). So such a
store *holds* the tail (:meth:`Tail.hold`): from then on it trims only
entries with ``seq <= durable_seq``, and the store calls
:meth:`Tail.mark_durable` after each flush, which advances the mark and trims
what the bounds no longer allow. :attr:`pending_nbytes` is how many retained
bytes the store has not made durable yet (counted by the store, so a budget
counts each entry once). A tail nobody holds trims to its bounds alone.

Recorded
--------
A store that keeps its own record of every entry in this process
(``MemoryStore``) need not be handed each entry as it is appended: it
records the tail (:meth:`Tail.record_by`) and copies what is new in one
slice whenever it needs to -- before it serves a read, and when the tail is
about to trim an entry it has not copied yet (the tail calls it). So a
run's event is appended once on the hot path, to its log, and the store's
record gets the same objects in batches of up to ``max_entries``.

Memory
------
A tail given a :class:`Meter` (a run's ``RunLedger`` in the memory budget)
is one of the holders there: every trim reports the new first seq, so the
budget gives an entry's bytes back once no holder keeps it;
:meth:`Tail.shrink` and :meth:`Tail.discard` give back the rest.

Invariants:
- ``first_seq .. last_seq`` are retained, contiguous, in order.
- The newest entry is never trimmed (a run's terminal event is last).
- Every trimmed entry was durable (``seq <= durable_seq``) when trimmed.
- ``len(self) <= max_entries`` and ``nbytes <= max_bytes`` after every append
  and every :meth:`Tail.mark_durable`, except for the newest entry (kept even
  if it alone exceeds ``max_bytes``) and for entries not yet durable.
"""

from __future__ import annotations

import sys
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol

from ._entries import E, cut_to_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: No bound: the tail keeps every entry (a Durable Stream's log).
UNBOUNDED: Final = sys.maxsize

#: What the dead prefix of the list holds instead of trimmed entries.
TRIMMED: Final[Any] = object()

# Compact the list when the dead prefix is at least this long *and* at least
# half of the list; below it the slice-delete costs more than it saves.
_COMPACT_MIN = 256


class Meter(Protocol):
    """Where a tail reports what it holds (a memory budget's account of the log)."""

    def attach(self, holder: str, first_seq: int) -> None:
        """``holder`` holds the entries from ``first_seq`` on."""
        ...

    def release_before(self, holder: str, seq: int) -> None:
        """``holder`` now holds only the entries from ``seq`` on."""
        ...

    def drop(self, holder: str) -> None:
        """``holder`` holds nothing any more."""
        ...


class Tail(Generic[E]):
    """The retained entries of one log, bounded by count and by bytes.

    Args:
        max_entries: retain at most this many entries (at least 1).
        max_bytes: retain at most about this many bytes (of :attr:`Entry.size`).
        start_seq: the seq before the first entry (a fork continues its source's).
        meter: reported to on every trim (see "Memory").
        holder: this tail's name for the meter.
    """

    __slots__ = (
        "__weakref__",
        "_durable",
        "_entries",
        "_head",
        "_holder",
        "_max_size",
        "_meter",
        "_nbytes",
        "_pending_nbytes",
        "_recorded",
        "_recorder",
        "last_seq",
        "max_bytes",
        "max_entries",
        "trimmed",
    )

    def __init__(
        self,
        *,
        max_entries: int = UNBOUNDED,
        max_bytes: int = UNBOUNDED,
        start_seq: int = 0,
        meter: Meter | None = None,
        holder: str = "log",
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_events must be at least 1, not {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: list[E] = []
        self._head = 0
        self._nbytes = 0
        # The largest entry ever appended: a bound that lets a read skip the
        # byte cut (a walk over every entry it returns, per reader) whenever
        # its slice cannot reach the reader's limit.
        self._max_size = 0
        #: seq of the newest entry appended (``start_seq`` before the first).
        self.last_seq = start_seq
        #: how many entries were trimmed from the head so far.
        self.trimmed = 0
        # None: nobody holds the tail (every appended entry is durable).
        self._durable: int | None = None
        self._pending_nbytes = 0
        # A store that records this tail's entries from the tail itself (see
        # "Recorded"): called before an entry it has not copied is trimmed.
        self._recorder: Callable[[], int] | None = None
        self._recorded = start_seq
        self._meter: Meter | None = None
        self._holder = holder
        if meter is not None:
            self.bind(meter, holder)

    def __len__(self) -> int:
        return len(self._entries) - self._head

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the retained entries."""
        return self._nbytes

    @property
    def pending_nbytes(self) -> int:
        """Bytes of retained entries the store has not made durable yet.

        The store counts them against its own bound (not-yet-durable data);
        the tail's own share of a memory budget is ``nbytes - pending_nbytes``.
        """
        return self._pending_nbytes

    @property
    def durable_seq(self) -> int:
        """The highest seq the store has made durable (``last_seq`` when nobody holds the tail)."""
        return self.last_seq if self._durable is None else self._durable

    @property
    def first_seq(self) -> int:
        """Seq of the oldest retained entry (``last_seq + 1`` when empty)."""
        return self.last_seq - (len(self._entries) - self._head) + 1

    def append(self, entry: E) -> None:
        """Append the next entry and trim the head to the bounds.

        Raises:
            ValueError: ``entry.seq`` is not ``last_seq + 1``.
        """
        seq = entry.seq
        if seq != self.last_seq + 1:
            raise ValueError(f"expected seq {self.last_seq + 1}, got {seq}")
        entries = self._entries
        entries.append(entry)
        self.last_seq = seq
        size = entry.size
        nbytes = self._nbytes = self._nbytes + size
        if size > self._max_size:
            self._max_size = size
        durable = self._durable
        if durable is not None and seq > durable:
            self._pending_nbytes += size
        if len(entries) - self._head > self.max_entries or nbytes > self.max_bytes:
            self._trim()

    def extend(self, entries: list[E]) -> None:
        """Append ``entries`` (the next ones, in order) and trim the head once.

        The result is what appending them one by one would leave: the
        longest suffix within the bounds (both bounds only ever trim the
        oldest first), the newest entry always kept.

        Raises:
            ValueError: they do not continue ``last_seq``; nothing was appended.
        """
        if entries:
            self._extend(entries, [entry.size for entry in entries])

    def _extend(self, entries: list[E], sizes: list[int]) -> None:
        """:meth:`extend`, given each entry's size (a subclass that knows them cheaper)."""
        if entries[0].seq != self.last_seq + 1 or entries[-1].seq != self.last_seq + len(entries):
            raise ValueError(f"expected seqs {self.last_seq + 1}.., got {entries[0].seq}..{entries[-1].seq}")
        size = sum(sizes)
        self._entries.extend(entries)
        self.last_seq = entries[-1].seq
        self._nbytes += size
        largest = max(sizes)
        if largest > self._max_size:
            self._max_size = largest
        durable = self._durable
        if durable is not None:
            first = entries[0].seq
            self._pending_nbytes += size if durable < first else sum(sizes[max(0, durable + 1 - first) :])
        if len(self) > self.max_entries or self._nbytes > self.max_bytes:
            self._trim()

    def record_by(self, catch_up: Callable[[], int]) -> None:
        """A store records this tail's entries by copying them from it, in
        batches, instead of being handed each one (``MemoryStore``).

        ``catch_up()`` copies every entry it has not copied yet and returns
        the last seq it now has; the tail calls it before it trims an entry
        past that seq, so nothing the store has not recorded leaves memory
        unrecorded. Entries already in the tail count as recorded. Until
        :meth:`stop_recording`, a store reading this log must call its own
        catch-up first.
        """
        self._recorder = catch_up
        self._recorded = self.last_seq

    def stop_recording(self) -> None:
        """The store records no more from this tail (it has everything it needs)."""
        self._recorder = None

    def get(self, seq: int) -> E:
        """The retained entry ``seq``.

        Raises:
            IndexError: it is not retained.
        """
        first = self.first_seq
        if not first <= seq <= self.last_seq:
            raise IndexError(f"seq {seq} is not retained ({first}..{self.last_seq})")
        return self._entries[self._head + seq - first]

    def hold(self) -> None:
        """Trim from now on only what :meth:`mark_durable` has released.

        Called by a store that writes behind, before the first entry;
        entries already in the tail count as durable. Idempotent.
        """
        if self._durable is None:
            self._durable = self.last_seq

    def mark_durable(self, seq: int) -> None:
        """The store has made every entry up to ``seq`` durable (or settled:
        it will never have them, e.g. a run another instance fenced off).

        Trims what the bounds no longer allow. ``seq`` may be beyond
        ``last_seq`` (a terminal event is made durable before it is
        revealed); a mark never moves back. No effect on a tail nobody holds.
        """
        durable = self._durable
        if durable is None or seq <= durable:
            return
        self._durable = seq
        # Entries durable now that were pending: their bytes leave the store's count.
        first = self.first_seq
        start = max(durable + 1, first)
        stop = min(seq, self.last_seq)
        if start <= stop:
            entries = self._entries
            base = self._head - first
            self._pending_nbytes -= sum(entries[base + n].size for n in range(start, stop + 1))
        if len(self) > self.max_entries or self._nbytes > self.max_bytes:
            self._trim()

    def release(self) -> None:
        """Nobody holds the tail any more: trim to the bounds alone.

        For a log the store will never record (it refused the run's start):
        nothing of it is pending, so nothing is counted as pending.
        """
        self._durable = None
        self._pending_nbytes = 0
        if len(self) > self.max_entries or self._nbytes > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        entries = self._entries
        head = self._head
        retained = len(entries) - head
        # Never trim an entry the store cannot serve yet (see "Durability").
        limit = len(entries) if self._durable is None else self._head + self._durable - self.first_seq + 1
        max_entries, max_bytes = self.max_entries, self.max_bytes
        while retained > 1 and head < limit and (retained > max_entries or self._nbytes > max_bytes):
            self._nbytes -= entries[head].size
            head += 1
            retained -= 1
        if head != self._head:
            self._advance(head)

    def _advance(self, head: int) -> None:
        """Make ``head`` the index of the oldest retained entry."""
        entries = self._entries
        old = self._head
        if self._recorder is not None and self.last_seq - (len(entries) - head) > self._recorded:
            # About to trim entries the recording store has not copied yet:
            # it copies everything new now, so this check fires about once
            # per ``max_entries`` appends, not per entry.
            self._recorded = self._recorder()
        self.trimmed += head - old
        # The dead prefix points at one placeholder, not at the trimmed entries:
        # they are freed now, when the budget gives their bytes back, not at
        # the next compaction.
        if head == old + 1:
            entries[old] = TRIMMED  # the usual trim: one entry
        else:
            entries[old:head] = [TRIMMED] * (head - old)
        length = len(entries)
        if head >= _COMPACT_MIN and head * 2 >= length:
            del entries[:head]
            length -= head
            head = 0
        self._head = head
        if self._meter is not None:
            self._meter.release_before(self._holder, self.last_seq - (length - head) + 1)

    @property
    def meter(self) -> Meter | None:
        """What this tail reports to, if anything."""
        return self._meter

    def bind(self, meter: Meter, holder: str = "log") -> None:
        """Report to ``meter`` as ``holder`` from now on (its entries are
        counted there already, or the caller counts them)."""
        if self._meter is not None:
            self._meter.drop(self._holder)
        self._meter, self._holder = meter, holder
        meter.attach(holder, self.first_seq)

    def shrink(self) -> None:
        """Keep only the newest entry -- and whatever the store has not made
        durable yet -- and give back the rest."""
        keep = self.last_seq  # the newest stays
        if self._durable is not None:
            keep = min(keep, max(self.first_seq, self._durable + 1))
        if keep > self.first_seq:
            head = self._head + (keep - self.first_seq)
            for entry in self._entries[self._head : head]:
                self._nbytes -= entry.size
            self._advance(head)

    def discard(self) -> None:
        """Hold nothing any more (everything in it was durable). ``last_seq`` stays."""
        self.trimmed += len(self)
        self._entries = []
        self._head = 0
        self._nbytes = 0
        self._pending_nbytes = 0
        if self._meter is not None:
            self._meter.drop(self._holder)
            self._meter = None

    def read_after(self, after: int, limit: int | None = None, max_bytes: int | None = None) -> list[E]:
        """Return retained entries with ``seq > after``, oldest first.

        If ``after + 1 < first_seq`` the entries in between were trimmed; the
        result then starts at :attr:`first_seq` and the caller must report
        the gap (``first_seq - after - 1`` missed).

        Args:
            after: the cursor: the last seq the reader already has.
            limit: return at most this many entries.
            max_bytes: stop after the entry that reaches this many bytes (of
                :attr:`Entry.size`; at least one entry is returned).
        """
        first = self.last_seq - (len(self._entries) - self._head) + 1
        start = after + 1 if after >= first else first
        if start > self.last_seq:
            return []
        index = self._head + (start - first)
        found = self._entries[index:] if limit is None else self._entries[index : index + limit]
        # Cut only when the slice may reach the limit: no entry is larger
        # than _max_size, so a live reader's short slice skips the walk.
        if max_bytes is not None and self._nbytes > max_bytes and len(found) * self._max_size >= max_bytes:
            return cut_to_bytes(found, max_bytes)
        return found

    def iter_after(self, after: int) -> Iterator[E]:
        """The retained entries with ``seq > after``, oldest first, without
        copying them: for a reader that stops early (a byte limit). The tail
        must not change while the iterator is in use."""
        first = self.last_seq - (len(self._entries) - self._head) + 1
        start = after + 1 if after >= first else first
        return islice(self._entries, self._head + (start - first), None)
