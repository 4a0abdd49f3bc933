"""Raw ASGI to the protocol layer and back: one HTTP exchange, no framework.

The counterpart of :mod:`._adapter` (Quart-Trio) for a bare ASGI callable:
:class:`Exchange` turns an ASGI ``http`` scope and its ``receive`` into the
protocol's parsed :class:`~trio_streams.protocol.Request`, and writes the
handler's :class:`~trio_streams.protocol.Response` or
:class:`~trio_streams.protocol.StreamingResponse` with
``http.response.start`` / ``http.response.body``.

It does what Quart-Trio's request path does for these handlers, and nothing
else. The body is received within the app's ``MAX_CONTENT_LENGTH`` (beyond
it the rest is dropped and a read refuses with Quart's 413; the protocol's
own ``Content-Length`` check refuses before anything is read). A request
whose body nobody read has it consumed before the response (as
``consume_body`` does: a chunked body left on a kept-alive connection stalls
the client's next request). For a request that may wait (a ``GET``),
``http.disconnect`` cancels the exchange: a long-poll stops waiting, an
event stream's generator is closed, and its ``finally`` blocks
(subscription, gauges) run. Other requests are answered inline, without a
task of their own (the per-request cost the profile showed): a write whose
body has arrived is carried out even if its client has gone.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import trio
from werkzeug.sansio.utils import get_content_length, get_current_url, get_host

from .._exception_groups import collapse
from ..protocol import Headers, Query, Request, Response, StreamingResponse
from ._app_queue import AppQueue

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hypercorn.typing import (
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        HTTPScope,
    )


#: The ASGI scope extension (``scope["extensions"][CONNECTION_OVER]``) by which
#: a server offers to say when an HTTP/1.x request's connection is over (read
#: to its end, or broken): its ``"when_over"``, called with a callback (no
#: arguments, no I/O: called from the connection's task), returns a function
#: that forgets it.
#: ``serve``'s Hypercorn offers it (trio_streams/cli/_one_write.py); it saves a
#: watcher task per waiting read.
#: Its ``"cancel_on_over"`` (optional), called with ``True`` while a request
#: must end with its connection and ``False`` after, has the server cancel the
#: request's task when the connection is over (no scope, no callback held).
#: Its ``"bounded_sends"`` (when true) promises that the server bounds a complete
#: response's sends itself: a start of known length is held without I/O and the
#: last message is sent shielded under the server's own deadline, so the app's
#: ``RESPONSE_TIMEOUT`` could never act on them and :class:`Exchange` opens no
#: cancel scope for it (one fewer per request; ~6 µs under trio).
CONNECTION_OVER = "trio_streams.connection_over"


class BodyTooLarge(Exception):
    """The body grew past the app's ``MAX_CONTENT_LENGTH`` (Quart's 413)."""


class BodyTimeout(Exception):
    """The body did not arrive within the app's ``BODY_TIMEOUT`` (Quart's 408)."""


class BodyIncomplete(BodyTimeout):
    """The client left before its whole body arrived: none of it is used (Quart cancels the
    handler). Answered as a :class:`BodyTimeout`, to nobody: the client is gone."""


def app_path(scope: HTTPScope) -> str | None:
    """The request's path under the app's mount: without the scope's ``root_path`` (a proxy's
    prefix, ``serve --root-path``), as Quart routes it; ``None`` if it is not under it."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if not root:
        return path
    root = root.rstrip("/")
    if path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return None


