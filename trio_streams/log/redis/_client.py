"""Opening a coredis client from a URL: health-guarded, with connection attempts that clean up.

Every command and pipeline of a client built here runs through its
connection's :class:`~._health.RedisHealth` (fail fast while Redis
does not answer; see there). A timed-out command is not retried (it would
wait out its timeout again); a lost connection is, twice, as coredis does.
Commands are guarded in ``execute_command`` (public), pipelines in
``_execute`` (private in coredis 6.9, where every pipeline ends up; a
coredis upgrade must keep it: ``tests/test_redis_freeze.py`` would notice).

coredis (6.9) creates a connection's internal anyio memory streams in its
constructor but closes them only once the socket is open: every failed
connection attempt (Redis down, wrong port) left four unclosed streams behind,
reported as ``ResourceWarning`` / "unraisable exception" when garbage
collected. :func:`client_from_url` installs connection classes that close
them when the attempt fails.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import ClusterDownError
from coredis.patterns.pipeline import ClusterPipeline, Pipeline
from coredis.retry import CompositeRetryPolicy, ConstantRetryPolicy, RetryPolicy

from ._health import RedisHealth, RedisUnavailable, quiet_coredis_tracebacks, timed_out

if TYPE_CHECKING:
    from coredis.commands import CommandRequest
    from coredis.connection import BaseConnection

R = TypeVar("R")

#: Either kind of client; both speak the commands the store uses.
Client: TypeAlias = "coredis.Redis[str] | coredis.RedisCluster[str]"

_CLOSING: dict[type[Any], type[Any]] = {}


class _RetryLost(ConstantRetryPolicy):
    """Retries a lost connection, not one that timed out (Redis not
    answering: a retry would wait out the timeout again)."""

    def will_retry(self, exc: BaseException) -> bool:
        return super().will_retry(exc) and not timed_out(exc)


class _Redis(coredis.Redis[Any]):
    """A single-node client whose commands and pipelines run through its health."""

    health: RedisHealth

    async def execute_command(self, command: CommandRequest[R]) -> R:
        return await self.health.run(partial(super().execute_command, command), blocking=command.blocking)

    def pipeline(
        self, transaction: bool = True, *, raise_on_error: bool = True, timeout: float | None = None
    ) -> Pipeline[Any]:
        return _Pipeline(self, transaction, raise_on_error, timeout)


class _Pipeline(Pipeline[Any]):
    async def _execute(self) -> None:
        health: RedisHealth = self.client.health  # type: ignore[attr-defined]
        # A pipeline that blocks (the shared read's XREAD BLOCK, _tails.py) waits on
        # purpose, as a lone blocking command does: its timeout says nothing about Redis.
        blocking = any(command.blocking for command in self.command_stack)
        await health.run(super()._execute, blocking=blocking)


class _RedisCluster(coredis.RedisCluster[Any]):
    """A Cluster client whose commands and pipelines run through its health."""

    health: RedisHealth

    async def execute_command(self, command: CommandRequest[R]) -> R:
        return await self.health.run(partial(super().execute_command, command), blocking=command.blocking)

    def pipeline(
        self,
        transaction: bool = False,
        *,
        raise_on_error: bool = True,
        timeout: float | None = None,
    ) -> ClusterPipeline[Any]:
        return _ClusterPipeline(
            client=self, raise_on_error=raise_on_error, transaction=transaction, timeout=timeout
        )


class _ClusterPipeline(ClusterPipeline[Any]):
    async def _execute(self) -> None:
        health: RedisHealth = self.client.health  # type: ignore[attr-defined]
        await health.run(super()._execute, blocking=False)


def _close_buffers(connection: BaseConnection) -> None:
    for name in (
        "_push_message_buffer_in",
        "_push_message_buffer_out",
        "_streamed_message_buffer_in",
        "_streamed_message_buffer_out",
        "_write_buffer_in",
        "_write_buffer_out",
    ):
        stream = getattr(connection, name, None)
        if stream is not None:
            stream.close()


def closing_connection_class(cls: type[Any]) -> type[Any]:
    """A subclass of coredis connection class ``cls`` whose failed connection
    attempts close their internal memory streams (coredis 6.9 leaves them
    open, and they surface later as unraisable ``ResourceWarning`` warnings).
    One subclass per ``cls``, cached; set it as a pool's ``connection_class``."""
    closing = _CLOSING.get(cls)
    if closing is None:

        async def _connect(self: BaseConnection) -> Any:
            try:
                return await super(closing, self)._connect()  # type: ignore[arg-type]
            except BaseException:
                # State-only handler: release the buffers, then re-raise as is.
                _close_buffers(self)
                raise

        closing = type(f"Closing{cls.__name__}", (cls,), {"_connect": _connect})
        _CLOSING[cls] = closing
    return closing


def client_from_url(
    url: str,
    *,
    cluster: bool,
    connect_timeout: float,
    stream_timeout: float,
    health: RedisHealth,
    decode: bool = True,
) -> Any:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``; user and
    password pass through) whose commands run through ``health``; replies
    decoded to ``str`` if ``decode``, else ``bytes``. Enter it (``async with
    client:``) before use."""
    quiet_coredis_tracebacks()
    options: dict[str, Any] = {
        "decode_responses": decode,
        "connect_timeout": connect_timeout,
        "stream_timeout": stream_timeout,
    }
    client: Any
    if cluster:
        # Name the startup node ourselves: coredis's own URL parsing passes it
        # in a deprecated form (and warns).
        parsed = urlsplit(url)
        node = TCPLocation(parsed.hostname or "localhost", parsed.port or 6379)
        retry: RetryPolicy = CompositeRetryPolicy(
            ConstantRetryPolicy((ClusterDownError,), retries=2, delay=0.1),
            _RetryLost((coredis.exceptions.ConnectionError,), retries=2, delay=0.1),
        )
        client = _RedisCluster.from_url(url, startup_nodes=[node], retry_policy=retry, **options)
    else:
        retry = _RetryLost((coredis.exceptions.ConnectionError,), retries=2, delay=0.01)
        client = _Redis.from_url(url, retry_policy=retry, **options)
    client.health = health
    pool: Any = client.connection_pool
    pool.connection_class = closing_connection_class(pool.connection_class)
    return client


def split_cluster_flag(url: str) -> tuple[str, bool | None]:
    """``url`` without a ``cluster=yes|no`` query parameter, and its value
    (``None`` if absent), so one URL can say "this is a cluster" (the CLI)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value for name, value in query if name == "cluster"]
    if not flags:
        return url, None
    rest = [(name, value) for name, value in query if name != "cluster"]
    value = flags[-1].lower()
    if value not in ("1", "yes", "true", "0", "no", "false"):
        raise ValueError(f"cluster= in the Redis URL must be yes or no, not {flags[-1]!r}")
    return urlunsplit(parts._replace(query=urlencode(rest))), value in ("1", "yes", "true")


def release_leftovers(client: Client) -> None:
    """Close what coredis (6.9) leaves open when a client exits: a cluster
    layout's error stream (created in its constructor, never closed)."""
    layout = getattr(client.connection_pool, "cluster_layout", None)
    streams = getattr(layout, "_error_stream", ())
    for stream in streams:
        stream.close()


def safe_url(url: str) -> str:
    """``url`` with any credentials masked, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    _credentials, at, location = rest.rpartition("@")
    return f"{scheme}{sep}***@{location}" if at else url


__all__ = [
    "Client",
    "RedisUnavailable",
    "client_from_url",
    "closing_connection_class",
    "release_leftovers",
    "safe_url",
    "split_cluster_flag",
]
