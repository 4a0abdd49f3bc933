"""The ``text/event-stream`` of ``GET /runs/{id}/events``: a run's events as SSE frames."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .._errors import RunNotFound
from ..log._events import Event
from ..runs._hub import RunNotLive
from ._messages import StreamingResponse
from ._sse import SharedBatches, retry_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ..log._events import Item
    from ..runs._hub import Hub
    from ._runs_api import RunsApi

# The name it has always logged under (operators filter on it).
logger = logging.getLogger("trio_streams.web")

#: Every runs SSE writer in the process shares one: S subscribers of a run
#: woken by the same publish encode its events once (see SharedBatches).
SHARED_BATCHES = SharedBatches()

UNAVAILABLE_FRAME = b'event: unavailable\ndata: {"message": "the run is no longer available here"}\n\n'
#: A stream of a run owned by another instance that this server's shutdown
#: cut before the run's terminal event arrived (``Hub.drain``): not the
#: run's end; the client resumes through another server with Last-Event-ID.
SHUTDOWN_FRAME = (
    b'event: unavailable\ndata: {"message": "this server is shutting down; '
    b'resume with Last-Event-ID", "reason": "shutdown"}\n\n'
)


def event_stream(api: RunsApi, hub: Hub, run_id: str, after: int) -> StreamingResponse:
    """A streaming response of the run's events after ``after``, ending after its terminal event.

    Everything available is written at once (a backlog is one frame per
    batch of up to 1024 events); live events go out as they are published,
    and an idle stream gets a heartbeat comment every ``api.heartbeat``
    seconds. A client that goes away cancels only its own subscription,
    never the run (unless the run was started with ``on_disconnect="cancel"``).
    """
    return StreamingResponse(
        200,
        {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        },
        _frames(api, hub, run_id, after),
    )


async def _frames(api: RunsApi, hub: Hub, run_id: str, after: int) -> AsyncIterator[bytes]:
    api.sse_streams_open += 1
    api.counters["sse_streams"] += 1
    # The delivery lag of events published from now on (replayed history is not a lag).
    observe_lag = getattr(api, "observe_delivery_lag", None)
    since = hub.wall_clock()
    try:
        # The retry hint goes out first, which also sends the headers now.
        yield retry_frame(api.retry_ms)
        try:
            async with hub.subscribe(run_id, after=after, heartbeat=api.heartbeat) as subscription:
                ended = False  # the run's terminal event went out
                while True:
                    try:
                        items = await subscription.receive_batch()
                    except trio.EndOfChannel:
                        if not ended and hub.closing:
                            yield SHUTDOWN_FRAME
                        return
                    yield SHARED_BATCHES.encode(items)
                    last = items[-1]
                    ended = isinstance(last, Event) and last.terminal
                    if observe_lag is not None:
                        # Written (the server took the frame): one observation, its oldest live event's.
                        oldest = _oldest_live(items, since)
                        if oldest is not None:
                            observe_lag(hub.wall_clock() - oldest)
        except (RunNotFound, RunNotLive, ValueError) as exc:
            # Checked before the response started; only a race (evicted or
            # moved in between) lands here. Say so rather than end silently.
            logger.warning(
                "run %s: stream ended before it began: %s",
                run_id,
                exc,
                extra={"run_id": run_id, "event": "stream_unavailable"},
            )
            yield UNAVAILABLE_FRAME
    finally:
        api.sse_streams_open -= 1


def _oldest_live(items: Sequence[Item], since: float) -> float | None:
    """The earliest timestamp among ``items``' events published at or after ``since``."""
    last = items[-1]
    if last.__class__ is Event and last.timestamp < since:
        # A run's timestamps do not decrease: a backlog of history is skipped
        # without a look at each of its (up to 1024) events.
        return None
    for item in items:  # in seq order: the first live one is the oldest
        if item.__class__ is Event and item.timestamp >= since:
            return item.timestamp
    return None
