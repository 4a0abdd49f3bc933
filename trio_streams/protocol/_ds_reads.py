"""Durable Streams reads over HTTP: catch-up (with ETag/304), long-poll, and SSE with recycling.

These work on any :class:`~trio_streams.durable._reads.ReadSource`, so a
stored stream and a run read alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ..durable import _headers as parse
from ..durable._backend import StoredSource
from ..durable._cursor import next_cursor
from ..durable._errors import bad_request
from ..durable._headers import is_text
from ..durable._offsets import BEGINNING, NOW, Offset
from ..durable._reads import Chunked
from ..log._deadlines import current_wheel
from ._ds_http import etag_matches, protocol_response
from ._durable_sse import control_event, data_event
from ._messages import StreamingResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..durable._log import Data
    from ..durable._reads import ReadSettings, ReadSource
    from ._messages import Request, Response

_LIVE_MODES = (None, "long-poll", "sse")
PUBLIC_CACHE = "public, max-age=60, stale-while-revalidate=300"
PRIVATE_CACHE = "private, max-age=60, stale-while-revalidate=300"


def read_query(request: Request) -> tuple[Offset | str, str | None]:
    """``offset`` and ``live`` of a read, checked (400 on anything malformed)."""
    offsets = list(request.args("offset"))
    start = parse.read_from(offsets)
    live = request.arg("live")
    if live not in _LIVE_MODES:
        raise bad_request("invalid_live", "live must be long-poll or sse")
    if live is not None and not offsets:
        raise bad_request("offset_required", f"live={live} needs an offset (-1 for the beginning)")
    return start, live


async def serve_read(
    request: Request, source: ReadSource, start: Offset | str, live: str | None, settings: ReadSettings
) -> Response | StreamingResponse:
    """A ``GET``: catch-up, long-poll or SSE from ``start`` (400 past the tail)."""
    tail = source.tail()
    if start == BEGINNING:
        position = 0
    elif start == NOW:
        position = tail.position
    else:
        assert isinstance(start, Offset)
        if start.position > tail.position:
            raise bad_request("offset_beyond_tail", f"offset {start} is past the stream's tail ({tail})")
        position = start.position
    if live == "sse":
        return sse(request, source, position, settings=settings)
    if live == "long-poll":
        return await long_poll(request, source, position, settings=settings)
    return await catch_up(request, source, position, now=start == NOW, settings=settings)


def body_of(pieces: list[Data], *, json_mode: bool) -> bytes:
    """The body of a read: JSON messages as one array, bytes concatenated."""
    if json_mode:
        messages = [message for piece in pieces if isinstance(piece, tuple) for message in piece]
        return b"[" + b",".join(messages) + b"]"
    return b"".join(piece for piece in pieces if isinstance(piece, bytes))


def _state_headers(found: Chunked) -> dict[str, str]:
    headers = {"Stream-Next-Offset": str(found.end)}
    if found.up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    if found.closed:
        headers["Stream-Closed"] = "true"
    return headers


def _etag(source: ReadSource, position: int, found: Chunked) -> str:
    return f'"{source.etag_id}:{position}:{found.end.position}{":c" if found.closed else ""}"'


async def catch_up(
    request: Request, source: ReadSource, position: int, *, now: bool, settings: ReadSettings
) -> Response:
    """``GET ?offset=``: the data from ``position`` (``now``: none, just the tail)."""
    found = await source.read(position)
    if now:  # position is the tail: no data, no ETag, not cacheable
        headers = _state_headers(found)
        headers["Cache-Control"] = "no-store"
        return _data_response(source, found, headers)
    headers = _state_headers(found)
    etag = _etag(source, position, found)
    headers["ETag"] = etag
    headers["Cache-Control"] = PRIVATE_CACHE if settings.private else PUBLIC_CACHE
    if etag_matches(request, etag):
        return protocol_response(304, headers)
    return _data_response(source, found, headers)


def _data_response(source: ReadSource, found: Chunked, headers: dict[str, str]) -> Response:
    body = body_of(found.pieces, json_mode=source.json)
    return protocol_response(200, headers, body=body, content_type=source.content_type)


async def long_poll(
    request: Request, source: ReadSource, position: int, *, settings: ReadSettings
) -> Response:
    """``live=long-poll``: data now if there is some; else wait for it, the close, or the timeout.

    Cancellation (the client went away, the server stops): the wait ends,
    the waiting gauge is restored, and ``Cancelled`` propagates.
    """
    cursor = next_cursor(request.arg("cursor"), time.time())
    if position >= source.tail().position and not source.is_closed():
        # Deleted meanwhile, or the server stopping: a 204, and the next request tells.
        await _wait(source, position, trio.current_time() + settings.long_poll_timeout, settings)
    found = await source.read(position)
    if found.pieces:
        headers = _state_headers(found)
        headers["Stream-Cursor"] = cursor
        headers["Cache-Control"] = PRIVATE_CACHE if settings.private else PUBLIC_CACHE
        headers["ETag"] = _etag(source, position, found)
        return _data_response(source, found, headers)
    headers = _state_headers(Chunked([], found.end, True, found.closed))
    if not found.closed:
        headers["Stream-Cursor"] = cursor
    headers["Cache-Control"] = "no-store"
    return protocol_response(204, headers)


def sse(request: Request, source: ReadSource, position: int, *, settings: ReadSettings) -> StreamingResponse:
    """``live=sse``: data and control events until the stream closes or the connection is recycled."""
    # Everything the frames need from the request is read now: they are
    # generated after the handler has returned.
    events = _events(source, position, settings, request.arg("cursor"))
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not is_text(source.content_type):
        headers["Stream-SSE-Data-Encoding"] = "base64"
    return StreamingResponse(200, headers, events)


async def _events(
    source: ReadSource, position: int, settings: ReadSettings, client_cursor: str | None
) -> AsyncIterator[bytes]:
    # The connection is recycled after sse_recycle seconds (the protocol asks
    # for about a minute, so CDNs can collapse readers); the client resumes
    # from the last control event's offset.
    recycle_at = trio.current_time() + settings.sse_recycle
    binary = not is_text(source.content_type)
    announced = False
    while True:
        found = await source.read(position)
        cursor = next_cursor(client_cursor, time.time())
        if found.pieces:
            position = found.end.position
            announced = True
            # (No frame held in a local while it waits: only what it needs for the next read.)
            yield data_event(found.pieces, json_mode=source.json, binary=binary) + control_event(
                str(found.end), cursor=cursor, up_to_date=found.up_to_date, closed=found.closed
            )
        elif found.closed:
            yield control_event(str(found.end), cursor=None, up_to_date=True, closed=True)
            return
        elif not announced:
            announced = True
            yield control_event(str(found.end), cursor=cursor, up_to_date=True, closed=False)
        if (found.closed and found.up_to_date) or trio.current_time() >= recycle_at:
            return
        if found.up_to_date:
            del found, cursor  # (the last read and its cursor: not held while it waits)
            # (_wait's counting inline: one coroutine frame fewer held by every idle stream.)
            settings.waiting.value += 1
            try:
                wheel = current_wheel()
                if wheel is None or not wheel.open or not isinstance(source, StoredSource):
                    more = await source.wait(position, recycle_at)
                else:
                    # serve, on the memory store: parked here, on the stream's Changed and the
                    # shared recycle timer (DeadlineWheel.wait inline). No frames of the
                    # source's and the store's waits, no cancel scope per idle stream.
                    on = source.parking(position)
                    more = on is not False
                    if on is not True and on is not False:
                        wait = wheel.park(on, recycle_at)
                        try:
                            await wait  # (trio's wait_task_rescheduled, without its frames)
                        finally:
                            wheel.woken(wait)
            finally:
                settings.waiting.value -= 1
            if not more:
                return


async def _wait(source: ReadSource, position: int, deadline: float, settings: ReadSettings) -> bool:
    """``source.wait``, counted in ``settings.waiting`` while it lasts."""
    settings.waiting.value += 1
    try:
        return await source.wait(position, deadline)
    finally:
        settings.waiting.value -= 1
