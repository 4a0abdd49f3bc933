"""One socket write per complete HTTP/1.1 response under Hypercorn's trio worker.

Hypercorn writes what the app sends as it arrives: ``http.response.start`` is
one write, the body another, and h11's end of message (empty for a
``Content-Length`` body) a third, each behind the connection's send lock and
a checkpoint, so other tasks run between the headers and the body (a
long-poll's body left ~0.27 ms after an SSE frame would; benchmarks/RESULTS.md).

Two parts make it one write:

- :class:`CorkingTCPServer`, Hypercorn's per-connection ``TCPServer`` with a
  *cork*: while corked, the bytes Hypercorn's protocol hands to the socket are
  held, and written together with the first bytes sent after
  :meth:`CorkingTCPServer.flush_with_next` (the end of message). Uncorked, it
  is Hypercorn's own. :func:`install` makes Hypercorn's trio worker build it.
- :class:`OneWriteResponses`, ASGI middleware: an HTTP/1.x response start that
  says its body's length (``Content-Length``, a 204/304, a ``HEAD``) is held
  until the app's next message -- as the ASGI spec allows: "must not start
  sending the response to the client until it has received at least one
  response body event" -- and then the start, the body and the end of message
  go to Hypercorn corked: one write, before Hypercorn's end-of-request
  bookkeeping (the request task told the request is over, the connection
  recycled, its idle timer restarted).

Responses of unknown length (event streams) are passed through as they come,
so their headers leave at once. HTTP/2 is not corked (Hypercorn's h2 protocol
batches its own writes). Without the corking server (Hypercorn changed, or an
app served by another server) the middleware passes everything through.

What this relies on in Hypercorn 0.18 (pinned by tests/test_one_write.py,
which fails if it changes): ``hypercorn.trio.run.worker_serve`` builds each
connection's ``TCPServer`` from that module's global name, inside the task that
then spawns the request tasks (so a context variable set when it is built reaches
them; trio's ``serve_listeners`` builds it in that task);
``TCPServer.protocol_send`` receives every write as a
``hypercorn.events.RawData``; an HTTP/1.1 response is written from the app's
sends without a checkpoint before the write.
"""

from __future__ import annotations

import contextvars
import functools
import os
from typing import TYPE_CHECKING, Any

import hypercorn.trio.run
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from .._parking import readable
from ..web._asgi import CONNECTION_OVER
from . import _app_task
from ._idle_timer import IdleTimer
from ._lazy_lock import LazyLock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        ASGISendEvent,
        HTTPResponseStartEvent,
        HTTPScope,
        Scope,
    )

#: The connection whose request tasks see it (set when it is built, in its
#: own task; the tasks spawned from there inherit it).
_CONNECTION: contextvars.ContextVar[CorkingTCPServer | None] = contextvars.ContextVar(
    "trio_streams_corking_connection", default=None
)

#: Plain sockets are read with ``os.read`` once ``wait_readable`` says so (POSIX: a socket is a file).
_PLAIN_READS = os.name == "posix"

#: Statuses whose responses have no body whatever their headers say.
_BODILESS = frozenset({204, 304})


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
        # serve_listeners builds the connection in that task (and an override
        # of ``run`` would hold one more frame per connection).
        _CONNECTION.set(self)

    async def _read_data(self) -> None:
        """Hypercorn's reading; once it ends (the connection is over), so does the idle timer,
        and the :meth:`when_over` callbacks are called.

        Hypercorn's loop (``TCPServer._read_data``), without its ``fail_after``
        when there is no ``read_timeout`` (an infinite one: a cancel scope and
        its status, ~1 KB held by every idle connection for nothing). A plain
        socket (no TLS) is then read as ``receive_some`` reads it, but waiting
        in ``wait_readable`` right here: 3 coroutine frames and a context
        manager's generator fewer held by every idle connection
        (benchmarks/RESULTS.md). Each read is a checkpoint, as ``receive_some``'s;
        a socket closed by another task (the idle timer) or broken ends the
        reading, as Hypercorn's ``ClosedResourceError`` / ``BrokenResourceError``.

        Cancellation: ends the reading (the connection's task group is going).
        """
        # (Typed by Hypercorn as a TLS stream, whichever it is.)
        stream: object = self.stream
        try:
            if self.config.read_timeout or not _PLAIN_READS or type(stream) is not trio.SocketStream:
                await _read_stream(self.stream, self.protocol.handle, self.config.read_timeout)
                return
            sock = stream.socket
            while True:
                fd = sock.fileno()
                if fd == -1:
                    break  # closed by another task
                try:
                    data: bytes | None = os.read(fd, MAX_RECV)
                except BlockingIOError:
                    data = None  # (waited for outside the handler: the error is not held meanwhile)
                except OSError:
                    break  # reset, or otherwise broken
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
                await trio.lowlevel.checkpoint()
                # (Not a bound method held in a local while it waits: looked up per read.)
                await self.protocol.handle(RawData(data))
                if data == b"":
                    break
            await self.protocol.handle(Closed())
        finally:
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


def _nothing() -> None:
    pass


def install() -> None:
    """Make Hypercorn's trio worker (``worker_serve``) build :class:`CorkingTCPServer` connections.

    Idempotent. Process-wide: every trio-worker server of this process gets
    it, which changes nothing for an app that does not cork (only
    :class:`OneWriteResponses` does).
    """
    worker = vars(hypercorn.trio.run)  # worker_serve looks TCPServer up here, per server
    if worker.get("TCPServer") is TCPServer:
        worker["TCPServer"] = CorkingTCPServer
    _app_task.install()  # (and its request tasks get a lighter queue and frame)


