"""One Redis connection layer for both stores: the runs' RedisStore and Durable Streams' RedisDurableStore.

Theory of operation
-------------------
A :class:`RedisConnection` is everything the two stores share about one
Redis (or Redis Cluster): the URL (with its ``?cluster=yes|no`` flag), the
timeouts, the key prefix and its key builder (:class:`~._keys.RedisKeys`,
whose injective owner encoding Durable Streams' keys use too), the
connect-and-ping at start with its one-line errors, the layout version
check (:func:`~._layout.check_layout`), the health (fail fast while
Redis does not answer: :mod:`._health`) with its probe, and closing.

``async with connection.open():`` connects its text client (replies as
``str``, the runs' store) and runs the probe in a nursery it owns for the
block; ``async with connection.binary_client() as client:`` adds a client
whose replies are ``bytes`` (Durable Streams' data), on the same URL,
options and health, for as long as its block, inside ``open()``'s.
Every command of either fails with :class:`RedisUnavailable` when Redis
cannot be used; the stores answer that with 503 and ``Retry-After``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import coredis
import trio

from ._client import Client, client_from_url, release_leftovers, safe_url, split_cluster_flag
from ._health import RedisHealth, RedisUnavailable
from ._keys import RedisKeys
from ._layout import LayoutMismatch, check_layout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

logger = logging.getLogger("trio_streams.redis")


def names_a_cluster(url: str) -> bool:
    """Whether ``url`` says ``?cluster=yes`` (a bad flag: ``False``; opening reports it)."""
    try:
        return bool(split_cluster_flag(url)[1])
    except ValueError:
        return False


class RedisConnection:
    """One Redis (or Cluster) as both stores use it; see the module docstring.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS)
            or ``unix://path``; ``?cluster=yes`` names a Cluster node.
        prefix: prepended to every key of both stores.
        cluster: ``url`` names a node of a Redis Cluster; ``None``: as the URL says.
        connect_timeout: bound on the start's checks and on each connect.
        stream_timeout: bound on each command's reply.
        probe_timeout, probe_min, probe_max: the health probe's bound and backoff.

    Raises:
        ValueError: a bad ``cluster=`` flag in the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "trio_streams:",
        cluster: bool | None = None,
        connect_timeout: float = 5.0,
        stream_timeout: float = 10.0,
        probe_timeout: float = 1.0,
        probe_min: float = 0.05,
        probe_max: float = 1.0,
    ) -> None:
        url, url_cluster = split_cluster_flag(url)
        self.url = url
        #: True when ``url`` names a Redis Cluster node.
        self.cluster = bool(url_cluster) if cluster is None else cluster
        self.prefix = prefix
        #: The key builder of the runs' keys (Durable Streams build theirs on ``prefix`` too).
        self.keys = RedisKeys(prefix)
        self.connect_timeout = connect_timeout
        self.stream_timeout = stream_timeout
        self.health = RedisHealth(
            safe_url(url),
            stream_timeout=stream_timeout,
            probe_timeout=probe_timeout,
            probe_min=probe_min,
            probe_max=probe_max,
        )
        # Built when opened: a connection never opened leaves nothing open
        # (coredis's Cluster client creates a stream in its constructor).
        self._client: Client | None = None
        self._opened = False
        self._open = False

    def __repr__(self) -> str:
        return f"<RedisConnection {safe_url(self.url)} prefix={self.prefix!r}>"

    @property
    def healthy(self) -> bool:
        """False from a command timing out until the probe sees Redis answer."""
        return self.health.healthy

    def client(self) -> Client:
        """The text client (replies as ``str``), between ``open()`` and its end.

        Raises:
            trio.ClosedResourceError: not open.
        """
        if not self._open or self._client is None:
            raise trio.ClosedResourceError("the Redis connection is not open, or closed")
        return self._client

    def _new_client(self, *, decode: bool, stream_timeout: float | None = None) -> Any:
        return client_from_url(
            self.url,
            cluster=self.cluster,
            connect_timeout=self.connect_timeout,
            stream_timeout=self.stream_timeout if stream_timeout is None else stream_timeout,
            health=self.health,
            decode=decode,
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[RedisConnection]:
        """Connect, check (PING and the prefix's layout, within
        ``connect_timeout``), and keep the connection and its health probe
        for the block; then close it.

        Raises:
            RedisUnavailable: Redis cannot be reached or refuses us; the
                message says why (e.g. a wrong password), in one line.
            LayoutMismatch: the prefix holds another layout's data (docs/redis.md, "Upgrades").
            RuntimeError: opened before.

        Cancellation: the block ends and the client closes.
        """
        if self._opened:
            raise RuntimeError("a Redis connection can be opened once")
        self._opened = True
        client = self._client = self._new_client(decode=True)
        # A refusal is raised once the client is closed: raised inside its
        # block, coredis's connection pool would wrap it in an exception group.
        refused: RedisUnavailable | LayoutMismatch | None = None
        try:
            async with client:
                self._open = True
                try:
                    await self._check(client)
                except (RedisUnavailable, LayoutMismatch) as exc:
                    refused = exc
                else:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(self.health.probe, client.ping)
                        try:
                            yield self
                        finally:
                            nursery.cancel_scope.cancel(reason="redis connection closed")
        finally:
            self._open = False
            release_leftovers(client)
        if refused is not None:
            raise refused

    @asynccontextmanager
    async def binary_client(
        self, *, stream_timeout: float | None = None
    ) -> AsyncIterator[coredis.Redis[bytes]]:
        """A client on this connection whose replies are ``bytes``, for the block
        (inside ``open()``'s). Its commands share this connection's health.

        Args:
            stream_timeout: its commands' reply timeout, if not the
                connection's (a client for long ``XREAD BLOCK`` reads: coredis
                bounds a blocking command by it too).

        Raises:
            trio.ClosedResourceError: the connection is not open.
        """
        self.client()
        client = self._new_client(decode=False, stream_timeout=stream_timeout)
        try:
            async with client:
                yield client
        finally:
            release_leftovers(client)

    async def _check(self, client: Client) -> None:
        where = safe_url(self.url)
        try:
            with self.health.exempt(), trio.fail_after(self.connect_timeout):
                await client.ping()
                await check_layout(client, self.prefix)
        except LayoutMismatch:
            raise
        except trio.TooSlowError:
            raise RedisUnavailable(
                f"redis at {where} did not answer within {self.connect_timeout}s"
            ) from None
        except coredis.exceptions.AuthenticationError as exc:
            raise RedisUnavailable(f"redis at {where} refused the credentials: {exc}") from None
        except coredis.exceptions.AuthorizationError as exc:
            raise RedisUnavailable(f"redis at {where} refused the credentials: {exc}") from None
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise RedisUnavailable(
                f"cannot use redis at {where}: {type(exc).__name__}: {exc} ({type(cause).__name__}: {cause})"
            ) from None


__all__ = ["RedisConnection", "RedisUnavailable", "names_a_cluster"]
