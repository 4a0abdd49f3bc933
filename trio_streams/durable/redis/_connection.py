"""The Redis connection of a :class:`~._store.RedisDurableStore`, and the requests using it.

Theory of operation
-------------------
:class:`StoreConnection` is the store's base: it uses a Redis connection
(:class:`~trio_streams.log.redis._store.RedisConnection`, the one Redis layer:
URL, prefix, layout check, health) and follows the notifications for the
length of an ``async with attach(connection)`` block -- the runs'
``RedisStore``'s own connection when served beside it -- or of an
``async with connect(url)`` block (a connection of its own); it
counts the requests under way so that a closing store waits for them
(within ``CLOSE_GRACE``), and makes the writers of one stream on this
instance take turns. The stream operations themselves (create, fork,
append, delete, commits, lifetimes) are in :mod:`._store`.

Live reads (long-poll, SSE) are woken through :mod:`._notify` (one
``XREAD BLOCK`` reader per instance); data is read by :mod:`._data`.
:class:`RedisSource` is a stream opened for reading.

Errors: a Redis that cannot be reached (or times out) is a 503 with a JSON
message and ``Retry-After``, never a traceback -- at once while the
connection is unhealthy (docs/redis.md, "Health: failing fast"); an SSE
response that loses it ends, and the client resumes from its last offset.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, Self

import coredis
import trio
from coredis.tokens import PureToken

from ...log import LiveReads
from ...log.redis._store import RedisConnection, RedisUnavailable
from .._errors import DurableStreamError
from .._reads import Chunked
from ._data import StreamData
from ._layout import NOTIFY_MAXLEN, SET_ONCE, Keys, Meta, etag_id
from ._notify import Notifications, notify_fields
from ._wire import CommitScript, WireCommitScript, commit_script

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractContextManager

    from .._access import StreamId
    from .._log import Slice
    from .._offsets import Offset

    #: A client of one Redis or of a Redis Cluster.
    Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

logger = logging.getLogger("trio_streams.durable.redis")

#: How long a closing store waits for the requests under way.
CLOSE_GRACE = 5.0
#: The least reply timeout of the notification follower's client (its
#: ``XREAD BLOCK`` waits up to 5 s, and coredis bounds it by this too).
FOLLOW_TIMEOUT = 10.0


class StoreConnection:
    """The connection half of :class:`~._store.RedisDurableStore`:
    life cycle, request accounting, writer turns and live reads."""

    def __init__(self) -> None:
        self._client: coredis.Redis[bytes] | None = None
        self._connection: RedisConnection | None = None
        #: Connected to a Redis Cluster (notifications are sent apart from commits).
        self.cluster = False
        self._reader: StreamData | None = None
        self._keys = Keys("trio_streams:")
        #: What ETag ids are keyed with (``ds:etag-key``; loaded when attached).
        self._etag_key: bytes | None = None
        #: The commit script (a CommitScript once connected; tests wrap it).
        self._script: Any = None
        self._notifications = Notifications()
        self._live_reads = LiveReads(self._notifications.wake_all)
        #: Per stream with writers under way here: their lock (dropped with the last).
        self._writers: dict[StreamId, _Turn] = {}
        #: Operations under way (a closing store waits for them, within CLOSE_GRACE).
        self._active = 0
        self._idle = trio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    # -- life cycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def connect(
        self,
        url: str,
        *,
        prefix: str = "trio_streams:",
        connect_timeout: float = 5.0,
        stream_timeout: float = 10.0,
        cluster: bool = False,
    ) -> AsyncIterator[Self]:
        """Connect to ``url`` (a Redis Cluster node with ``cluster``) and follow
        its notifications until the block ends.

        Raises:
            RedisUnavailable: Redis does not answer within ``connect_timeout``.
            RuntimeError: already connected.
            LayoutMismatch: the prefix holds another layout's data (docs/redis.md, "Upgrades").
            ValueError: ``url`` names a Redis Cluster (not supported yet).
        """
        if self._client is not None:
            raise RuntimeError("this RedisDurableStore is connected already")
        connection = RedisConnection(
            url,
            prefix=prefix,
            connect_timeout=connect_timeout,
            stream_timeout=stream_timeout,
            cluster=cluster or None,
        )
        async with connection.open(), self.attach(connection):
            yield self

    @asynccontextmanager
    async def attach(self, connection: RedisConnection) -> AsyncIterator[Self]:
        """Use ``connection`` (open, and shared with the runs' RedisStore: same
        Redis, key prefix, layout and health) and follow its notifications
        until the block ends; then requests under way finish (within CLOSE_GRACE).

        Raises:
            RuntimeError: already connected.
            trio.ClosedResourceError: ``connection`` is not open.
        """
        if self._client is not None:
            raise RuntimeError("this RedisDurableStore is connected already")
        # The follower's XREAD BLOCK waits for seconds: its own client, whose
        # timeout leaves room for that (data commands keep the connection's).
        follow_timeout = max(connection.stream_timeout, FOLLOW_TIMEOUT)
        async with (
            connection.binary_client() as client,
            connection.binary_client(stream_timeout=follow_timeout) as follower,
        ):
            self._keys = Keys(connection.prefix)
            # Before anything is served: every instance on the prefix keys ETags alike.
            etag_key = await client.eval(SET_ONCE, keys=[self._keys.etag_key], args=[secrets.token_bytes(32)])
            assert isinstance(etag_key, bytes)
            self._etag_key = etag_key
            self._connection = connection
            self._script = CommitScript(client)
            self._client = client
            self._reader = StreamData(client, self._keys)
            self._closing = False
            self.cluster = connection.cluster
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(self._notifications.follow, follower, self._keys.notify))
                    self._script = commit_script(client, connection, nursery)
                    self._attach(nursery)
                    try:
                        yield self
                    finally:
                        await self._drain()
                        self._attach(None)
                        nursery.cancel_scope.cancel(reason="durable store closed")
            finally:
                self._attach(None)
                self._client, self._reader, self._connection = None, None, None
                self._script = None  # its reader's nursery is closed: a commit now is a 503
                self._notifications.wake_all()

    def _etag_id(self, incarnation: int) -> str:
        """The ETag id of ``incarnation`` (see :func:`~._layout.etag_id`)."""
        if self._etag_key is None:
            self._require()  # not connected: a 503
        assert self._etag_key is not None
        return etag_id(self._etag_key, incarnation)

    def _attach(self, nursery: trio.Nursery | None) -> None:
        """Run the store's background tasks (its committers) in ``nursery``
        from now on (``None``: the store is closing)."""

    def _view(self, ident: StreamId) -> Meta | None:
        """The last state of ``ident`` this instance committed, if it keeps one."""
        return None

    def _settled(self, ident: StreamId) -> Meta | None:
        """The last state of ``ident`` this instance committed, if nothing from
        elsewhere can have changed it since (see ``Notifications.elsewhere``)."""
        return None

    async def _announce(self, ident: StreamId) -> None:
        """Tell every instance's readers that ``ident`` changed (on a Cluster,
        where the notify key cannot be written by a stream's commit)."""
        fields = notify_fields(ident, self._notifications.origin)
        await self._require().xadd(
            self._keys.notify,
            dict(zip(fields[::2], fields[1::2], strict=True)),
            trim_strategy=PureToken.MAXLEN,
            threshold=NOTIFY_MAXLEN,
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def _drain(self) -> None:
        """Closing: live reads end, and requests under way finish (within CLOSE_GRACE).

        Cancellation: shielded, bounded by CLOSE_GRACE.
        """
        self._closing = True
        self._notifications.wake_all()
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            while self._active:
                self._idle = trio.Event()
                await self._idle.wait()

    @contextmanager
    def _operation(self) -> Iterator[None]:
        """One request's use of Redis: counted (closing waits for it), and its
        Redis errors turned into a 503 with a message (at once while the
        connection is unhealthy: see docs/redis.md, "Health")."""
        if self._connection is not None:
            with _unavailable():
                self._connection.health.check()
        self._active += 1
        try:
            with _unavailable():
                yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @asynccontextmanager
    async def _writing(self, ident: StreamId) -> AsyncIterator[None]:
        """Writers of one stream on this instance take turns (a fair lock), so
        only instances race each other's commits: a burst of appends to one
        stream retries at most once per other instance writing, not once per writer.

        Cancellation: while queued, the request is cancelled and nothing is written.
        """
        turn = self._writers.get(ident)
        if turn is None:
            turn = self._writers[ident] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._writers[ident]

    def _require(self) -> Client:
        if self._client is None:
            raise DurableStreamError(
                503, "store_unavailable", "the Durable Streams store is not connected to Redis"
            )
        return self._client

    def _commit_script(self) -> CommitScript | WireCommitScript:
        if self._script is None:
            self._require()
        script: CommitScript | WireCommitScript = self._script
        return script

    # -- lookups -----------------------------------------------------------------------------

    def _data(self) -> StreamData:
        if self._reader is None:
            self._require()
        assert self._reader is not None
        return self._reader

    async def _load(self, ident: StreamId) -> Meta | None:
        return await self._data().load(ident)

    # -- live reads -------------------------------------------------------------------------------

    @property
    def live_reads(self) -> bool:
        return self._live_reads.open

    def end_live_reads(self) -> None:
        """For shutdown: every wait returns now, and later ones do not wait."""
        self._live_reads.end()

    def resume_live_reads(self) -> None:
        self._live_reads.resume()

    async def wait(self, source: RedisSource, position: int, deadline: float) -> bool:
        """Wait until ``source``'s stream has data past ``position``, closes, goes
        away, or ``deadline`` (or live reads end). False: waiting again is pointless.

        Cancellation: only the wait is cancelled; nothing changes.
        """
        self._active += 1
        try:
            with self._notifications.watching(source.stream_id) as current_event:
                return await self._wait(source, position, deadline, current_event)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _wait(
        self, source: RedisSource, position: int, deadline: float, current_event: Callable[[], trio.Event]
    ) -> bool:
        while self._live_reads.open and not self._closing and self._client is not None:
            event = current_event()  # before the load: no lost wake-up
            view = self._view(source.stream_id)
            if (
                view is not None
                and view.incarnation == source.incarnation
                and (view.tail.position > position or view.closed)
            ):
                # This instance committed it (and woke us): as good as a load at that commit.
                source.meta, source.fresh = view, True
                return True
            meta = self._settled(source.stream_id)
            if meta is None or meta.incarnation != source.incarnation or meta.deadline is not None:
                # (A stream with a deadline may expire in Redis unannounced: it is loaded.)
                try:
                    meta = await self._load(source.stream_id)
                except (coredis.exceptions.RedisError, OSError) as exc:
                    logger.warning(
                        "a live read of %r lost redis: %s",
                        source.stream_id.name,
                        exc,
                        extra={"stream": source.stream_id.name, "event": "live_read_lost_redis"},
                    )
                    return False
            # else: nothing past this instance's own last commit, which left the
            # stream where this reader is: no load (a change will wake it).
            if meta is None or meta.incarnation != source.incarnation or meta.soft_deleted:
                return False
            source.meta = meta
            if meta.tail.position > position or meta.closed:
                source.fresh = True  # the read that follows need not load it again
                return True
            with trio.move_on_at(deadline) as waited:
                await event.wait()
            if waited.cancelled_caught:
                return True
        await trio.lowlevel.checkpoint()
        return False


@dataclass(eq=False)
class _Turn:
    lock: trio.Lock = field(default_factory=trio.Lock)
    users: int = 0


class _SourceStore(Protocol):
    """What a :class:`RedisSource` uses of its store (a
    :class:`~._store.RedisDurableStore`; named here, so this module does not
    import the store that builds on it)."""

    def _operation(self) -> AbstractContextManager[None]: ...

    def _etag_id(self, incarnation: int) -> str: ...

    async def _load(self, ident: StreamId) -> Meta | None: ...

    async def read(self, meta: Meta, position: int) -> Slice: ...

    async def wait(self, source: RedisSource, position: int, deadline: float) -> bool: ...


class RedisSource:
    """A stream in Redis as a :class:`~.._reads.ReadSource`; tail and state are
    those of the last look at it."""

    def __init__(self, store: _SourceStore, meta: Meta) -> None:
        self._store = store
        self.meta = meta
        self.stream_id = meta.stream_id
        self.incarnation = meta.incarnation
        self.content_type = meta.content_type
        self.json = meta.json
        self.etag_id = store._etag_id(meta.incarnation)
        #: ``meta`` was loaded just now (by a wait): the next read uses it as is.
        self.fresh = False

    def tail(self) -> Offset:
        return self.meta.tail

    def is_closed(self) -> bool:
        return self.meta.closed

    async def read(self, position: int) -> Chunked:
        with self._store._operation():
            if not self.fresh:
                meta = await self._store._load(self.stream_id)
                if meta is not None and meta.incarnation == self.incarnation:
                    self.meta = meta
            self.fresh = False
            found = await self._store.read(self.meta, position)
        up_to_date = found.end.position == self.meta.tail.position
        return Chunked(found.pieces, found.end, up_to_date, up_to_date and self.meta.closed)

    async def wait(self, position: int, deadline: float) -> bool:
        return await self._store.wait(self, position, deadline)


@contextmanager
def _unavailable() -> Iterator[None]:
    """Redis errors as a 503 with a message (a protocol error passes through)."""
    try:
        yield
    except (coredis.exceptions.RedisError, OSError) as exc:
        # RedisUnavailable: the connection said it once already (its health), or will.
        log = logger.debug if isinstance(exc, RedisUnavailable) else logger.warning
        log("durable streams: redis is unavailable: %s: %s", type(exc).__name__, exc)
        raise DurableStreamError(
            503, "store_unavailable", f"redis is unavailable: {exc}", headers={"Retry-After": "1"}
        ) from None
