"""The request and response model the protocol handlers speak: no framework.

A web framework (Quart-Trio in :mod:`trio_streams.web`) or a bare ASGI
callable turns its request into a :class:`Request`, awaits a handler, and
writes the :class:`Response` or :class:`StreamingResponse` it returns. The
handlers never see the framework: everything a request carries is here,
and everything else (the store, the hub, limits, the caller) is passed in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

#: Reads the whole request body (the framework's own limit may refuse first).
BodyReader = Callable[[], Awaitable[bytes]]


async def _no_body() -> bytes:
    return b""


class HeaderLookup(Protocol):
    """Request headers as the handlers read them: by name, in any case."""

    def get(self, name: str) -> str | None:
        """The first value of header ``name``, or ``None``."""
        ...


class QueryLookup(Protocol):
    """Query parameters as the handlers read them: every value of a name, in order."""

    def getlist(self, name: str) -> Sequence[str]:
        """Every value of ``name`` (empty if absent)."""
        ...


class Headers:
    """Request headers from ``(name, value)`` pairs: case-insensitive, the first of a repeated one."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple(pairs)
        first: dict[str, str] = {}
        for name, value in self._pairs:
            first.setdefault(name.lower(), value)
        self._first = first

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (any case), or ``None``."""
        return self._first.get(name.lower())

    def items(self) -> tuple[tuple[str, str], ...]:
        """Every header as sent, in order."""
        return self._pairs


class Query:
    """Query parameters from a mapping of each name to its values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Sequence[str]] | None = None) -> None:
        self._values = dict(values or {})

    def getlist(self, name: str) -> Sequence[str]:
        """Every value of ``name`` (empty if absent)."""
        return self._values.get(name, ())


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request.

    Attributes:
        method: upper-case (``GET``, ...).
        path: the request's path, percent-decoded, without the query.
        host_url: ``scheme://host/`` the client addressed, with the path a
            proxy mounts the app under (ASGI ``root_path``: ``scheme://host/api/``),
            for ``Location`` and every URL handed out.
        path_params: what the route matched (``stream_name``, ``run_id``).
        query: every query parameter with all its values, in order.
        headers: the request headers.
        content_length: the declared ``Content-Length`` (``None``: chunked or absent).
        read_body: awaits the whole body; call it at most once.
    """

    method: str
    path: str = "/"
    host_url: str = "http://localhost/"
    path_params: Mapping[str, str] = field(default_factory=dict)
    query: QueryLookup = field(default_factory=Query)
    headers: HeaderLookup = field(default_factory=Headers)
    content_length: int | None = None
    read_body: BodyReader = _no_body

    @property
    def root_path(self) -> str:
        """The path the app is mounted under (``/api``; ``""`` at the host's root), from ``host_url``."""
        if self.host_url.count("/") == 3:  # scheme://host/ -- the common case, without parsing
            return ""
        return urlsplit(self.host_url).path.rstrip("/")

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or ``None``."""
        values = self.query.getlist(name)
        return values[0] if values else None

    def args(self, name: str) -> tuple[str, ...]:
        """Every value of query parameter ``name`` (empty if absent)."""
        return tuple(self.query.getlist(name))


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: exactly these headers (no default ``Content-Type``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class StreamingResponse:
    """A response whose body is a stream of frames, written as they come.

    ``frames`` is an async generator: the server iterates it and writes each
    frame at once (a frame is already coalesced: a backlog is one frame per
    batch). It owns its cleanup in ``finally`` blocks; when the client goes
    away the server cancels the iteration and closes the generator, so a
    departing reader releases only what it holds (its subscription, its
    gauges). No response timeout applies: the stream bounds itself (it ends
    after a terminal event, or is recycled).
    """

    status: int
    headers: dict[str, str]
    frames: AsyncIterator[bytes]


AnyResponse = Response | StreamingResponse
