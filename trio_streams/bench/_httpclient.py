"""A small HTTP/1.1 client on trio and h11, for the load generator.

It speaks just what ``trio-streams bench`` needs, with as little per-event
Python work as possible: JSON requests on a kept-alive connection, and
server-sent-event streams parsed incrementally (:class:`SSEParser`). h11 is
already a dependency of Hypercorn, so this adds none.
"""

from __future__ import annotations

import json
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

_READ_SIZE = 65536


class HTTPError(Exception):
    """The connection failed or the server broke the protocol."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``HTTPError`` if it is not)."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HTTPError(f"HTTP {self.status}: body is not JSON: {self.body[:200]!r}") from exc


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched server-sent event, or a comment (``event == ""`` and
    ``comment`` set), e.g. a heartbeat."""

    id: str | None
    event: str
    data: str
    comment: str | None = None


class SSEParser:
    """Incremental ``text/event-stream`` parser (the WHATWG rules: lines end
    in CR, LF or CRLF; ``data`` lines join with LF; a blank line dispatches)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Parse ``chunk``; return the messages it completed."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._buffer = buffer.split(b"\n")
        messages: list[SSEMessage] = []
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if not line:
                if self._data or self._event:
                    messages.append(SSEMessage(self._id, self._event or "message", "\n".join(self._data)))
                self._event = ""
                self._data = []
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if not name:
                messages.append(SSEMessage(None, "", "", comment=value))
            elif name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                self._id = value
            # "retry" and unknown fields are ignored, as the spec says.
        return messages


class HTTPConnection:
    """One kept-alive HTTP/1.1 connection. Not safe for concurrent requests:
    use one per task.

    Args:
        base_url: ``http://host:port`` or ``https://...``; a path prefix is
            prepended to every target.
        headers: sent with every request (e.g. ``Authorization``).
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, not {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._authority = parts.netloc.rpartition("@")[2]
        self._headers = dict(headers or {})
        self._stream: trio.abc.Stream | None = None
        self._conn = h11.Connection(h11.CLIENT)

    async def _connect(self) -> trio.abc.Stream:
        if self._stream is None or self._conn.our_state is not h11.IDLE:
            if self._stream is not None:
                await trio.aclose_forcefully(self._stream)
            try:
                stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
            except OSError as exc:
                raise HTTPError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
            if self._tls:
                stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=self._host)
            self._stream = stream
            self._conn = h11.Connection(h11.CLIENT)
        return self._stream

    async def aclose(self) -> None:
        """Close the connection. Idempotent."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await trio.aclose_forcefully(stream)

    async def request(
        self, method: str, target: str, *, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Send a request and read the whole response.

        Raises:
            HTTPError: the connection failed or the response was malformed.

        Cancellation: the connection is dropped (the next request reconnects).
        """
        async with self.stream(method, target, json_body=json_body, headers=headers) as (status, hdrs, body):
            chunks = [chunk async for chunk in body]
        return Response(status, hdrs, b"".join(chunks))

    @asynccontextmanager
    async def stream(
        self, method: str, target: str, *, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[int, dict[str, str], _Body]]:
        """Send a request; yield ``(status, headers, body chunks)`` as soon as
        the response head arrives. Leaving the block early drops the
        connection (a reconnect is cheaper than draining an endless stream).

        Raises:
            HTTPError: the connection failed or the response was malformed.
        """
        payload = b"" if json_body is None else json.dumps(json_body).encode()
        all_headers = {"host": self._authority, **self._headers, **(headers or {})}
        if json_body is not None:
            all_headers["content-type"] = "application/json"
        all_headers["content-length"] = str(len(payload))
        request = h11.Request(method=method, target=self._prefix + target, headers=list(all_headers.items()))
        # A kept-alive connection the server has since closed as idle (its
        # keep-alive timeout: 5 s under serve) fails before any byte of an
        # answer: the server never read the request, so it goes again, once,
        # on a new connection. A fresh connection's failure is the server's.
        reused = self._stream is not None and self._conn.our_state is h11.IDLE
        stream = await self._connect()
        conn = self._conn
        body = _Body(self, stream)
        try:
            try:
                head = await self._send(stream, request, payload)
            except _ClosedBeforeAnswer:
                if not reused:
                    raise
                await self.aclose()
                stream = await self._connect()
                conn = self._conn
                body = _Body(self, stream)
                head = await self._send(stream, request, payload)
            response_headers = {
                name.decode().lower(): value.decode("latin-1") for name, value in head.headers
            }
            yield head.status_code, response_headers, body
        except _ClosedBeforeAnswer as exc:
            await self.aclose()
            raise HTTPError(f"{method} {target}: {exc}") from exc
        except (h11.ProtocolError, trio.BrokenResourceError, OSError) as exc:
            await self.aclose()
            raise HTTPError(f"{method} {target}: {_why_broken(exc)}") from exc
        finally:
            if not body.finished:
                await self.aclose()
            elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()

    async def _send(self, stream: trio.abc.Stream, request: h11.Request, payload: bytes) -> h11.Response:
        """Send ``request`` and read its answer's head (after any 1xx).

        Raises:
            _ClosedBeforeAnswer: the connection ended (closed, reset) before
                a byte of the answer came.
        """
        conn = self._conn
        data = conn.send(request)
        data += conn.send(h11.Data(data=payload)) if payload else b""
        data += conn.send(h11.EndOfMessage())
        try:
            await stream.send_all(data)
            chunk = bytes(await stream.receive_some(_READ_SIZE))
        except (trio.BrokenResourceError, ConnectionError) as exc:
            raise _ClosedBeforeAnswer(_why_broken(exc)) from exc
        if not chunk:
            raise _ClosedBeforeAnswer("the server closed the connection")
        conn.receive_data(chunk)
        head = await self._next_event(stream)
        while isinstance(head, h11.InformationalResponse):
            head = await self._next_event(stream)
        if not isinstance(head, h11.Response):
            raise HTTPError(f"expected a response, got {head!r}")
        return head

    async def _next_event(self, stream: trio.abc.Stream) -> Any:
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                # b"" (the peer closed) makes h11 report ConnectionClosed,
                # or a protocol error mid-message.
                conn.receive_data(bytes(await stream.receive_some(_READ_SIZE)))
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise HTTPError("the server closed the connection")
            return event


def _why_broken(exc: BaseException) -> str:
    """What broke a connection, in words (a TLS failure says so: an https URL to a plain server)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed ({seen.reason or seen}): does the server speak HTTPS at this URL?"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return f"the connection broke ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"


class _ClosedBeforeAnswer(Exception):
    """The connection ended before a byte of the answer to a request came."""


class _Body:
    """A response body, read chunk by chunk (``async for chunk in body``)."""

    def __init__(self, connection: HTTPConnection, stream: trio.abc.Stream) -> None:
        self._connection = connection
        self._stream = stream
        self.finished = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self.finished:
            raise StopAsyncIteration
        event = await self._connection._next_event(self._stream)
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            self.finished = True
            raise StopAsyncIteration
        raise HTTPError(f"unexpected {event!r} in a response body")
