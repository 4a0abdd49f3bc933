"""``RedisDurableStore``: Durable Streams kept in Redis, shared by every instance on it.

Theory of operation
-------------------
Layout: see :mod:`._layout`. Every operation names a stream by
``(owner, name)`` (:class:`~.._access.StreamId`; ``owner=None`` is the shared
namespace), a fork's source being in the fork's namespace; the key names
encode both, injectively. Offsets are the ``tail`` kept in each
stream's meta hash, so they are the same after a restart and on every
instance.

Writes are optimistic: an operation loads the meta hash, decides with the
same pure code as the memory store (:func:`~.._append.plan_append` for an
append), then commits with the :data:`~._layout.COMMIT` script, which
applies the write only if the version it decided on has not moved. If it
moved (another instance wrote meanwhile), it loads and decides again:
appends to one stream are serialized across instances, with their
``Stream-Seq``, producer and close checks, and never interleave.

Appends are group-committed (:mod:`._batch`): the appends to one
stream that arrive while its commit is in flight are decided together
(:mod:`._plan`) and share the next round trip. The store keeps its
last view of each stream it wrote (:mod:`._views`, bounded), so a batch
is planned without a load and commits in one round trip; if another
instance moved the stream, the check fails and the batch is planned again
on a fresh load.

Every script call names one stream's keys (one Cluster slot). A fork
takes a reference on its source (``forks``, checked and counted on the
source's slot) before it is created on its own, and gives it back after it
is removed; a crash in between leaves the source counting one fork too
many (kept, never read wrong). On a Cluster the notification of a change
is sent after its commit (the notify key has a slot of its own).

Lifetimes are stored deadlines (POSIX time, shared by every instance): a
stream past its deadline is deleted when next looked up, as in memory.
Redis key TTLs only back them up (``EXPIRY_GRACE`` later), and a stream
that forks read (or a soft-deleted one) has none: it must outlive its
deadline while they do.

Lookups (a stream past its deadline is deleted when next looked up) and
deletion, with the fork references a removal gives back, are in
:mod:`._lifecycle`. The connection, request accounting (closing waits for requests under way),
writer turns, live reads and errors (a Redis that cannot be reached is a
503) are in :mod:`._connection`, the store's base class.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._access import StreamId
from .._create import confirm_existing, plan_create
from .._errors import DurableStreamError, bad_request, conflict, not_found
from .._offsets import START, Offset
from ._batch import GroupCommit
from ._connection import RedisSource
from ._layout import Meta, config_text, encode_data, entry_id, meta_fields
from ._lifecycle import MAX_ATTEMPTS, Lifecycle, contention
from ._listing import list_tails
from ._plan import is_plain, plain_appends, plan_batch, rebased, version_check

if TYPE_CHECKING:
    from collections.abc import Callable

    import trio

    from .._log import Data, Slice
    from .._stream import AppendOutcome, AppendRequest, CreateRequest, ForkSpec
    from ._batch import Pending


class RedisDurableStore(Lifecycle):
    """Durable Streams in Redis (see the module docstring and docs/durable.md).

    Use ``async with store.connect(url, prefix=...):`` (or let
    :class:`~trio_streams.web.TrioStreams` connect it to its Redis run store).
    Until connected, every request is a 503.

    Args:
        max_read_bytes: a catch-up read stops after the append that passes this.
        wall_clock: POSIX time, for TTLs and ``Stream-Expires-At``.
        max_pending_appends, max_pending_bytes: appends (and their body bytes)
            waiting for Redis in the whole store; past either an append is a
            503 ``store_busy`` (see :mod:`._batch`).
    """

    def __init__(
        self,
        *,
        max_read_bytes: int = 1024 * 1024,
        wall_clock: Callable[[], float] = time.time,
        max_pending_appends: int = 10_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if max_read_bytes < 1:
            raise ValueError("max_read_bytes must be positive")
        super().__init__(wall_clock)
        self.max_read_bytes = max_read_bytes
        self.group_commit = GroupCommit(
            self._commit_batch, max_pending=max_pending_appends, max_pending_bytes=max_pending_bytes
        )

    # -- lookups -----------------------------------------------------------------------------

    async def read(self, meta: Meta, position: int) -> Slice:
        """The data of ``meta``'s stream from ``position`` (at most about ``max_read_bytes``)."""
        recent = self._local.recent(meta.stream_id)
        return await self._data().read(meta, position, self.max_read_bytes, recent)

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
        raise contention(ident.name)

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
        if source is not None and not await self._take_fork(source):
            return None  # the source moved (deleted, or soft-deleted): look again
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
        if await self._commit([False], [ident], ops, payloads, notify=ident):
            self._local.remember(meta)
            return meta
        if source is not None:
            await self._give_back_fork(source.stream_id, source.incarnation)
        return None

    async def _take_fork(self, source: Meta) -> bool:
        """Count one more fork on ``source`` (this incarnation, not soft-deleted); False if it moved."""
        key = self._keys.meta(source.stream_id)
        ops = [["HINCRBY", key, "forks", "1"], ["HINCRBY", key, "v", "1"]]
        ops += self._lifetime(replace(source, forks=source.forks + 1))
        return await self._commit([{"i": str(source.incarnation)}], [source.stream_id], ops)

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
        ``owner``'s namespace (see the memory store), group-committed with the
        other appends to it (see :mod:`._batch`).

        Cancellation: see :meth:`~._batch.GroupCommit.submit`.
        """
        with self._operation():
            return await self.group_commit.submit(StreamId(owner, name), request)

    async def _commit_batch(self, ident: StreamId, batch: list[Pending]) -> None:
        """Decide and commit ``batch`` (appends to ``ident``), answering each.

        Planned on the store's last view of the stream if it has one (and it
        has not passed its deadline, and is complete unless the batch is only
        plain appends), else on a fresh load; a failed check (another instance
        wrote) loads and plans again. Plain appends are placed where the tail
        is then, with no version to fail (see :mod:`._plan`).
        """
        requests = [item.request for item in batch]
        for _ in range(MAX_ATTEMPTS):
            meta = self._local.view(ident)
            if (
                meta is None
                or (meta.deadline is not None and self._wall_clock() >= meta.deadline)
                or (meta.partial and not all(map(is_plain, requests)))
            ):
                try:
                    meta = await self._head(ident)
                except DurableStreamError as exc:
                    for item in batch:
                        item.answer(exc)
                    return
            now = self._wall_clock()
            plan = plan_batch(self._keys, meta, requests, now)
            notify = ident if plan.changed else None
            # Taken before the commit: a change from elsewhere landing after it is counted
            # when its notification comes, however soon that is.
            since = self._notifications.elsewhere
            plain = plain_appends(self._keys, meta, requests, plan)
            if plain is None:
                done = await self._commit(
                    [version_check(meta)], [ident], plan.ops, plan.payloads, notify=notify
                )
            else:
                placed = await self._commit_plain(ident, plain, plan.payloads, notify)
                if placed is not None and placed[0] != meta.version:
                    plan = rebased(self._keys, meta, requests, placed[0], placed[1], now)
                done = placed is not None
            if done:
                self._local.remember(plan.after, plan.entries, sum(map(len, plan.payloads)), since=since)
                for item, answer in zip(batch, plan.answers, strict=True):
                    item.answer(answer)
                return
            self._local.forget(ident)
        error = contention(ident.name)
        for item in batch:
            item.answer(error)

    # -- reads ----------------------------------------------------------------------------------

    async def open_read(self, name: str, *, owner: str | None = None) -> RedisSource:
        """The stream ``name`` of ``owner``'s namespace, to read (renews its TTL): 404, 410."""
        with self._operation():
            meta = await self._head(StreamId(owner, name))
            await self._touch(meta)
            return RedisSource(self, meta)

    async def list_tails(self, *, owner: str | None = None) -> list[tuple[str, Offset]]:
        """Every live stream of ``owner``'s namespace with its tail (subscriptions'
        backfill): a ``SCAN`` of its meta keys (see :mod:`._listing`).

        Cancellation: nothing changes; the listing is abandoned.
        """
        with self._operation():
            return await list_tails(self._require(), self._keys, owner, wall_clock=self._wall_clock)

    async def set_once(self, name: str, value: bytes) -> bytes:
        """Keep ``value`` at ``{prefix}<name>`` unless a value is there (``SET NX``);
        the value there. For what every instance must share (the webhook signing key).

        Cancellation: the value may or may not have been stored.
        """
        with self._operation():
            # One script: SET NX then GET could see the key deleted in between.
            stored = await self._require().eval(_SET_ONCE, keys=[self._keys.prefix + name], args=[value])
            assert isinstance(stored, bytes)
            return stored

    def _view(self, ident: StreamId) -> Meta | None:
        return self._local.view(ident)

    def _settled(self, ident: StreamId) -> Meta | None:
        return self._local.settled(ident, self._notifications.elsewhere)

    def _attach(self, nursery: trio.Nursery | None) -> None:
        self.group_commit.attach(nursery)
        self._local.clear()  # another connection, maybe another Redis: views start afresh


#: KEYS[1] keeps ARGV[1] unless it holds a value; returns the value it holds.
_SET_ONCE = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])"


def _confirm(meta: Meta, request: CreateRequest) -> Meta:
    confirm_existing(meta, request, config_text)
    return meta


def _flat(fields: dict[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]
