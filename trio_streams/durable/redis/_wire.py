"""The commit's own Redis connection: ``EVALSHA`` of COMMIT without coredis's command path.

Theory of operation
-------------------
A commit is the one Redis call an append waits for. Through coredis (6.9)
one ``EVALSHA`` costs ~150 µs of CPU here (about 870 Python calls: its
request object, retry policy, telemetry span, pool, a writer task the
request is handed to, a reader task, anyio's memory streams and a
``fail_after`` per read); the same round trip on a bare trio socket costs
~15 µs. :class:`WireCommitScript` sends the commits of a single Redis
(``redis://`` or ``unix://``, not TLS, not a Cluster: those keep
:class:`~._connection.CommitScript`) on a connection of its own: the
calling committer encodes the command and sends it itself (RESP2; one
``send`` per commit), and one reader task, in the store's nursery, answers
the commits in flight in order. Commits of several streams are pipelined
on it.

:func:`commit_script` picks one of the two for a store's connection.

The connection is opened on first use (``AUTH`` and ``SELECT`` as the URL
says) and again after it is lost. A commit that starts on a connection
already known to be lost goes on a new one; one that was waiting to send
when its connection was lost fails as a 503 (nothing of it was sent: a
retry is safe); a commit whose connection is lost after it was sent is not
retried (it may have been applied): it fails, as a 503. Every call runs through the connection's
:class:`~trio_streams.log.redis._health.RedisHealth` (fail fast while
unhealthy; a reply later than the stream timeout turns it unhealthy), as
coredis's commands do. ``NOSCRIPT`` loads the script (through coredis)
and calls again.

Cancellation: a commit cancelled while it is being sent closes the
connection (a partial command must not be followed by another), one
cancelled before any of it is sent leaves it as it is; one
cancelled while it waits for its reply leaves the reply to be read and
dropped.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import coredis
import trio

from ._layout import COMMIT

if TYPE_CHECKING:
    from ...log.redis._connection import RedisConnection
    from ...log.redis._health import RedisHealth

    #: A client of one Redis or of a Redis Cluster.
    Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

#: A reply too short to hold its whole value yet.
_INCOMPLETE = object()


@dataclass(frozen=True, slots=True)
class Target:
    """Where the commit connection goes: a TCP address or a unix socket, and its login."""

    host: str = ""
    port: int = 6379
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    db: int = 0


def wire_target(url: str) -> Target | None:
    """The :class:`Target` of ``url`` (``redis://[user:password@]host[:port][/db]``
    or ``unix://path[?db=n&password=p]``), or ``None`` if its scheme or options
    are any others (TLS, ...): those commit through coredis."""
    parts = urlsplit(url)
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
        port = parts.port
    except ValueError:
        return None
    if not set(query) <= {"db", "password", "username"}:
        return None
    username = parts.username or query.get("username")
    password = parts.password or query.get("password")
    db_text = query.get("db") or parts.path.strip("/") if parts.scheme == "redis" else query.get("db")
    if not (db_text or "0").isdigit():
        return None
    db = int(db_text or "0")
    # As coredis reads them (its from_url without decode_components): the user, password
    # and socket path as written, %-escapes and all (the query's values are decoded).
    if parts.scheme == "redis" and parts.hostname:
        return Target(host=parts.hostname, port=port or 6379, username=username, password=password, db=db)
    if parts.scheme == "unix" and parts.path:
        return Target(path=parts.path, username=username, password=password, db=db)
    return None


class WireCommitScript:
    """The COMMIT script called on a connection of its own (module docstring);
    same call as :class:`~._connection.CommitScript`.

    Args:
        client: the store's coredis client (for ``SCRIPT LOAD``).
        target: where to connect.
        health: the connection's health (every call runs through it).
        nursery: runs the reader task of each connection (the store's).
        connect_timeout, stream_timeout: bounds on connecting, and on a reply.
    """

    def __init__(
        self,
        client: Any,
        target: Target,
        health: RedisHealth,
        nursery: trio.Nursery,
        *,
        connect_timeout: float,
        stream_timeout: float,
    ) -> None:
        self._client = client
        self._target = target
        self._health = health
        self._nursery = nursery
        self._connect_timeout = connect_timeout
        self._stream_timeout = stream_timeout
        self.sha = hashlib.sha1(COMMIT.encode()).hexdigest()
        self._sha = self.sha.encode()
        self._link: _Link | None = None
        self._connecting = trio.Lock()
        self._sending = trio.Lock()

    async def __call__(self, *, keys: list[str], args: list[str | bytes]) -> Any:
        """The script's reply (1: applied, 0: a check failed; a list for plain appends).

        Raises:
            RedisUnavailable: Redis cannot be reached, stopped answering, or
                the connection was lost (the commit may have been applied).
            coredis.exceptions.ResponseError: the script failed.
        """
        command = _pack([b"EVALSHA", self._sha, b"%d" % len(keys), *keys, *args])
        reply = await self._health.run(lambda: self._call(command), blocking=False)
        if isinstance(reply, _Error) and reply.message.startswith(b"NOSCRIPT"):
            await self._client.script_load(COMMIT)
            reply = await self._health.run(lambda: self._call(command), blocking=False)
        if isinstance(reply, _Error):
            raise coredis.exceptions.ResponseError(reply.message.decode(errors="replace"))
        return reply

    async def _call(self, command: bytes) -> Any:
        link = self._link
        if link is None or link.lost is not None:
            link = await self._connect()
        waiter = _Waiter()
        try:
            self._sending.acquire_nowait()
        except trio.WouldBlock:
            await self._sending.acquire()
        try:
            # Handed the lock, perhaps, after its caller was cancelled: nothing is sent yet,
            # so the connection is whole (send_all's own check would make it lost).
            await trio.lowlevel.checkpoint_if_cancelled()
            if link.lost is not None:
                raise _lost("lost before the commit was sent")
            link.waiting.append(waiter)
            try:
                await link.stream.send_all(command)
            except BaseException as exc:
                # Partly sent, perhaps: nothing may follow it on this connection.
                link.lose(_lost(f"sending a commit failed: {exc!r}"))
                if isinstance(exc, OSError | trio.BrokenResourceError | trio.ClosedResourceError):
                    raise _lost(f"sending a commit failed: {exc!r}") from exc
                raise
        finally:
            self._sending.release()
        with trio.move_on_after(self._stream_timeout) as waited:
            await waiter.done.wait()
        if waited.cancelled_caught:
            link.lose(_lost("a reply timed out"))
            raise TimeoutError(f"redis did not answer a commit within {self._stream_timeout}s")
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    async def _connect(self) -> _Link:
        async with self._connecting:
            link = self._link
            if link is not None and link.lost is None:
                return link
            target = self._target
            try:
                with trio.fail_after(self._connect_timeout):
                    if target.path:
                        stream: trio.abc.Stream = await trio.open_unix_socket(target.path)
                    else:
                        stream = await trio.open_tcp_stream(target.host, target.port)
                    try:
                        await _login(stream, target)
                    except BaseException:
                        await trio.aclose_forcefully(stream)
                        raise
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                raise _lost(f"cannot connect: {exc!r}") from exc
            link = self._link = _Link(stream)
            self._nursery.start_soon(link.read)
            return link


def commit_script(
    client: Client, connection: RedisConnection, nursery: trio.Nursery
) -> CommitScript | WireCommitScript:
    """The commit script of a store on ``connection``: on a connection of its
    own (:mod:`._wire`) for a single Redis it can reach so, else through coredis."""
    target = None if connection.cluster else wire_target(connection.url)
    if target is None:
        return CommitScript(client)
    return WireCommitScript(
        client,
        target,
        connection.health,
        nursery,
        connect_timeout=connection.connect_timeout,
        stream_timeout=connection.stream_timeout,
    )


class CommitScript:
    """The :data:`~._layout.COMMIT` script, called by ``EVALSHA`` straight on
    the client's command path (its health, timeouts and retries of a lost
    connection; on a Cluster, routed by the keys' slot).

    coredis's own ``Script`` wraps each call in two more request layers (a
    retry policy for ``NOSCRIPT`` and a reply transform); a commit is the
    one Redis call an append waits for, so here ``NOSCRIPT`` (Redis
    restarted or flushed its scripts; on a Cluster, a node that has not seen
    it) is handled once by loading the script and calling again.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self.sha = hashlib.sha1(COMMIT.encode()).hexdigest()

    async def __call__(self, *, keys: list[str], args: list[str | bytes]) -> Any:
        """The script's reply (1: applied, 0: a check failed).

        Cancellation: as for any command (the reply, if any, is discarded).
        """
        try:
            return await self._client.evalsha(self.sha, keys=keys, args=args)
        except coredis.exceptions.NoScriptError:
            await self._client.script_load(COMMIT)
            return await self._client.evalsha(self.sha, keys=keys, args=args)


class _Link:
    """One connection and the commits waiting for its replies, in order."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.waiting: deque[_Waiter] = deque()
        #: Why it is unusable (lost, closed), once it is.
        self.lost: coredis.exceptions.ConnectionError | None = None
        #: The reader's scope: losing the connection ends the reader.
        self._scope = trio.CancelScope()
        #: Set once the reader has ended (and closed the connection).
        self.ended = trio.Event()

    def lose(self, error: coredis.exceptions.ConnectionError) -> None:
        """Unusable from now on: every commit waiting gets ``error``; the reader closes it."""
        if self.lost is None:
            self.lost = error
        while self.waiting:
            self.waiting.popleft().answer(None, self.lost)
        self._scope.cancel(reason="commit connection lost")

    async def read(self) -> None:
        """Answer the waiting commits as their replies come, until lost or cancelled."""
        buffer = bytearray()
        try:
            with self._scope:
                while True:
                    data = await self.stream.receive_some(65536)
                    if not data:
                        raise _lost("redis closed the connection")
                    buffer += data
                    while True:
                        value, used = _parse(buffer, 0)
                        if value is _INCOMPLETE:
                            break
                        del buffer[:used]
                        if not self.waiting:
                            raise _lost("a reply nobody asked for")
                        self.waiting.popleft().answer(value, None)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError) as exc:
            self.lose(_lost(f"reading a reply failed: {exc!r}"))
        except coredis.exceptions.ConnectionError as exc:
            self.lose(exc)
        finally:
            self.lose(_lost("the commit connection closed"))
            await trio.aclose_forcefully(self.stream)
            self.ended.set()


class _Waiter:
    """One commit sent, until its reply (or the connection's loss) answers it."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def answer(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self.done.set()


@dataclass(frozen=True, slots=True)
class _Error:
    """An error reply (``-...``)."""

    message: bytes


def _lost(reason: str) -> coredis.exceptions.ConnectionError:
    return coredis.exceptions.ConnectionError(f"the commit connection to redis: {reason}")


def _pack(parts: list[str | bytes]) -> bytes:
    """``parts`` as one RESP command."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


def _parse(buffer: bytearray, start: int) -> tuple[Any, int]:
    """The RESP2 value at ``start`` of ``buffer`` and where it ends (or
    ``_INCOMPLETE``): integers as ``int``, strings as ``bytes``, nil as
    ``None``, arrays as lists, errors as :class:`_Error`.

    Raises:
        ValueError: not RESP2.
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return _INCOMPLETE, start
    kind, line, after = buffer[start], bytes(buffer[start + 1 : end]), end + 2
    if kind == 0x3A:  # ':'
        return int(line), after
    if kind == 0x24:  # '$'
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            return _INCOMPLETE, start
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == 0x2A:  # '*'
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buffer, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, start
            items.append(item)
        return items, after
    if kind == 0x2B:  # '+'
        return line, after
    if kind == 0x2D:  # '-'
        return _Error(line), after
    raise ValueError(f"not a RESP2 reply: {bytes(buffer[start:end][:40])!r}")


async def _login(stream: trio.abc.Stream, target: Target) -> None:
    """``AUTH`` and ``SELECT`` as ``target`` says, on a new connection.

    Raises:
        coredis.exceptions.AuthenticationError: Redis refused the login.
        coredis.exceptions.ConnectionError: it refused the database, or closed.
    """
    commands: list[list[str | bytes]] = []
    if target.username or target.password:
        # As coredis logs in (HELLO's AUTH): a user named without a password is that
        # user with an empty one (a nopass user), not the default user.
        user = [] if not target.username else [target.username]
        commands.append([b"AUTH", *user, target.password or ""])
    if target.db:
        commands.append([b"SELECT", str(target.db)])
    if not commands:
        return
    await stream.send_all(b"".join(_pack(command) for command in commands))
    buffer = bytearray()
    for _ in commands:
        while True:
            value, used = _parse(buffer, 0)
            if value is not _INCOMPLETE:
                del buffer[:used]
                break
            data = await stream.receive_some(4096)
            if not data:
                raise _lost("redis closed the connection during the login")
            buffer += data
        if isinstance(value, _Error):
            text = value.message.decode(errors="replace")
            if text.startswith(("WRONGPASS", "NOAUTH", "ERR invalid password", "NOPERM")):
                raise coredis.exceptions.AuthenticationError(text)
            raise _lost(f"the login failed: {text}")
