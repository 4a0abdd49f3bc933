"""Quart-Trio to the protocol layer and back: the request in, the response out.

Routes stay thin: :func:`parsed_request` turns Quart's request into the
framework-free :class:`~trio_streams.protocol.Request`, a protocol handler
answers, and :func:`to_quart` turns its answer into Quart's response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response as QuartResponse
from quart import request

from ..protocol import Request, Response, StreamingResponse

if TYPE_CHECKING:
    from quart import Request as QuartRequest
    from werkzeug.datastructures import Headers, MultiDict


class _Headers:
    """Werkzeug's headers, read in place (no copy per request)."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def get(self, name: str) -> str | None:
        return self._headers.get(name)


class _Query:
    """Werkzeug's query arguments, read in place."""

    __slots__ = ("_args",)

    def __init__(self, args: MultiDict[str, str]) -> None:
        self._args = args

    def getlist(self, name: str) -> list[str]:
        return self._args.getlist(name)


async def _read_request_body() -> bytes:
    # Quart's own limit (MAX_CONTENT_LENGTH) may refuse here with a 413.
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    return body


def parsed_request(**path_params: str) -> Request:
    """The current Quart request as a :class:`Request`; its body is read only on demand."""
    # The request itself, not the context-local proxy: each proxied access costs a lookup.
    current: QuartRequest = request._get_current_object()  # type: ignore[attr-defined]
    return Request(
        method=current.method,
        path=current.path,
        host_url=current.root_url,  # with the root path: the URLs handed out are under it
        path_params=path_params,
        query=_Query(current.args),
        headers=_Headers(current.headers),
        content_length=current.content_length,
        read_body=_read_request_body,
    )


def to_quart(response: Response | StreamingResponse) -> QuartResponse:
    """``response`` as Quart's, with exactly its headers (no default ``Content-Type``).

    A streaming response keeps its frames as they are (one write each, its
    generator closed by Quart when the client goes away) and has no
    response timeout: the stream bounds itself.
    """
    headers = response.headers
    content_type = headers.get("Content-Type")
    body = response.frames if isinstance(response, StreamingResponse) else response.body
    out = QuartResponse(body, status=response.status, content_type=content_type)
    if isinstance(response, StreamingResponse):
        out.timeout = None
    if content_type is None:
        del out.headers["Content-Type"]  # not Quart's default text/html
    for name, value in headers.items():
        if name != "Content-Type":
            out.headers[name] = value
    return out
