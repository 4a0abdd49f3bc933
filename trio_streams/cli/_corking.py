"""The corking connection: Hypercorn's per-connection ``TCPServer`` under ``serve`` (see :mod:`._one_write`).

:class:`CorkingTCPServer` is Hypercorn's trio ``TCPServer`` with a *cork*
(writes held and written as one, for :class:`~._one_write.OneWriteResponses`),
one idle timer, a lazy send lock, and the connection's end told to its
request (``trio_streams.connection_over``). A plain socket (no TLS, no
``read_timeout``) is served by :meth:`CorkingTCPServer._serve_plain`:
Hypercorn's ``run`` with the reading loop in its own frame, which is what an
idle event stream's connection holds for the stream's whole life
(benchmarks/RESULTS.md, issue 14). TLS, and a ``read_timeout``, are
Hypercorn's ``run``.

What this relies on in Hypercorn 0.18 (tests/test_one_write.py and
tests/test_app_task.py fail if it changes): trio's ``serve_listeners`` awaits
the connection object (``TCPServer.__await__``) in the task that then spawns
its request tasks; ``TCPServer.run``'s steps for a plain socket (below:
the addresses, a ``TaskGroup`` from its module's global name, the
``ProtocolWrapper``, ``initiate``, the idle timer, reading, ``_close``).
"""

from __future__ import annotations

import contextvars
import functools
import os
from typing import TYPE_CHECKING, Any, Literal

import h11
import hypercorn.trio.tcp_server
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from .._parking import readable
from . import _app_task
from ._idle_timer import IdleTimer
from ._lazy_lock import LazyLock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

    from hypercorn.trio.task_group import TaskGroup

#: The connection whose request tasks see it (set when it is built, in its
#: own task; the tasks spawned from there inherit it).
CONNECTION: contextvars.ContextVar[CorkingTCPServer | None] = contextvars.ContextVar(
    "trio_streams_corking_connection", default=None
)

#: Plain sockets are read with ``os.read`` once ``wait_readable`` says so (POSIX: a socket is a file).
_PLAIN_READS = os.name == "posix"


