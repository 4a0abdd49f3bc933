"""Looking Durable Streams up in Redis, and deleting them: the base of :class:`~._store.RedisDurableStore`.

A lookup loads a stream's meta hash; a stream past its deadline (or a
soft-deleted one left without forks by an interrupted cascade) is deleted
first, as the memory store does. Deleting a stream that forks still read
only marks it soft-deleted; removing one gives its source the fork
reference back, which removes the source too when it was soft-deleted and
this was its last fork (and so on up). Every write is a version-checked
commit (:mod:`._commits`): one that finds the stream moved loads and tries
again, at most :data:`MAX_ATTEMPTS` times (then a 503).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._access import StreamId
from .._errors import DurableStreamError, gone, not_found
from ._commits import Commits
from ._plan import version_check
from ._views import LocalViews

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._layout import Meta

logger = logging.getLogger("trio_streams.durable.redis")

#: Loads and decisions per operation before giving up (503): only endless
#: contention on one stream gets there.
MAX_ATTEMPTS = 100


class Lifecycle(Commits):
    """Lookups and deletion (see the module docstring).

    Args:
        wall_clock: POSIX time, for stored deadlines.
    """

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        super().__init__()
        self._wall_clock = wall_clock
        #: What this instance's commits left of the streams it wrote (a batch's starting point).
        self._local = LocalViews(self._notifications.waiting)

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
        raise contention(ident.name)

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
        await self._commit([version_check(meta)], [meta.stream_id], ops)

    async def _give_back_fork(self, ident: StreamId, incarnation: int | None) -> None:
        """Count one fork less on ``ident`` (if still ``incarnation``, when given); remove it if it
        was soft-deleted and this was its last fork (and so on up)."""
        for _ in range(MAX_ATTEMPTS):
            source = await self._load(ident)
            if source is None or incarnation not in (None, source.incarnation):
                return
            key = self._keys.meta(ident)
            after = replace(source, forks=max(source.forks - 1, 0))
            ops = [["HSET", key, "forks", str(after.forks)], ["HINCRBY", key, "v", "1"]]
            if await self._commit([version_check(source)], [ident], [*ops, *self._lifetime(after)]):
                break
        else:
            raise contention(ident.name)
        if not (after.soft_deleted and after.forks == 0):
            return
        # Best effort: a lookup removes a soft-deleted stream left without forks.
        for _ in range(MAX_ATTEMPTS):
            current = await self._load(ident)
            if current is None or not (current.soft_deleted and current.forks == 0):
                break
            if await self._remove(current):
                break

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        """Delete the stream ``name`` of ``owner``'s namespace (soft-delete while
        forks read it): 404, 410."""
        ident = StreamId(owner, name)
        with self._operation():
            async with self._writing(ident):
                for _ in range(MAX_ATTEMPTS):
                    if await self._delete(await self._head(ident)):
                        return
            raise contention(name)

    async def _delete(self, meta: Meta) -> bool:
        """Delete (or soft-delete) ``meta``'s stream; False if it moved meanwhile."""
        self._local.forget(meta.stream_id)
        if meta.forks > 0:
            key = self._keys.meta(meta.stream_id)
            ops = [["HSET", key, "del", "1"], ["HDEL", key, "dl"], ["HINCRBY", key, "v", "1"]]
            ops += self._lifetime(replace(meta, soft_deleted=True, deadline=None))
            return await self._commit([version_check(meta)], [meta.stream_id], ops, notify=meta.stream_id)
        return await self._remove(meta)

    async def _remove(self, meta: Meta) -> bool:
        """Remove ``meta``'s stream, then give its source the fork back (which
        removes the source too if it was soft-deleted and this was its last fork)."""
        keys = self._keys
        ops: list[list[Any]] = [["DEL", keys.meta(meta.stream_id)], ["DEL", keys.data(meta.stream_id)]]
        self._local.forget(meta.stream_id)
        if not await self._commit([version_check(meta)], [meta.stream_id], ops, notify=meta.stream_id):
            return False
        if meta.source is not None:
            # Its source cannot have been removed (it counted this fork): no incarnation to check.
            await self._give_back_fork(meta.stream_id.sibling(meta.source), None)
        return True


def contention(name: str) -> DurableStreamError:
    """The 503 of an operation that found ``name`` moved :data:`MAX_ATTEMPTS` times."""
    logger.warning("durable streams: %r kept changing (%d attempts)", name, MAX_ATTEMPTS)
    return DurableStreamError(
        503,
        "store_contention",
        f"{name!r} kept changing under this request ({MAX_ATTEMPTS} attempts); retry",
        headers={"Retry-After": "1"},
    )