def parsed_request(scope: HTTPScope, path_params: Mapping[str, str], exchange: Exchange) -> Request:
    """The scope as the protocol's :class:`Request`, as Quart would have parsed it.

    Header values are latin-1 (as Werkzeug decodes them), the first of a
    repeated header wins, the query keeps every value in order (UTF-8, blank
    values kept), and ``host_url`` is Werkzeug's (default ports dropped).
    """
    pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
    headers = Headers(pairs)
    query: dict[str, list[str]] = {}
    raw_query = scope["query_string"]
    if raw_query:
        for name, value in parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True, errors="replace"):
            query.setdefault(name, []).append(value)
    scheme = scope["scheme"]
    server = scope.get("server")
    host = get_host(scheme, headers.get("Host"), None if server is None else (server[0], server[1]))
    content_length = get_content_length(headers.get("Content-Length"), headers.get("Transfer-Encoding"))
    exchange.declared = content_length
    return Request(
        method=scope["method"],
        path=app_path(scope) or scope["path"],
        host_url=_host_url(scheme, host, scope.get("root_path", "")),
        path_params=path_params,
        query=Query(query),
        headers=headers,
        content_length=content_length,
        read_body=exchange.read_body,
    )


#: A host Werkzeug's ``get_current_url`` leaves as it is (lower-case ASCII, no
#: Punycode, a port without leading zeros): the common case, built directly.
_PLAIN_HOST = re.compile(r"[a-z0-9.-]+(?::[1-9][0-9]*)?")


def _host_url(scheme: str, host: str, root_path: str) -> str:
    """Werkzeug's ``host_url`` (``scheme://host/root_path/``); its general path is ~3 % of an append."""
    if not root_path and _PLAIN_HOST.fullmatch(host) and "xn--" not in host:
        return f"{scheme}://{host}/"
    return get_current_url(scheme, host, root_path)


