"""``RedisDurableStore``: Durable Streams kept in Redis, shared by every instance on it.

Theory of operation
-------------------
Layout: see :mod:`._redis_layout`. Every operation names a stream by
``(owner, name)`` (:class:`~._access.StreamId`; ``owner=None`` is the shared
namespace), a fork's source being in the fork's namespace; the key names
encode both, injectively. Offsets are the ``tail`` kept in each
stream's meta hash, so they are the same after a restart and on every
instance.

Writes are optimistic: an operation loads the meta hash, decides with the
same pure code as the memory store (:func:`~._append.plan_append` for an
append), then commits with the :data:`~._redis_layout.COMMIT` script, which
applies the write only if the versions it decided on have not moved. If
one moved (another instance wrote meanwhile), it loads and decides again:
appends to one stream are serialized across instances, with their
``Stream-Seq``, producer and close checks, and never interleave.

Lifetimes are stored deadlines (POSIX time, shared by every instance): a
stream past its deadline is deleted when next looked up, as in memory.
Redis key TTLs only back them up (``EXPIRY_GRACE`` later), and a stream
that forks read (or a soft-deleted one) has none: it must outlive its
deadline while they do.

The connection, request accounting (closing waits for requests under way),
writer turns, live reads and errors (a Redis that cannot be reached is a
503) are in :mod:`._redis_connection`, the store's base class.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._access import StreamId
from ._append import plan_append
from ._create import confirm_existing, plan_create
from ._errors import DurableStreamError, bad_request, conflict, gone, not_found
from ._offsets import START, Offset
from ._producers import ProducerState
from ._redis_connection import RedisSource, StoreConnection
from ._redis_layout import NOTIFY_MAXLEN, Meta, config_text, encode_data, entry_id, meta_fields
from ._redis_notify import notify_fields
from ._stream import AppendOutcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._log import Data, Slice
    from ._stream import AppendRequest, CreateRequest, ForkSpec

logger = logging.getLogger("trio_streams.durable.redis")

#: Loads and decisions per operation before giving up (503): only endless
#: contention on one stream gets there.
MAX_ATTEMPTS = 100
#: Redis removes a stream's keys this long after its deadline, if no request
#: expired it first (room for clocks that disagree; requests use the deadline).
EXPIRY_GRACE = 60.0


class RedisDurableStore(StoreConnection):
    """Durable Streams in Redis (see the module docstring and docs/durable.md).

    Use ``async with store.connect(url, prefix=...):`` (or let
    :class:`~trio_streams.web.TrioStreams` connect it to its Redis run store).
    Until connected, every request is a 503.

    Args:
        max_read_bytes: a catch-up read stops after the append that passes this.
        wall_clock: POSIX time, for TTLs and ``Stream-Expires-At``.
    """

    def __init__(
        self, *, max_read_bytes: int = 1024 * 1024, wall_clock: Callable[[], float] = time.time
    ) -> None:
        if max_read_bytes < 1:
            raise ValueError("max_read_bytes must be positive")
        self.max_read_bytes = max_read_bytes
        self._wall_clock = wall_clock
        super().__init__()

    # -- lookups -----------------------------------------------------------------------------

    async def read(self, meta: Meta, position: int) -> Slice:
        """The data of ``meta``'s stream from ``position`` (at most about ``max_read_bytes``)."""
        return await self._data().read(meta, position, self.max_read_bytes)

    async def _find(self, ident: StreamId) -> Meta | None:
        """The stream ``ident`` (``None``: none), deleting it first if it expired."""
        for _ in range(MAX_ATTEMPTS):
            meta = await self._load(ident)
            if meta is None:
                return None
            expired = meta.deadline is not None and self._wall_clock() >= meta.deadline
            # A soft-deleted stream without forks is left over by an interrupted cascade.
            if expired or (meta.soft_deleted and meta.forks == 0):
                await self._delete(meta)
                continue
            return meta
        raise _contention(ident.name)

    async def _head(self, ident: StreamId) -> Meta:
        meta = await self._find(ident)
        if meta is None:
            raise not_found(ident.name)
        if meta.soft_deleted:
            raise gone(ident.name)
        return meta

    async def head(self, name: str, *, owner: str | None = None) -> Meta:
        """The stream ``name`` of ``owner``'s namespace, for metadata: does not
        renew its TTL (404, 410)."""
        with self._operation():
            return await self._head(StreamId(owner, name))

    async def _touch(self, meta: Meta) -> None:
        if meta.ttl is None:
            return
        meta.deadline = self._wall_clock() + meta.ttl
        # Not a change readers or writers act on: no new version, and lost if the stream moved.
        ops = [["HSET", self._keys.meta(meta.stream_id), "dl", repr(meta.deadline)], *self._lifetime(meta)]
        await self._commit([meta], ops)

    # -- create -----------------------------------------------------------------------------------

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> tuple[Meta, bool]:
        """Create the stream ``name`` in ``owner``'s namespace, or confirm an
        identical one (see the memory store)."""
        if request.ttl is not None and request.expires_at is not None:
            raise bad_request("ttl_and_expires_at", "send Stream-TTL or Stream-Expires-At, not both")
        ident = StreamId(owner, name)
        with self._operation():
            async with self._writing(ident):
                return await self._create(ident, request)

    async def _create(self, ident: StreamId, request: CreateRequest) -> tuple[Meta, bool]:
        for _ in range(MAX_ATTEMPTS):
            existing = await self._find(ident)
            if existing is not None:
                return _confirm(existing, request), False
            created = await self._try_create(ident, request)
            if created is not None:
                return created, True
        raise _contention(ident.name)

    async def _try_create(self, ident: StreamId, request: CreateRequest) -> Meta | None:
        source = None if request.fork is None else await self._fork_source(ident.sibling(request.fork.source))
        content_type, data = plan_create(request, None if source is None else source.content_type)
        base, chunks = START, []
        if source is not None:
            assert request.fork is not None
            base, prefix = await self._fork_point(source, request.fork)
            if prefix:
                chunks.append(prefix)
        if data:
            chunks.append(data)
        ttl, expires_at = request.ttl, request.expires_at
        if source is not None and ttl is None and expires_at is None:
            ttl, expires_at = source.ttl, source.expires_at
        deadline = None
        if ttl is not None:
            deadline = self._wall_clock() + ttl
        elif expires_at is not None:
            deadline = expires_at.timestamp
        incarnation = int(await self._require().incr(self._keys.incarnation))
        keys = self._keys
        ops: list[list[Any]] = [["DEL", keys.data(ident)]]
        payloads: list[bytes] = []
        tail = base
        for chunk in chunks:
            payloads.append(encode_data(chunk))
            ops.append(
                ["XADD", keys.data(ident), entry_id(tail.position, tail.seq + 1), "d", len(payloads) + 1]
            )
            tail = Offset(tail.seq + 1, tail.position + len(chunk))
        meta = Meta(
            name=ident.name,
            owner=ident.owner,
            version="1",
            incarnation=incarnation,
            content_type=content_type,
            config=config_text(request.config(content_type)),
            tail=tail,
            closed=request.closed,
            ttl=ttl,
            expires_at=expires_at,
            deadline=deadline,
            source=None if source is None else source.name,
            base=base,
        )
        ops.append(["HSET", keys.meta(ident), "v", "1", *_flat(meta_fields(meta))])
        ops += self._lifetime(meta)
        if source is not None:
            ops.append(["HINCRBY", keys.meta(source.stream_id), "forks", "1"])
            ops.append(["HINCRBY", keys.meta(source.stream_id), "v", "1"])
            ops += self._lifetime(replace(source, forks=source.forks + 1))
        ops.append(self._notify(ident))
        checks: list[Meta | StreamId] = [ident] if source is None else [ident, source]
        return meta if await self._commit(checks, ops, payloads) else None

    async def _fork_source(self, ident: StreamId) -> Meta:
        source = await self._find(ident)
        if source is None:
            raise not_found(ident.name)
        if source.soft_deleted:
            raise conflict("source_soft_deleted", f"cannot fork {ident.name!r}: it was deleted")
        return source

    async def _fork_point(self, source: Meta, fork: ForkSpec) -> tuple[Offset, Data | None]:
        """Where a fork of ``source`` starts, and the sub-offset units it copies."""
        tail = source.tail
        wanted = fork.offset
        if wanted is not None and (wanted.position > tail.position or wanted.seq > tail.seq):
            raise bad_request(
                "fork_offset_beyond_tail", f"Stream-Fork-Offset {wanted} is past the tail {tail}"
            )
        position = tail.position if wanted is None else wanted.position
        prefix: Data | None = None
        if fork.sub_offset:
            available = await self._data().extent(source, position)
            if fork.sub_offset > available:
                raise bad_request(
                    "fork_sub_offset_overshoot",
                    f"Stream-Fork-Sub-Offset {fork.sub_offset} is past the next boundary"
                    f" ({available} units on)",
                )
            prefix = await self._data().units(source, position, fork.sub_offset)
        return await self._data().offset_at(source, position), prefix

    # -- append and close -------------------------------------------------------------------

    async def append(self, name: str, request: AppendRequest, *, owner: str | None = None) -> AppendOutcome:
        """Append, close, or both, atomically across instances, to ``name`` in
        ``owner``'s namespace (see the memory store)."""
        ident = StreamId(owner, name)
        with self._operation():
            async with self._writing(ident):
                return await self._append(ident, request)

    async def _append(self, ident: StreamId, request: AppendRequest) -> AppendOutcome:
        for _ in range(MAX_ATTEMPTS):
            meta = await self._head(ident)
            decision = plan_append(meta, request)
            if isinstance(decision, AppendOutcome):  # a retry, or closing a closed stream
                await self._touch(meta)
                return decision
            result = await self._try_append(meta, request, decision.data)
            if result is not None:
                return result
        raise _contention(ident.name)

    async def _try_append(
        self, meta: Meta, request: AppendRequest, data: Data | None
    ) -> AppendOutcome | None:
        keys, claim = self._keys, request.producer
        ops: list[list[Any]] = []
        payloads: list[bytes] = []
        tail = meta.tail
        if data:
            payloads.append(encode_data(data))
            ops.append(["XADD", keys.data(meta.stream_id), entry_id(tail.position, tail.seq + 1), "d", 2])
            tail = Offset(tail.seq + 1, tail.position + len(data))
        producers = dict(meta.producers)
        if claim is not None:
            producers[claim.id] = ProducerState(claim.epoch, claim.seq)
        after = replace(
            meta,
            tail=tail,
            producers=producers,
            last_stream_seq=meta.last_stream_seq if request.stream_seq is None else request.stream_seq,
            closed=meta.closed or request.close,
            closed_by=claim if request.close else meta.closed_by,
            deadline=meta.deadline if meta.ttl is None else self._wall_clock() + meta.ttl,
        )
        version = str(int(meta.version) + 1)
        ops.append(["HSET", keys.meta(meta.stream_id), "v", version, *_flat(meta_fields(after))])
        ops += self._lifetime(after)
        ops.append(self._notify(meta.stream_id))
        if not await self._commit([meta], ops, payloads):
            return None
        if claim is None:
            return AppendOutcome(204, after.tail, after.closed)
        status = 200 if data else 204
        return AppendOutcome(
            status, after.tail, after.closed, producer_epoch=claim.epoch, producer_seq=claim.seq
        )

    # -- delete and expire -------------------------------------------------------------------

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        """Delete the stream ``name`` of ``owner``'s namespace (soft-delete while
        forks read it): 404, 410."""
        ident = StreamId(owner, name)
        with self._operation():
            async with self._writing(ident):
                for _ in range(MAX_ATTEMPTS):
                    if await self._delete(await self._head(ident)):
                        return
            raise _contention(name)

    async def _delete(self, meta: Meta) -> bool:
        """Delete (or soft-delete) ``meta``'s stream; False if it moved meanwhile."""
        if meta.forks > 0:
            key = self._keys.meta(meta.stream_id)
            ops = [["HSET", key, "del", "1"], ["HDEL", key, "dl"], ["HINCRBY", key, "v", "1"]]
            ops += self._lifetime(replace(meta, soft_deleted=True, deadline=None))
            return await self._commit([meta], [*ops, self._notify(meta.stream_id)])
        return await self._remove(meta)

    async def _remove(self, meta: Meta) -> bool:
        """Remove ``meta``'s stream and drop it from its source; then the source too,
        if it was soft-deleted and this was its last fork (and so on up)."""
        keys = self._keys
        ops: list[list[Any]] = [["DEL", keys.meta(meta.stream_id)], ["DEL", keys.data(meta.stream_id)]]
        checks: list[Meta | StreamId] = [meta]
        source = None if meta.source is None else await self._load(meta.stream_id.sibling(meta.source))
        if source is not None:
            checks.append(source)
            ops += [
                ["HINCRBY", keys.meta(source.stream_id), "forks", "-1"],
                ["HINCRBY", keys.meta(source.stream_id), "v", "1"],
                *self._lifetime(replace(source, forks=source.forks - 1)),
            ]
        if not await self._commit(checks, [*ops, self._notify(meta.stream_id)]):
            return False
        if source is not None and source.soft_deleted and source.forks == 1:
            # Best effort: a lookup removes a soft-deleted stream left without forks.
            for _ in range(MAX_ATTEMPTS):
                current = await self._load(source.stream_id)
                if current is None or not (current.soft_deleted and current.forks == 0):
                    break
                if await self._remove(current):
                    break
        return True

    # -- reads ----------------------------------------------------------------------------------

    async def open_read(self, name: str, *, owner: str | None = None) -> RedisSource:
        """The stream ``name`` of ``owner``'s namespace, to read (renews its TTL): 404, 410."""
        with self._operation():
            meta = await self._head(StreamId(owner, name))
            await self._touch(meta)
            return RedisSource(self, meta)

    # -- commits ------------------------------------------------------------------------------------

    def _lifetime(self, meta: Meta) -> list[list[Any]]:
        """Redis key TTLs as a backstop for the stored deadline of ``meta`` (as it
        will be after the commit): a stream nobody looks up again still goes,
        :data:`EXPIRY_GRACE` after its deadline. A stream that forks read
        (or a soft-deleted one) has none: it must outlive its deadline."""
        keys = (self._keys.meta(meta.stream_id), self._keys.data(meta.stream_id))
        # A fork has none either: Redis dropping its keys would leave its
        # source counting it for ever; a lookup removes an expired fork properly.
        if meta.deadline is None or meta.forks > 0 or meta.soft_deleted or meta.source is not None:
            return [["PERSIST", key] for key in keys]
        at = str(int((meta.deadline + EXPIRY_GRACE) * 1000))
        return [["PEXPIREAT", key, at] for key in keys]

    def _notify(self, ident: StreamId) -> list[Any]:
        return ["XADD", self._keys.notify, "MAXLEN", "~", str(NOTIFY_MAXLEN), "*", *notify_fields(ident)]

    async def _commit(
        self,
        checks: list[Meta | StreamId],
        ops: list[list[Any]],
        payloads: tuple[bytes, ...] | list[bytes] = (),
    ) -> bool:
        """Apply ``ops`` if every checked stream is at the version it was loaded at
        (a :class:`StreamId`: the stream must not exist)."""
        keys = [
            self._keys.meta(check if isinstance(check, StreamId) else check.stream_id) for check in checks
        ]
        wanted = [False if isinstance(check, StreamId) else check.version for check in checks]
        spec = json.dumps({"c": wanted, "o": ops})
        done = await self._script(keys=keys, args=[spec, *payloads])
        return bool(int(done))


def _confirm(meta: Meta, request: CreateRequest) -> Meta:
    confirm_existing(meta, request, config_text)
    return meta


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _contention(name: str) -> DurableStreamError:
    logger.warning("durable streams: %r kept changing (%d attempts)", name, MAX_ATTEMPTS)
    return DurableStreamError(
        503,
        "store_contention",
        f"{name!r} kept changing under this request ({MAX_ATTEMPTS} attempts); retry",
        headers={"Retry-After": "1"},
    )
