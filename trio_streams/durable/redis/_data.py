"""Reading Durable Streams' data from Redis: appends by position, forks stitched in.

The same walk as :class:`~.._log.StreamLog` over the entries of
``{prefix}ds:{<name>}:data`` (see :mod:`._layout`): a position is
found with one ``XREVRANGE`` (the last append starting at or before it),
then entries are read forward in batches. A fork reads positions before
its base from its source (recursively, up a chain of forks), stopping at
the base, exactly as the memory store's logs do.

Everything here reads; nothing writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import DurableStreamError, bad_request
from .._log import Slice, join_pieces
from .._offsets import Offset
from ._layout import MAX_ID_SEQ, Keys, Meta, decode_data, meta_from_hash, parse_entry_id

if TYPE_CHECKING:
    from collections.abc import Iterable

    import coredis

    from .._access import StreamId
    from .._log import Data
    from ._views import Recent

#: Entries read per round trip.
_READ_ENTRIES = 64


class StreamData:
    """Reads streams (their meta hashes and data) through ``client`` under ``keys``."""

    def __init__(self, client: coredis.Redis[bytes] | coredis.RedisCluster[bytes], keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def load(self, ident: StreamId) -> Meta | None:
        """The snapshot of ``ident``'s meta hash (``None``: no such stream)."""
        raw = await self._client.hgetall(self._keys.meta(ident))
        return meta_from_hash(ident, dict(raw))

    async def parent(self, meta: Meta) -> Meta:
        assert meta.source is not None
        parent = await self.load(meta.stream_id.sibling(meta.source))
        if parent is None:
            raise DurableStreamError(
                503, "store_inconsistent", f"the source of {meta.name!r} ({meta.source!r}) is missing"
            )
        return parent

    async def chunk_holding(self, meta: Meta, position: int) -> tuple[int, int, Data] | None:
        """The own append of ``meta`` that starts at or before ``position`` (the last one such)."""
        found = await self._client.xrevrange(
            self._keys.data(meta.stream_id), end=f"{position}-{MAX_ID_SEQ}", start="-", count=1
        )
        if not found:
            return None
        start, seq = parse_entry_id(found[0].identifier)
        return start, seq, decode_data(found[0].field_values[b"d"], json_mode=meta.json)

    async def offset_at(self, meta: Meta, position: int) -> Offset:
        if position < meta.base.position:
            return await self.offset_at(await self.parent(meta), position)
        chunk = await self.chunk_holding(meta, position)
        if chunk is None:
            return Offset(meta.base.seq, position) if position == meta.base.position else Offset(0, position)
        start, seq, data = chunk
        return Offset(seq - 1 if position < start + len(data) else seq, position)

    async def extent(self, meta: Meta, position: int) -> int:
        if position >= meta.tail.position:
            return 0
        if position < meta.base.position:
            return min(await self.extent(await self.parent(meta), position), meta.base.position - position)
        chunk = await self.chunk_holding(meta, position)
        assert chunk is not None
        start, _seq, data = chunk
        return start + len(data) - position

    async def units(self, meta: Meta, position: int, count: int) -> Data:
        found = Slice()
        await self.collect(meta, position, position + count, 2**62, found)
        return join_pieces(found.pieces, json_mode=meta.json)

    async def read(self, meta: Meta, position: int, max_bytes: int, recent: Recent | None = None) -> Slice:
        """The data of ``meta``'s stream from ``position`` up to its tail then
        (whole appends, stopping after the one that passes ``max_bytes``);
        from ``recent`` without a round trip when it covers them.

        Raises:
            DurableStreamError: 400 past the tail; 503 a fork's source is missing.
        """
        if position > meta.tail.position:
            raise bad_request("offset_beyond_tail", f"the offset is past the stream's tail ({meta.tail})")
        out = Slice(end=meta.tail if position == meta.tail.position else Offset(meta.tail.seq, position))
        if recent is not None and recent.covers(meta, position):
            take(recent.entries, position, meta.tail.position, max_bytes, out)
            return out
        await self.collect(meta, position, meta.tail.position, max_bytes, out)
        return out

    async def collect(self, meta: Meta, position: int, upto: int, max_bytes: int, out: Slice) -> None:
        # The same walk as StreamLog._collect, over the entries in Redis.
        if position < meta.base.position:
            await self.collect(
                await self.parent(meta), position, min(upto, meta.base.position), max_bytes, out
            )
            if out.nbytes >= max_bytes or upto <= meta.base.position:
                return
            position = meta.base.position
        if position >= upto:
            return
        client, key = self._client, self._keys.data(meta.stream_id)
        # Readers mostly ask for a position where an append starts (a tail they
        # were given): one XRANGE finds it. Else the append holding it is found first.
        entries = await client.xrange(key, start=f"{position}-0", end="+", count=_READ_ENTRIES)
        if not entries or parse_entry_id(entries[0].identifier)[0] != position:
            first = await client.xrevrange(key, end=f"{position}-{MAX_ID_SEQ}", start="-", count=1)
            cursor: str | bytes = first[0].identifier if first else "-"
            entries = await client.xrange(key, start=cursor, end="+", count=_READ_ENTRIES)
        while True:
            found = (
                (
                    *parse_entry_id(entry.identifier),
                    decode_data(entry.field_values[b"d"], json_mode=meta.json),
                )
                for entry in entries
            )
            if take(found, position, upto, max_bytes, out):
                return
            if len(entries) < _READ_ENTRIES:
                return
            last = entries[-1].identifier
            cursor = "(" + (last.decode() if isinstance(last, bytes) else str(last))
            entries = await client.xrange(key, start=cursor, end="+", count=_READ_ENTRIES)


def take(
    entries: Iterable[tuple[int, int, Data]], position: int, upto: int, max_bytes: int, out: Slice
) -> bool:
    """Add to ``out`` what ``entries`` (start, seq, data; in order) hold from
    ``position`` up to ``upto``; True when done (``upto`` or ``max_bytes`` reached)."""
    for start, seq, data in entries:
        end = start + len(data)
        if start >= upto:
            return True
        low, high = max(position - start, 0), min(end, upto) - start
        if low >= high:
            continue
        piece_end = Offset(seq, end) if high == len(data) else Offset(seq - 1, start + high)
        out.add(data[low:high], piece_end)
        if out.nbytes >= max_bytes:
            return True
    return False