class CorkingTCPServer(TCPServer):
    """Hypercorn's ``TCPServer``, whose writes can be held and written as one (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Hypercorn's arguments, passed on."""
        super().__init__(*args, **kwargs)
        # Its socket writes' lock, with a parking lot only under contention (~370 B less per idle connection).
        self.send_lock = LazyLock()  # type: ignore[assignment]  # (trio.Lock's async with)
        # Hypercorn's idle timer, without a task started and stopped per request.
        self.idle_task = IdleTimer(  # type: ignore[assignment]  # (its SingleTask interface)
            self.config.keep_alive_timeout, self.context.terminated, self._initiate_server_close
        )
        #: Held bytes while corked; ``None``: not corked.
        self._held: list[bytes] | None = None
        self._flush_next = False
        #: Called once the connection is over (made when the first is added).
        self._when_over: set[Callable[[], None]] | None = None
        self._over = False
        #: The connection's end cancels its task group (:meth:`cancel_on_over`).
        self._cancel_over = False
        # Visible to its request tasks, which its task spawns: trio's
        # serve_listeners builds the connection in that task.
        CONNECTION.set(self)

    def __await__(self) -> Generator[Any, Any, None]:
        """What trio's ``serve_listeners`` awaits: :meth:`_serve_plain` for a plain socket with no
        ``read_timeout``, else Hypercorn's ``run`` (TLS: its handshake first)."""
        # (Typed by Hypercorn as a TLS stream, whichever it is.)
        stream: object = self.stream
        if self.config.read_timeout or not _PLAIN_READS or type(stream) is not trio.SocketStream:
            return self.run().__await__()
        return self._serve_plain(stream.socket).__await__()

    async def _serve_plain(self, sock: trio.socket.SocketType) -> None:
        """Hypercorn's ``TCPServer.run`` for a plain socket, reading it in this frame.

        Hypercorn's steps, without its TLS probe (an ``AttributeError`` caught
        in ``run``'s frame, whose frame object then lives as long as the
        connection) and without a ``_read_data`` frame (~0.8 KB less per idle
        connection). The socket is read as ``receive_some`` reads it (each read
        a checkpoint), waiting for it right here (:func:`~trio_streams._parking.readable`:
        none of trio's frames held); a socket closed by another task (the idle
        timer) or broken ends the reading, as Hypercorn's
        ``ClosedResourceError`` / ``BrokenResourceError`` do. Bytes sent behind a request
        whose response is not over (pipelined) are held until it is
        (:meth:`_hold_while_paused`), the socket still read to see the client leave.

        Cancellation: ends the connection (its task group is going), which is closed.
        """
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            # (The module's name: LeanTaskGroup once installed, as Hypercorn's run builds it.)
            group: type[TaskGroup] = vars(hypercorn.trio.tcp_server)["TaskGroup"]
            async with group() as task_group:
                self._task_group = task_group
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                    "http/1.1",
                )
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                try:
                    while True:
                        fd = sock.fileno()
                        if fd == -1:
                            break  # closed by another task
                        data = _read_nowait(fd)  # (no exception caught in this frame: see above)
                        if data is None:
                            # (trio's wait_readable, without its five frames held while it waits.)
                            wait = readable(fd)
                            try:
                                if wait is None:
                                    await trio.lowlevel.wait_readable(fd)
                                else:
                                    await wait
                            except trio.ClosedResourceError:
                                break
                            continue
                        if data is False:
                            break  # reset, or otherwise broken
                        await trio.lowlevel.checkpoint()
                        if data and _would_pause(self.protocol):
                            held = await self._hold_while_paused(sock, data)
                            if held is None:
                                break  # the client left while its response went on
                            data = held
                        # (Not a bound method held in a local while it waits: looked up per read.)
                        await self.protocol.handle(RawData(data))
                        if data == b"":
                            break
                    await self.protocol.handle(Closed())
                finally:
                    self._reading_over()
        except OSError:
            pass
        finally:
            await self._close()

    async def _hold_while_paused(self, sock: trio.socket.SocketType, data: bytes) -> bytes | None:
        """Bytes the client sent after its request, while that request's response goes on (a
        pipelined request behind an event stream): held, not handed to Hypercorn's HTTP/1.1
        protocol, which would wait in its ``handle`` for the response's end and leave the socket
        unread -- the client's leaving unseen for as long as the stream lasts.

        The socket is read meanwhile only to see the client leave (at most ``MAX_RECV`` held,
        then no more reading until the response ends). Returns what is held once the response
        is over (the protocol is ready for it), or ``None`` if the client left (its end, a reset,
        the socket closed by another task). Cancellation: the wait is cancelled.
        """
        protocol: H11Protocol = self.protocol.protocol  # type: ignore[assignment]  # (_would_pause)
        can_read = protocol.can_read
        await can_read.clear()  # (as the protocol pauses itself: set once the response is over)
        held, size = [data], len(data)
        left = False
        async with trio.open_nursery() as nursery:

            async def response_over() -> None:
                await can_read.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(response_over)
            try:
                while True:
                    if size >= MAX_RECV:
                        await trio.sleep_forever()  # bounded: the rest waits in the kernel
                    await trio.lowlevel.wait_readable(sock)
                    fd = sock.fileno()
                    chunk = _read_nowait(fd) if fd != -1 else False
                    if chunk is None:
                        continue
                    if not chunk:
                        break  # its end, or a reset
                    held.append(chunk)
                    size += len(chunk)
            except trio.ClosedResourceError:
                pass
            left = True
            nursery.cancel_scope.cancel()
        # (Over and closed -- the server stopping -- is the connection's end too.)
        return None if left or sock.fileno() == -1 else b"".join(held)

    async def _read_data(self) -> None:
        """Hypercorn's reading (TLS, or a ``read_timeout``; a plain socket is read by
        :meth:`_serve_plain`); once it ends (the connection is over), so does the idle timer,
        and the :meth:`when_over` callbacks are called.

        Without Hypercorn's ``fail_after`` when there is no ``read_timeout``
        (an infinite one: a cancel scope and its status, ~1 KB held by every
        idle connection for nothing).

        Cancellation: ends the reading (the connection's task group is going).
        """
        try:
            await _read_stream(self.stream, self.protocol.handle, self.config.read_timeout)
        finally:
            self._reading_over()

    def _reading_over(self) -> None:
        """The reading has ended: the idle timer ends, the :meth:`when_over` callbacks are
        called, and the task group cancelled if :meth:`cancel_on_over` says so (no I/O)."""
        idle_timer: IdleTimer = self.idle_task  # type: ignore[assignment]
        idle_timer.end()
        self._over = True
        callbacks, self._when_over = self._when_over, None
        for callback in callbacks or ():
            callback()
        if self._cancel_over:
            self._cancel_task_group()

    def when_over(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (no I/O) once the connection is over (at once if it is); returns
        what forgets it (the ``trio_streams.connection_over`` ASGI extension)."""
        if self._over:
            callback()
            return _nothing
        if self._when_over is None:
            self._when_over = set()
        self._when_over.add(callback)
        return functools.partial(self._when_over.discard, callback)

    def cancel_on_over(self, on: bool) -> None:
        """While ``on``, the connection's end (read to its end, or broken) cancels its task
        group -- the request's task with it -- as if ``when_over`` cancelled a scope of its
        own, with no scope, status or callback held per request (the extension's
        ``"cancel_on_over"``; no I/O). Turned on once the connection is over, it cancels at once.

        Only for requests whose client leaving must end them (reads that wait): the
        group holds this connection's other tasks too, which end with it anyway (its
        idle timer; the tail of the previous request, whose response is sent).
        """
        self._cancel_over = on
        if on and self._over:
            self._cancel_task_group()

    def lean_tasks(self) -> bool:
        """Whether its request tasks are serve's (:class:`~._app_task.LeanTaskGroup`): then
        :meth:`cancel_on_over` can be offered, and the task awaits ``APP_END``."""
        return isinstance(getattr(self, "_task_group", None), _app_task.LeanTaskGroup)

    def _cancel_task_group(self) -> None:
        task_group = self._task_group
        assert isinstance(task_group, _app_task.LeanTaskGroup)
        task_group.cancel("client disconnected")

    def cork(self) -> None:
        """Hold every write from now on (no I/O)."""
        self._held = []
        self._flush_next = False

    def flush_with_next(self) -> None:
        """The next write sends everything held with it, and uncorks."""
        self._flush_next = True

    def discard(self) -> None:
        """Uncork, dropping what is held (the response failed half-way; Hypercorn closes the connection)."""
        self._held = None
        self._flush_next = False

    async def uncork(self) -> None:
        """Uncork, writing what is still held (nothing, once the end of message has gone).

        Cancellation: Hypercorn shields the write itself.
        """
        held, self._held = self._held, None
        self._flush_next = False
        if held:
            await super().protocol_send(RawData(data=b"".join(held)))

    async def protocol_send(self, event: Event) -> None:
        """Hypercorn's, except while corked: writes are held (without a checkpoint)
        until the one after :meth:`flush_with_next`; anything else first writes what is held."""
        held = self._held
        if held is not None:
            if isinstance(event, RawData):
                held.append(event.data)
                if not self._flush_next:
                    return
                event = RawData(data=b"".join(held))
                self._held = None
                self._flush_next = False
            else:
                await self.uncork()
        await super().protocol_send(event)


async def _read_stream(
    stream: trio.abc.ReceiveStream, handle: Callable[[Event], Awaitable[None]], read_timeout: float | None
) -> None:
    """Hypercorn's reading loop (TLS, or a ``read_timeout``: a silent connection is closed)."""
    while True:
        try:
            if read_timeout:
                with trio.fail_after(read_timeout):
                    data = await stream.receive_some(MAX_RECV)
            else:
                data = await stream.receive_some(MAX_RECV)
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            break
        await handle(RawData(bytes(data)))
        if data == b"":
            break
    await handle(Closed())


def _read_nowait(fd: int) -> bytes | Literal[False] | None:
    """What ``fd`` has (``b""``: its end), ``None`` if nothing yet, ``False`` if it is broken.

    (Its own frame: the ``BlockingIOError`` caught here materializes this frame's
    object, not its caller's, which would keep it while the connection lasts.)
    """
    try:
        return os.read(fd, MAX_RECV)
    except BlockingIOError:
        return None
    except OSError:
        return False


def _would_pause(wrapper: ProtocolWrapper) -> bool:
    """Whether more bytes now would pause Hypercorn's HTTP/1.1 protocol: the request is all
    received and its response is not over (h11's ``PAUSED``: a pipelined request)."""
    protocol = wrapper.protocol
    if type(protocol) is not H11Protocol:
        return False
    connection = protocol.connection
    return (
        type(connection) is h11.Connection
        and connection.their_state is h11.DONE
        and connection.our_state is not h11.DONE
    )


def _nothing() -> None:
    pass
