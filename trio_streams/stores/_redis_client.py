"""Opening a coredis client from a URL, with connection attempts that clean up.

coredis (6.9) creates a connection's internal anyio memory streams in its
constructor but closes them only once the socket is open: every failed
connection attempt (Redis down, wrong port) left four unclosed streams behind,
reported as ``ResourceWarning`` / "unraisable exception" when garbage
collected. :func:`client_from_url` installs connection classes that close
them when the attempt fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import coredis
from coredis.connection import TCPLocation

from .._errors import StreamError

if TYPE_CHECKING:
    from coredis.connection import BaseConnection

#: Either kind of client; both speak the commands the store uses.
Client: TypeAlias = "coredis.Redis[str] | coredis.RedisCluster[str]"

_CLOSING: dict[type[Any], type[Any]] = {}


class RedisUnavailable(StreamError):
    """Redis could not be reached or refused us (wrong password, TLS, ...)."""


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


def client_from_url(url: str, *, cluster: bool, connect_timeout: float, stream_timeout: float) -> Client:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``; user and
    password pass through). Enter it (``async with client:``) before use."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "connect_timeout": connect_timeout,
        "stream_timeout": stream_timeout,
    }
    client: Client
    if cluster:
        # Name the startup node ourselves: coredis's own URL parsing passes it
        # in a deprecated form (and warns).
        parsed = urlsplit(url)
        node = TCPLocation(parsed.hostname or "localhost", parsed.port or 6379)
        client = coredis.RedisCluster.from_url(url, startup_nodes=[node], **options)
        pool: Any = client.connection_pool
    else:
        client = coredis.Redis.from_url(url, **options)
        pool = client.connection_pool
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