class Exchange:
    """One request and its response over ASGI (see the module docstring).

    Use :meth:`run` (with ``watch``, it owns the task that receives the
    body and then waits for ``http.disconnect``).

    Args:
        receive, send: the ASGI channel of this request.
        max_content_length: bytes of body kept at most (the app's ``MAX_CONTENT_LENGTH``).
        body_timeout: seconds the whole body may take (the app's ``BODY_TIMEOUT``; ``None``: no limit).
        response_timeout: seconds a complete response may take to send
            (the app's ``RESPONSE_TIMEOUT``; ``None``: the server bounds its
            sends, see :data:`CONNECTION_OVER`); event streams have none.
        when_over: the scope's :data:`CONNECTION_OVER` extension's ``"when_over"``, if offered.
        cancel_on_over: its ``"cancel_on_over"``, if offered.
    """

    __slots__ = (
        "_body_over",
        "_body_timeout",
        "_cancel_on_over",
        "_chunks",
        "_max",
        "_progress",
        "_queue",
        "_received",
        "_request_over",
        "_response_timeout",
        "_too_large",
        "_truncated",
        "_watched",
        "_when_over",
        "declared",
        "disconnected",
        "receive",
        "send",
    )

    def __init__(
        self,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        *,
        max_content_length: int | None,
        body_timeout: float | None,
        response_timeout: float | None,
        when_over: WhenOver | None = None,
        cancel_on_over: CancelOnOver | None = None,
    ) -> None:
        self.receive = receive
        #: The server's queue of messages, when ``receive`` is a trio memory channel's
        #: (Hypercorn's trio worker) or an AppQueue's (serve's): what is queued already is taken without a
        #: checkpoint or a ``BODY_TIMEOUT`` scope (~8 µs per request).
        # (The queue, not its bound receive_nowait: one object fewer held while a stream lasts.)
        owner = getattr(receive, "__self__", None)
        self._queue: _Queue | None = (
            owner if isinstance(owner, (trio.MemoryReceiveChannel, AppQueue)) else None
        )
        self._when_over = when_over
        self._cancel_on_over = cancel_on_over
        self.send = send
        self._max = math.inf if max_content_length is None else max_content_length
        self._body_timeout = math.inf if body_timeout is None else body_timeout
        self._response_timeout = math.inf if response_timeout is None else response_timeout
        self._chunks: list[bytes] = []
        self._received = 0
        self._too_large = False
        self._body_over = False  # the body is over, as readers see it
        self._request_over = False  # the client sent all of it (or left)
        self._truncated = False  # the client left before the body's last message
        #: A watcher task receives the messages (``run(watch=True)``).
        self._watched = False
        #: Set (and dropped) on the next message the watcher receives; made only
        #: while someone waits for one (an event stream holds none).
        self._progress: trio.Event | None = None
        #: The request's declared ``Content-Length`` (``None``: chunked or absent).
        self.declared: int | None = None
        #: The client went away (``http.disconnect``).
        self.disconnected = False

    def _on_message(self, message: ASGIReceiveEvent) -> None:
        """Take one received message into the body's state (no I/O)."""
        kind = message["type"]
        if kind == "http.request":
            more = message.get("more_body", False)
            if not self._body_over:
                chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
                self._received += len(chunk)
                if self._received > self._max:
                    # Dropped, and the body is over as far as anyone reads it (as
                    # Quart's); the rest is received and ignored.
                    self._too_large = True
                    self._chunks.clear()
                    self._body_over = True
                elif chunk:
                    self._chunks.append(chunk)
                if not more:
                    self._body_over = True
            if not more:
                self._request_over = True
        elif kind == "http.disconnect":
            # A disconnect is not the body's end: what came is a part (Hypercorn
            # sends it when the connection ends before Content-Length).
            self._truncated = not self._body_over
            self._body_over = self._request_over = self.disconnected = True

    async def _watch(self, scope: trio.CancelScope) -> None:
        """Receive every message; ``http.disconnect`` cancels ``scope``. Cancellation: ends quietly."""
        receive = self.receive
        while not self.disconnected:
            self._on_message(await receive())
            progress = self._progress
            if progress is not None:
                self._progress = None
                progress.set()
        scope.cancel(reason="client disconnected")

    async def _receive_until_over(self, *, request: bool) -> bool:
        """Until the body (or, with ``request``, the whole request) is over; False after ``BODY_TIMEOUT``.

        Inline (no watcher): this task receives; else it waits for the watcher.
        """

        def over() -> bool:
            return self._request_over if request else self._body_over

        if over():
            return True
        if not self._watched and self._queue is not None:
            # The body is nearly always queued by now: no scope, no checkpoint for it.
            try:
                while not over():
                    self._on_message(self._queue.receive_nowait())
                return True
            except trio.WouldBlock:
                pass  # (the rest is waited for below, under the body's deadline)
        with trio.move_on_after(self._body_timeout):
            while not over():
                if not self._watched:
                    self._on_message(await self.receive())
                else:
                    if self._progress is None:
                        self._progress = trio.Event()
                    await self._progress.wait()
            return True
        return False

    async def read_body(self) -> bytes:
        """The whole body (the protocol's body reader; called at most once).

        Raises:
            BodyTooLarge: it is over the app's ``MAX_CONTENT_LENGTH``.
            BodyTimeout: it did not arrive within ``BODY_TIMEOUT``.
            BodyIncomplete: the client left before all of it arrived.

        Cancellation: the client went away, or the server is stopping.
        """
        if self.declared is not None and self.declared > self._max:
            raise BodyTooLarge  # refused without waiting for it (as Quart)
        if not await self._receive_until_over(request=False):
            raise BodyTimeout
        if self._too_large:
            raise BodyTooLarge
        if self._truncated:
            raise BodyIncomplete
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def run(self, respond: _Responder, *, watch: bool) -> None:
        """Answer the request with ``await respond(exchange)`` and write what it returns.

        Before a response starts, a body nobody read is consumed (within the
        limit and ``BODY_TIMEOUT``); after it, the rest of a body past the
        limit still arriving is received and dropped (Hypercorn's queue to
        the app is bounded: unread, it would stall the connection).

        ``watch``: a task watches for ``http.disconnect`` while the response
        is made and written (for requests that may wait: reads, long-polls,
        event streams) -- or, when the server offers the
        :data:`CONNECTION_OVER` extension (``serve``'s Hypercorn, HTTP/1.x),
        the connection's end cancels the exchange, with no task at all (with
        its ``"cancel_on_over"``, no cancel scope either: the server cancels
        the request's task).
        Without it the request is answered inline, with no task of its own:
        a write whose body has arrived is carried out even if the client has
        gone, and its response is dropped.

        One frame while a response streams (this one): an idle event stream
        holds it for its whole life (benchmarks/RESULTS.md, issue 14).

        Cancellation: the client went away (with ``watch``), which ends the
        exchange quietly (with ``"cancel_on_over"``, ``Cancelled`` propagates
        to the request task's root, which the server's cancelled group
        catches), or the server is stopping, which propagates; either way a
        streaming response's generator is closed, its cleanup run.
        """
        cancel_on_over = self._cancel_on_over if watch else None
        if watch and cancel_on_over is None:
            await self._run_watched(respond)
            return
        if cancel_on_over is not None:
            cancel_on_over(True)
        try:
            response = await respond(self)
            del respond  # (nothing of it is held while a response streams)
            if isinstance(response, StreamingResponse):
                send = self.send
                frames = response.frames
                try:
                    await self._consume()
                    start: HTTPResponseStartEvent = {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": _encode(response.headers),
                    }
                    del response
                    await send(start)
                    del start
                    async for frame in frames:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                        del frame  # (sent: not held while the next one is awaited)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    # Closed even if never started (then it holds nothing): its own
                    # finally blocks release what it took, as under Quart.
                    aclose = getattr(frames, "aclose", None)
                    if aclose is not None:
                        await aclose()
            else:
                await self._complete(response)
            if self.declared is None or self.declared <= self._max:
                # (A body declared over the limit is not waited for: Hypercorn closes
                # the connection after the response, as under Quart.)
                await self._receive_until_over(request=True)
        finally:
            if cancel_on_over is not None:
                cancel_on_over(False)

    async def _run_watched(self, respond: _Responder) -> None:
        """:meth:`run` with ``watch``, without the server's ``"cancel_on_over"``."""
        when_over = self._when_over
        if when_over is not None:
            # The server says when the connection is over: no watcher task.
            with trio.CancelScope() as scope:
                forget = when_over(functools.partial(scope.cancel, reason="client disconnected"))
                try:
                    await self.run(respond, watch=False)
                finally:
                    forget()
            return
        try:
            async with trio.open_nursery() as nursery:
                self._watched = True
                nursery.start_soon(self._watch, nursery.cancel_scope)
                await self.run(respond, watch=False)
                nursery.cancel_scope.cancel(reason="response sent")
        except BaseExceptionGroup as group:
            # The one error (the server's send failed, say) as itself; several stay a group.
            sole = collapse(group)
            if sole is None:
                raise
            raise sole from None

    async def _consume(self) -> None:
        # The rest of the body, dropped (see the module docstring); one declared
        # over the limit is not waited for: the connection closes after the response.
        if self.declared is None or self.declared <= self._max:
            await self._receive_until_over(request=False)

    async def _complete(self, response: Response) -> None:
        await self._consume()
        headers = _encode(response.headers)
        headers.append((b"content-length", str(len(response.body)).encode()))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": response.status,
            "headers": headers,
        }
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": response.body,
            "more_body": False,
        }
        if self._response_timeout == math.inf:
            # No deadline (or the server's own: CONNECTION_OVER): a scope would cost ~6 µs for nothing.
            await self.send(start)
            await self.send(body)
            return
        with trio.move_on_after(self._response_timeout):
            await self.send(start)
            await self.send(body)


def _encode(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [_encoded(name, value) for name, value in headers.items()]


@functools.lru_cache(maxsize=256)
def _encoded(name: str, value: str) -> tuple[bytes, bytes]:
    # As Quart encodes them: lower-case names, UTF-8 values. Cached: most
    # pairs are the same on every response (the browser headers, an event
    # stream's), and Hypercorn keeps a response's headers while it lasts: one
    # copy for every event stream, not one each (~1.3 KB per connection).
    return (name.lower().encode(), value.encode())


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    _Responder = Callable[[Exchange], Awaitable[Response | StreamingResponse]]
    _Queue = trio.MemoryReceiveChannel[ASGIReceiveEvent] | AppQueue[ASGIReceiveEvent]
    WhenOver = Callable[[Callable[[], None]], Callable[[], None]]
    CancelOnOver = Callable[[bool], None]