def _known_length(scope: HTTPScope, start: HTTPResponseStartEvent) -> bool:
    """Whether a response's body length is known from its start (so its body follows at once)."""
    if start.get("trailers", False):
        return False
    if int(start["status"]) in _BODILESS or scope.get("method") == "HEAD":
        return True
    return any(name.lower() == b"content-length" for name, _ in start.get("headers", ()))


class OneWriteResponses:
    """ASGI middleware for ``serve``'s Hypercorn: an HTTP response's last message is sent
    shielded, and a complete HTTP/1.x response is one socket write (see the module).

    The shield: Hypercorn arms a kept-alive connection's idle timer (which
    closes it after ``keep_alive_timeout``, and at once when the server shuts
    down) from inside the app's last ``send``, after telling the app the
    request is over. Quart-Trio cancels its request task on that news, which
    lands inside the same ``send``: the timer was never armed, so an idle
    kept-alive connection stayed open forever, and at shutdown until
    Hypercorn's ``graceful_timeout`` ran out. The shield has a deadline
    (``grace``); what it covers is Hypercorn's bookkeeping (the socket write
    it shields itself).

    The one write: the response start of a body of known length is held
    until the app's next message; the app's ``send`` of the start then
    returns at once.

    Args:
        app: the ASGI application to wrap.
        grace: seconds the shielded last message may take.
    """

    def __init__(self, app: ASGIFramework, grace: float) -> None:
        self.app = app
        self.grace = grace

    def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Awaitable[None]:
        """Call the app: other scopes untouched (no frame of this shim's while they last), nor
        an HTTP/1.x request in serve's request task (which awaits the response's end itself)."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        connection = _CONNECTION.get()
        if connection is None or scope.get("http_version") not in ("1.1", "1.0"):
            # (HTTP/2: Hypercorn's h2 protocol batches its own writes)
            return self._http(scope, receive, send, None)
        if not connection.lean_tasks():
            return self._http(scope, receive, send, connection)
        response = self._offer(scope, send, connection)
        # (ASGI types extensions as dicts; this one is the request task's, see APP_END. The
        # response itself, called, is its end: no bound method held while the request lasts.)
        scope["extensions"][_app_task.APP_END] = response  # type: ignore[assignment]
        return self.app(scope, receive, response.send)

    async def _http(
        self,
        scope: HTTPScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        connection: CorkingTCPServer | None,
    ) -> None:
        response = (
            _Response(scope, send, None, self.grace)
            if connection is None
            else self._offer(scope, send, connection)
        )
        await self.app(scope, receive, response.send)
        await response.end()

    def _offer(self, scope: HTTPScope, send: ASGISendCallable, connection: CorkingTCPServer) -> _Response:
        """The response of an HTTP/1.x request on a corking connection, whose scope is offered
        the ``CONNECTION_OVER`` extension."""
        # bounded_sends: _Response holds a known-length start and shields the last message (grace).
        offered: dict[str, object] = {"when_over": connection.when_over, "bounded_sends": True}
        if connection.lean_tasks():
            offered["cancel_on_over"] = connection.cancel_on_over
        scope["extensions"][CONNECTION_OVER] = offered
        return _Response(scope, send, connection, self.grace)


class _Response:
    """One HTTP response through :class:`OneWriteResponses` (slots: held while an event stream lasts)."""

    __slots__ = ("connection", "grace", "pending", "scope", "send_on")

    def __init__(
        self, scope: HTTPScope, send: ASGISendCallable, connection: CorkingTCPServer | None, grace: float
    ) -> None:
        self.scope = scope
        self.send_on = send
        self.connection = connection
        self.grace = grace
        #: A response start held for its body (one of known length, on a corking connection).
        self.pending: HTTPResponseStartEvent | None = None

    async def end(self) -> None:
        """The app has returned: a start with no body message after it goes now, as Hypercorn would."""
        if self.pending is not None:
            start, self.pending = self.pending, None
            await self.send_on(start)

    __call__ = end  # (the scope's APP_END)

    async def send(self, message: ASGISendEvent) -> None:
        """The app's ``send``: the last message shielded, a complete response written at once."""
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.move_on_after(self.grace, shield=True):
                await self._send(message)
        else:
            await self._send(message)

    async def _send(self, message: ASGISendEvent) -> None:
        send, connection, start = self.send_on, self.connection, self.pending
        if connection is None:
            await send(message)
            return
        if start is None:
            if message["type"] == "http.response.start" and _known_length(self.scope, message):
                self.pending = message
            else:
                await send(message)
            return
        self.pending = None
        if message["type"] != "http.response.body":
            await send(start)
            await send(message)
            return
        connection.cork()
        try:
            await send(start)
            if message.get("more_body", False):
                await send(message)
            else:
                # The body as a part, then the end of message: the write goes
                # with the end of message, the earliest moment the whole
                # response is known -- and before what Hypercorn does once the
                # response has ended.
                body = message.get("body", b"")
                await send({"type": "http.response.body", "body": body, "more_body": True})
                connection.flush_with_next()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BaseException:
            connection.discard()
            raise
        await connection.uncork()
