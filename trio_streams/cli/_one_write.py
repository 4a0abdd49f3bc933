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

from typing import TYPE_CHECKING

import hypercorn.trio.run
import trio
from hypercorn.trio.tcp_server import TCPServer

from ..web._asgi import CONNECTION_OVER
from . import _app_task
from ._corking import CONNECTION as _CONNECTION
from ._corking import CorkingTCPServer as CorkingTCPServer

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        ASGISendEvent,
        HTTPResponseStartEvent,
        HTTPScope,
        Scope,
    )

#: Statuses whose responses have no body whatever their headers say.
_BODILESS = frozenset({204, 304})


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
