"""Quart-Trio to the protocol layer and back: the request in, the response out.

Routes stay thin: :func:`parsed_request` turns Quart's request into the
framework-free :class:`~trio_streams.protocol.Request`, a protocol handler
answers, and :func:`to_quart` turns its answer into Quart's response.
"""

from __future__ import annotations

from quart import Response as QuartResponse
from quart import request

from ..protocol import Headers, Request, Response, StreamingResponse


async def _read_request_body() -> bytes:
    # Quart's own limit (MAX_CONTENT_LENGTH) may refuse here with a 413.
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    return body


def parsed_request(**path_params: str) -> Request:
    """The current Quart request as a :class:`Request`; its body is read only on demand."""
    return Request(
        method=request.method,
        path=request.path,
        host_url=request.host_url,
        path_params=path_params,
        query={name: tuple(values) for name, values in request.args.lists()},
        headers=Headers(request.headers.items()),
        content_length=request.content_length,
        read_body=_read_request_body,
    )


def to_quart(response: Response | StreamingResponse) -> QuartResponse:
    """``response`` as Quart's, with exactly its headers (no default ``Content-Type``).

    A streaming response keeps its frames as they are (one write each, its
    generator closed by Quart when the client goes away) and has no
    response timeout: the stream bounds itself.
    """
    if isinstance(response, StreamingResponse):
        out = QuartResponse(response.frames, status=response.status)
        out.timeout = None
    else:
        out = QuartResponse(response.body, status=response.status)
    del out.headers["Content-Type"]
    for name, value in response.headers.items():
        out.headers[name] = value
    return out
