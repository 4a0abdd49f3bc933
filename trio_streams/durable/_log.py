"""A stream's data: appends kept as chunks, readable from any position, forks stitched in.

Theory of operation
-------------------
A :class:`StreamLog` holds the appends of one stream as :class:`Chunk` s,
each the data of one append (bytes, or a tuple of encoded JSON messages in
JSON mode) with its first position and the ``seq`` of the boundary after
it. The chunks are the entries of a log engine :class:`~trio_streams.log.Tail`
with the Durable Streams policy: unbounded (a stream keeps everything until
it expires or is deleted; its store bounds the bytes), numbered on from the
fork's base. Positions count units (bytes, or messages), so a read may start
at any position: binary search over the chunks' starts finds the chunk (its
seq is its index plus the tail's first seq), slicing does the rest.

A fork's log has a ``parent`` (the source's log) and a ``base``: positions
before ``base.position`` are read from the parent, stopping at ``base`` (the
parent's later appends are not the fork's), and the fork's own chunks start
at ``base``. Chains of forks recurse. The parent log is shared, never
copied; the store keeps a soft-deleted source's log alive while forks
reference it.

Nothing here blocks or knows about trio: the store wraps it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from ..log import Tail
from ._offsets import START, Offset

#: One append's data: bytes, or encoded JSON messages.
Data = bytes | tuple[bytes, ...]


def join_pieces(pieces: list[Data], *, json_mode: bool) -> Data:
    """Pieces of one stream read back as one piece: the messages in JSON mode, else the bytes."""
    if json_mode:
        messages: tuple[bytes, ...] = ()
        for piece in pieces:
            assert isinstance(piece, tuple)
            messages += piece
        return messages
    return b"".join(piece for piece in pieces if isinstance(piece, bytes))


@dataclass(frozen=True, slots=True)
class Chunk:
    """The data of one append."""

    start: int
    #: The seq of the boundary after this chunk.
    seq: int
    data: Data

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    @property
    def size(self) -> int:
        """Its bytes of data (a log engine entry's size)."""
        data = self.data
        return len(data) if isinstance(data, bytes) else sum(map(len, data))


@dataclass(slots=True)
class Slice:
    """What a read found: pieces of data in order, and the offset after the last one."""

    pieces: list[Data] = field(default_factory=list)
    end: Offset = START
    nbytes: int = 0

    def add(self, piece: Data, end: Offset) -> None:
        self.pieces.append(piece)
        self.end = end
        self.nbytes += len(piece) if isinstance(piece, bytes) else sum(map(len, piece)) + len(piece)


class StreamLog:
    """The appends of one stream, optionally continuing a parent's at ``base``."""

    __slots__ = ("_chunks", "_starts", "base", "json", "parent", "tail")

    def __init__(self, *, json: bool, parent: StreamLog | None = None, base: Offset = START) -> None:
        if parent is None and base != START:
            raise ValueError("only a fork starts past the beginning")
        self.json = json
        self.parent = parent
        self.base = base
        self.tail = base
        # Every chunk, never trimmed: the index of a chunk is its seq - base.seq - 1.
        self._chunks: Tail[Chunk] = Tail(start_seq=base.seq)
        self._starts: list[int] = []

    @property
    def own_chunks(self) -> int:
        return len(self._chunks)

    def append(self, data: Data) -> Offset:
        """Add one non-empty append; return the new tail."""
        if not data:
            raise ValueError("an append must hold at least one unit")
        if isinstance(data, bytes) == self.json:
            raise TypeError("JSON logs take tuples of messages; other logs take bytes")
        chunk = Chunk(self.tail.position, self.tail.seq + 1, data)
        self._chunks.append(chunk)  # checks the seq follows on
        self._starts.append(chunk.start)
        self.tail = Offset(chunk.seq, chunk.end)
        return self.tail

    def read(self, position: int, *, max_bytes: int, upto: int | None = None) -> Slice:
        """The data from ``position`` on, in whole appends until ``max_bytes`` is passed.

        At least one append (or its remainder) is returned when there is
        data. ``upto`` stops the read at that position (a fork's base).
        """
        out = Slice(end=self.tail if position == self.tail.position else self.offset_at(position))
        self._collect(position, self.tail.position if upto is None else upto, max_bytes, out)
        return out

    def _collect(self, position: int, upto: int, max_bytes: int, out: Slice) -> None:
        if position < self.base.position:
            assert self.parent is not None
            self.parent._collect(position, min(upto, self.base.position), max_bytes, out)
            if out.nbytes >= max_bytes or upto <= self.base.position:
                return
            position = self.base.position
        index = max(bisect_right(self._starts, position) - 1, 0)
        for chunk in self._chunks.iter_after(self.base.seq + index):
            if chunk.start >= upto:
                return
            low = max(position - chunk.start, 0)
            high = min(chunk.end, upto) - chunk.start
            if low >= high:
                continue
            if high == len(chunk.data):
                end = Offset(chunk.seq, chunk.end)
            else:
                end = Offset(chunk.seq - 1, chunk.start + high)
            out.add(chunk.data[low:high], end)
            if out.nbytes >= max_bytes:
                return

    def offset_at(self, position: int) -> Offset:
        """The offset of ``position`` (a boundary when it is one)."""
        if position < self.base.position:
            assert self.parent is not None
            return self.parent.offset_at(position)
        index = bisect_right(self._starts, position) - 1
        if index < 0:
            return Offset(self.base.seq, position) if position == self.base.position else Offset(0, position)
        chunk = self._chunks.get(self.base.seq + 1 + index)
        return Offset(chunk.seq - 1 if position < chunk.end else chunk.seq, position)

    def first_own_chunk(self) -> Data | None:
        return self._chunks.get(self.base.seq + 1).data if len(self._chunks) else None

    def extent(self, position: int) -> int:
        """How many units follow ``position`` up to the next append boundary (0 at the tail)."""
        if position >= self.tail.position:
            return 0
        if position < self.base.position:
            assert self.parent is not None
            return min(self.parent.extent(position), self.base.position - position)
        chunk = self._chunks.get(self.base.seq + bisect_right(self._starts, position))
        return chunk.end - position

    def units(self, position: int, count: int) -> Data:
        """Exactly ``count`` units from ``position`` (which must be available), as one piece."""
        found = self.read(position, max_bytes=2**62, upto=position + count)
        return join_pieces(found.pieces, json_mode=self.json)
