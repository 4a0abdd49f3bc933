"""The async face the HTTP layer uses: one interface over the memory and Redis stores.

:class:`~._store.DurableStreamStore` is synchronous (each operation is one
step with no checkpoint, which is what makes it atomic in one process);
the Redis store is asynchronous (every operation is a round trip).
:class:`DurableBackend` is what the blueprint needs of either, and
:class:`MemoryBackend` adapts the memory store to it without changing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ._reads import Chunked

if TYPE_CHECKING:
    from ..log._wakeup import Changed
    from ._headers import ExpiresAt
    from ._offsets import Offset
    from ._reads import ReadSource
    from ._store import DurableStreamStore
    from ._stream import AppendOutcome, AppendRequest, CreateRequest, DurableStream


class StreamInfo(Protocol):
    """What ``PUT`` and ``HEAD`` answer with."""

    @property
    def content_type(self) -> str: ...
    @property
    def tail(self) -> Offset: ...
    @property
    def closed(self) -> bool: ...
    @property
    def ttl(self) -> int | None: ...
    @property
    def expires_at(self) -> ExpiresAt | None: ...


class DurableBackend(Protocol):
    """A Durable Streams store, as the blueprint drives it.

    Every method names a stream by ``name`` in ``owner``'s namespace
    (``None``: the shared one; see :mod:`._access`): streams of different
    namespaces never meet, and a fork's source is in the fork's namespace.
    Every method raises :class:`~._errors.DurableStreamError` with the
    protocol's status (and 503 when the store cannot be reached).
    """

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> tuple[StreamInfo, bool]: ...

    async def append(
        self, name: str, request: AppendRequest, *, owner: str | None = None
    ) -> AppendOutcome: ...

    async def head(self, name: str, *, owner: str | None = None) -> StreamInfo: ...

    async def delete(self, name: str, *, owner: str | None = None) -> None: ...

    async def open_read(self, name: str, *, owner: str | None = None) -> ReadSource:
        """The stream, to read (renews its TTL)."""
        ...

    def end_live_reads(self) -> None: ...

    def resume_live_reads(self) -> None: ...


class MemoryBackend:
    """:class:`~._store.DurableStreamStore` as a :class:`DurableBackend`.

    Each method runs the store's synchronous step without a checkpoint
    before it, so the memory store behaves exactly as when called directly.
    """

    def __init__(self, store: DurableStreamStore) -> None:
        self.store = store

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> tuple[StreamInfo, bool]:
        return self.store.create(name, request, owner=owner)

    async def append(self, name: str, request: AppendRequest, *, owner: str | None = None) -> AppendOutcome:
        return self.store.append(name, request, owner=owner)

    async def head(self, name: str, *, owner: str | None = None) -> StreamInfo:
        return self.store.head(name, owner=owner)

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        self.store.delete(name, owner=owner)

    async def open_read(self, name: str, *, owner: str | None = None) -> ReadSource:
        return StoredSource(self.store, self.store.open(name, owner=owner))

    async def list_tails(self, *, owner: str | None = None) -> list[tuple[str, Offset]]:
        """Every live stream of ``owner``'s namespace with its tail (subscriptions' backfill)."""
        return [(name, stream.tail) for name, stream in self.store.names(owner)]

    def end_live_reads(self) -> None:
        self.store.end_live_reads()

    def resume_live_reads(self) -> None:
        self.store.resume_live_reads()


class StoredSource:
    """A stream of the memory store as a :class:`~._reads.ReadSource`."""

    def __init__(self, store: DurableStreamStore, stream: DurableStream) -> None:
        self._store = store
        self._stream = stream
        self.content_type = stream.content_type
        self.json = stream.json
        self.etag_id = stream.etag_id

    def tail(self) -> Offset:
        return self._stream.tail

    def is_closed(self) -> bool:
        return self._stream.closed

    async def read(self, position: int) -> Chunked:
        stream = self._stream
        found = self._store.read(stream, position)
        up_to_date = found.end.position == stream.tail.position
        return Chunked(found.pieces, found.end, up_to_date, up_to_date and stream.closed)

    async def wait(self, position: int, deadline: float) -> bool:
        await self._store.wait(self._stream, position, deadline)
        return self._store.holds(self._stream) and self._store.live_reads

    def parking(self, position: int) -> Changed | bool:
        """For a caller that parks itself (serve's SSE writer, on a deadline wheel): what
        :meth:`wait` would wait on now. The stream's ``Changed`` while nothing is past
        ``position``; True if there is no need (data, or closed); False if a wait would end
        the read (deleted, or live reads ended). Check, then park, with no checkpoint between.
        """
        store = self._store
        stream = self._stream
        if not (store.holds(stream) and store.live_reads):
            return False
        if stream.tail.position > position or stream.closed:
            return True
        return stream.changed


def as_backend(store: DurableStreamStore | DurableBackend) -> DurableBackend:
    from ._store import DurableStreamStore

    return MemoryBackend(store) if isinstance(store, DurableStreamStore) else store
