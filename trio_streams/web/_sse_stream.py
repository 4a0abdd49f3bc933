"""The ``text/event-stream`` response of ``GET /runs/{id}/events``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from quart import Response

from .._errors import RunNotFound
from .._hub import RunNotLive
from .._sse import encode_batch, retry_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._hub import Hub
    from ._extension import TrioStreams

logger = logging.getLogger("trio_streams.web")


def event_stream_response(streams: TrioStreams, hub: Hub, run_id: str, after: int) -> Response:
    """A streaming response of the run's events after ``after``, ending after its terminal event.

    Everything available is written at once (a backlog is one write per
    batch of up to 1024 events); live events go out as they are published.
    A client that goes away cancels only its own subscription, never the run
    (unless the run was started with ``on_disconnect="cancel"``).
    """
    response = Response(
        _frames(streams, hub, run_id, after),
        status=200,
        content_type="text/event-stream; charset=utf-8",
    )
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    response.timeout = None  # a stream may outlive any response timeout
    return response


async def _frames(streams: TrioStreams, hub: Hub, run_id: str, after: int) -> AsyncIterator[bytes]:
    streams.sse_streams_open += 1
    streams.counters["sse_streams"] += 1
    try:
        # The retry hint goes out first, which also sends the headers now.
        yield retry_frame(streams.retry_ms)
        try:
            async with hub.subscribe(run_id, after=after, heartbeat=streams.heartbeat) as subscription:
                while True:
                    try:
                        items = await subscription.receive_batch()
                    except trio.EndOfChannel:
                        return
                    yield encode_batch(items)
        except (RunNotFound, RunNotLive, ValueError) as exc:
            # Checked before the response started; only a race (evicted or
            # moved in between) lands here. Say so rather than end silently.
            logger.warning("run %s: stream ended before it began: %s", run_id, exc)
            yield b'event: unavailable\ndata: {"message": "the run is no longer available here"}\n\n'
    finally:
        streams.sse_streams_open -= 1
