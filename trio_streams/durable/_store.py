"""``DurableStreamStore``: Durable Streams in memory -- create, append, close, read, wait, fork, expire.

Theory of operation
-------------------
Streams live in a dict by :class:`~._access.StreamId`, ``(owner, name)``:
each owner's names are a namespace of their own (``owner=None``, the
default, is the shared one), and a fork's source is looked up in the
fork's namespace. Every operation is one synchronous step
(no checkpoint between checking and changing state), which is what makes
each append atomic with its producer and ``Stream-Seq`` checks and its
close, and serializes writers per stream without locks.

Readers that wait (long-poll, SSE) wait on the stream's ``changed``
notifier (:class:`~trio_streams.log.Changed`, the wake-up runs' readers use
too), which every append, close and deletion notifies: no polling, and a
wait is bounded by the caller's deadline.

Lifetimes use trio's clock: a stream's ``deadline`` is ``now + ttl`` after
each read or write (sliding TTL; ``HEAD`` does not count), or the trio time
matching its ``Stream-Expires-At``. A stream past its deadline is expired
when next looked up, and a sweep at most once a second catches the rest.
Expiring is deleting. Deleting a stream that forks still read only marks it
soft-deleted (410, name blocked); when its last fork goes, it goes too, and
so on up the chain.

Bounds: ``max_streams`` streams and ``max_bytes`` of data in all (507 past
either), and reads return at most about ``max_read_bytes`` at once. Served
with a hub (``TrioStreams``), the store also counts what it holds -- data plus
the measured overhead of each stream, append and JSON message -- in the hub's
memory budget (``max_memory``, shared with the runs): an append or create
that does not fit there, even after finished runs gave memory back, is a 507
naming the budget. Streams are never evicted to make room.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..log import LiveReads
from ..log._budget import Account, MemoryBudgetExceeded
from ..log._sizes import CHUNK_OVERHEAD, MESSAGE_OVERHEAD, STREAM_OVERHEAD
from ._access import StreamId
from ._append import outcome, plan_append
from ._create import confirm_existing, plan_create
from ._errors import DurableStreamError, bad_request, conflict, gone, not_found
from ._headers import is_json
from ._log import StreamLog
from ._producers import ProducerState
from ._stream import AppendOutcome, DurableStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..log._budget import MemoryBudget
    from ._log import Data, Slice
    from ._stream import AppendRequest, CreateRequest

#: How often (trio seconds) a write may trigger a sweep of expired streams.
SWEEP_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class DurableStoreStatistics:
    streams: int
    soft_deleted: int
    bytes: int


class DurableStreamStore:
    """Durable Streams held in this process.

    Args:
        max_streams: streams held at most (soft-deleted ones count).
        max_bytes: bytes of stream data held at most, in all.
        max_read_bytes: a catch-up read stops after the append that passes this.
        wall_clock: POSIX time, to place ``Stream-Expires-At`` on trio's clock.
    """

    def __init__(
        self,
        *,
        max_streams: int = 100_000,
        max_bytes: int = 1024**3,
        max_read_bytes: int = 1024 * 1024,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_streams < 1 or max_bytes < 1 or max_read_bytes < 1:
            raise ValueError("max_streams, max_bytes and max_read_bytes must be positive")
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self.max_read_bytes = max_read_bytes
        self._wall_clock = wall_clock
        self._streams: dict[StreamId, DurableStream] = {}
        self._incarnations = itertools.count(1)
        self._bytes = 0
        self._next_sweep = -float("inf")
        self._live_reads = LiveReads(self._notify_all)
        # What the streams held cost in memory, as the budget counts it.
        self._cost = Account("durable")

    def use_memory_budget(self, budget: MemoryBudget) -> None:
        """Count what this store holds in ``budget`` (the hub's ``max_memory``) from now on.

        Streams held already are counted in it at once (moved from a previous
        budget), even past its limit: they are never dropped to make room.
        """
        self._cost.use(budget)

    # -- lookups ---------------------------------------------------------------------

    def head(self, name: str, *, owner: str | None = None) -> DurableStream:
        """The stream ``name`` of ``owner``'s namespace (``None``: the shared
        one), for metadata: does not renew its TTL.

        Raises:
            DurableStreamError: 404 unknown or expired, 410 soft-deleted.
        """
        return self._head(StreamId(owner, name))

    def _head(self, ident: StreamId) -> DurableStream:
        stream = self._find(ident)
        if stream is None:
            raise not_found(ident.name)
        if stream.soft_deleted:
            raise gone(ident.name)
        return stream

    def open(self, name: str, *, owner: str | None = None) -> DurableStream:
        """The stream, for a read or write: renews its TTL. Raises as :meth:`head`."""
        self._sweep()
        stream = self._head(StreamId(owner, name))
        self._touch(stream)
        return stream

    def names(self, owner: str | None = None) -> list[tuple[str, DurableStream]]:
        """Every live (not soft-deleted, not expired) stream of ``owner``'s namespace, by name.

        For subscriptions' backfill: one pass over the streams held.
        """
        now = trio.current_time()
        return [
            (ident.name, stream)
            for ident, stream in self._streams.items()
            if ident.owner == owner
            and not stream.soft_deleted
            and (stream.deadline is None or now < stream.deadline)
        ]

    def _find(self, ident: StreamId) -> DurableStream | None:
        stream = self._streams.get(ident)
        if stream is not None and stream.deadline is not None and trio.current_time() >= stream.deadline:
            self._delete(stream)
            stream = self._streams.get(ident)
        return stream

    def _touch(self, stream: DurableStream) -> None:
        if stream.ttl is not None:
            stream.deadline = trio.current_time() + stream.ttl

    # -- create --------------------------------------------------------------------------

    def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> tuple[DurableStream, bool]:
        """Create the stream ``name`` in ``owner``'s namespace, or confirm an
        identical one; return it and whether it is new. A fork's source is the
        stream of that name in the same namespace.

        Raises:
            DurableStreamError: 400 bad TTL/expiry/offsets/body, 404 unknown
                fork source, 409 a different stream exists (or is
                soft-deleted, or the source is), 507 the store is full.
        """
        self._sweep()
        if request.ttl is not None and request.expires_at is not None:
            raise bad_request("ttl_and_expires_at", "send Stream-TTL or Stream-Expires-At, not both")
        ident = StreamId(owner, name)
        existing = self._find(ident)
        if existing is not None:
            return self._confirm(existing, request), False
        if len(self._streams) >= self.max_streams:
            raise DurableStreamError(
                507, "store_full", f"the store holds its limit of {self.max_streams} streams"
            )
        source = None if request.fork is None else self._fork_source(ident.sibling(request.fork.source))
        content_type, data = plan_create(request, None if source is None else source.content_type)
        log = StreamLog(json=is_json(content_type)) if source is None else self._fork_log(source, request)
        chunks = [chunk for chunk in (data, prefix_of(log)) if chunk]
        held = sum(map(_size, chunks))
        self._reserve(held, STREAM_OVERHEAD + sum(map(_chunk_cost, chunks)))
        if data:
            log.append(data)
        stream = DurableStream(
            name,
            next(self._incarnations),
            content_type,
            log,
            request.config(content_type),
            owner=owner,
            ttl=request.ttl,
            expires_at=request.expires_at,
            closed=request.closed,
            nbytes=held,
        )
        if source is not None:
            stream.source = source
            source.forks += 1
            if request.ttl is None and request.expires_at is None:
                stream.ttl, stream.expires_at = source.ttl, source.expires_at
        if stream.expires_at is not None:
            stream.deadline = trio.current_time() + (stream.expires_at.timestamp - self._wall_clock())
        self._touch(stream)
        self._streams[ident] = stream
        return stream, True

    def _confirm(self, stream: DurableStream, request: CreateRequest) -> DurableStream:
        confirm_existing(stream, request, lambda config: config)
        return stream

    def _fork_source(self, ident: StreamId) -> DurableStream:
        source = self._find(ident)
        if source is None:
            raise not_found(ident.name)
        if source.soft_deleted:
            raise conflict("source_soft_deleted", f"cannot fork {ident.name!r}: it was deleted")
        return source

    def _fork_log(self, source: DurableStream, request: CreateRequest) -> StreamLog:
        assert request.fork is not None
        tail = source.tail
        wanted = request.fork.offset
        if wanted is not None and (wanted.position > tail.position or wanted.seq > tail.seq):
            raise bad_request(
                "fork_offset_beyond_tail", f"Stream-Fork-Offset {wanted} is past the tail {tail}"
            )
        position = tail.position if wanted is None else wanted.position
        sub = request.fork.sub_offset
        prefix: Data | None = None
        if sub:
            available = source.log.extent(position)
            if sub > available:
                raise bad_request(
                    "fork_sub_offset_overshoot",
                    f"Stream-Fork-Sub-Offset {sub} is past the next boundary ({available} units on)",
                )
            prefix = source.log.units(position, sub)
        log = StreamLog(json=source.log.json, parent=source.log, base=source.log.offset_at(position))
        if prefix is not None:
            log.append(prefix)
        return log

    # -- append and close -------------------------------------------------------------------

    def append(self, name: str, request: AppendRequest, *, owner: str | None = None) -> AppendOutcome:
        """Append, close, or both, atomically, with the protocol's writer checks
        (to ``name`` in ``owner``'s namespace).

        Raises:
            DurableStreamError: 400, 403 (stale producer epoch), 404, 409
                (closed, content type, sequence), 410, 507; with the headers
                the protocol asks for.
        """
        self._sweep()
        stream = self._head(StreamId(owner, name))
        decision = plan_append(stream, request)
        if isinstance(decision, AppendOutcome):  # a retry, or closing a closed stream
            self._touch(stream)
            return decision
        data, claim = decision.data, request.producer
        # Every check passed: commit in one step.
        if data:
            self._reserve(_size(data), _chunk_cost(data))
            stream.nbytes += _size(data)
            stream.log.append(data)
        if request.stream_seq is not None:
            stream.last_stream_seq = request.stream_seq
        if claim is not None:
            stream.producers[claim.id] = ProducerState(claim.epoch, claim.seq)
        if request.close:
            stream.closed = True
            stream.closed_by = claim
        self._touch(stream)
        stream.notify()
        if claim is None:
            return outcome(stream, 204)
        return outcome(stream, 200 if data else 204, claim.epoch, claim.seq)

    def _reserve(self, nbytes: int, cost: int) -> None:
        """Count ``nbytes`` of data (``cost`` in memory), or refuse with a 507."""
        if self._bytes + nbytes > self.max_bytes:
            raise DurableStreamError(
                507, "store_full", f"the store holds its limit of {self.max_bytes} bytes"
            )
        try:
            self._cost.reserve(cost, what="this append")
        except MemoryBudgetExceeded as exc:
            raise DurableStreamError(507, "store_full", str(exc)) from None
        self._bytes += nbytes

    # -- read and wait ---------------------------------------------------------------------

    def read(self, stream: DurableStream, position: int) -> Slice:
        """The data from ``position`` (at most about ``max_read_bytes``).

        Raises:
            DurableStreamError: 400 when ``position`` is past the tail.
        """
        if position > stream.tail.position:
            raise bad_request("offset_beyond_tail", f"the offset is past the stream's tail ({stream.tail})")
        return stream.log.read(position, max_bytes=self.max_read_bytes)

    def holds(self, stream: DurableStream) -> bool:
        """True while ``stream`` is still this store's live stream of its name."""
        return self._streams.get(stream.stream_id) is stream and not stream.soft_deleted

    @property
    def live_reads(self) -> bool:
        """False between :meth:`end_live_reads` and :meth:`resume_live_reads`."""
        return self._live_reads.open

    def end_live_reads(self) -> None:
        """For shutdown: every wait returns now, and later ones do not wait
        (:class:`~trio_streams.log.LiveReads`)."""
        self._live_reads.end()

    def resume_live_reads(self) -> None:
        self._live_reads.resume()

    def _notify_all(self) -> None:
        for stream in self._streams.values():
            stream.notify()

    async def wait(self, stream: DurableStream, position: int, deadline: float) -> None:
        """Wait until ``stream`` has data past ``position``, closes, goes away, or ``deadline``
        (or live reads end).

        Cancellation: only the wait is cancelled; nothing changes.
        """
        await trio.lowlevel.checkpoint()
        while (
            stream.tail.position <= position
            and not stream.closed
            and self.holds(stream)
            and self._live_reads.open
        ):
            changed = stream.changed
            with trio.move_on_at(deadline) as waited:
                await changed.wait()
            if waited.cancelled_caught:
                return

    # -- delete and expire -------------------------------------------------------------------

    def delete(self, name: str, *, owner: str | None = None) -> None:
        """Delete the stream ``name`` of ``owner``'s namespace (soft-delete while forks read it).

        Raises:
            DurableStreamError: 404 unknown, 410 already soft-deleted.
        """
        self._delete(self._head(StreamId(owner, name)))

    def _delete(self, stream: DurableStream) -> None:
        if stream.forks > 0:
            stream.soft_deleted = True
            stream.deadline = None
        else:
            self._remove(stream)
        stream.notify()

    def _remove(self, stream: DurableStream) -> None:
        while True:
            if self._streams.get(stream.stream_id) is stream:
                del self._streams[stream.stream_id]
            self._bytes -= stream.nbytes
            self._cost.release(_stream_cost(stream))
            source = stream.source
            stream.source = None
            if source is None:
                return
            source.forks -= 1
            if not (source.soft_deleted and source.forks == 0):
                return
            stream = source

    def _sweep(self) -> None:
        now = trio.current_time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        for stream in list(self._streams.values()):
            if (
                stream.deadline is not None
                and now >= stream.deadline
                and self._streams.get(stream.stream_id) is stream
            ):
                self._delete(stream)

    def statistics(self) -> DurableStoreStatistics:
        soft = sum(1 for stream in self._streams.values() if stream.soft_deleted)
        return DurableStoreStatistics(len(self._streams), soft, self._bytes)


def _size(data: Data) -> int:
    return len(data) if isinstance(data, bytes) else sum(map(len, data))


def _chunk_cost(data: Data) -> int:
    """What one append's data costs in memory (see ``_sizes``)."""
    messages = 0 if isinstance(data, bytes) else len(data)
    return _size(data) + CHUNK_OVERHEAD + MESSAGE_OVERHEAD * messages


def _stream_cost(stream: DurableStream) -> int:
    """What a stream costs in memory: the sum of what its create and appends were counted at."""
    log = stream.log
    messages = log.tail.position - log.base.position if log.json else 0
    return STREAM_OVERHEAD + stream.nbytes + CHUNK_OVERHEAD * log.own_chunks + MESSAGE_OVERHEAD * messages


def prefix_of(log: StreamLog) -> Data | None:
    """The data a sub-offset fork copied into its own log (``None`` if none)."""
    return log.first_own_chunk()
