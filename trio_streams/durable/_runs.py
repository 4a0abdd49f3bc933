"""Runs as read-only Durable Streams: ``<mount>/runs/<run_id>``.

A run's events are a JSON stream: message ``n`` is event ``seq == n``, as
``{"seq", "type", "data", "timestamp"}``, so offset positions are seqs and
any Durable Streams client can follow a run, resume it, and see it end: the
stream is closed once the run has published its terminal event. Writes are
refused (405); who may read is what the runs API allows (with auth on,
another user's run is the same 404 as a run that does not exist).

Serving them over HTTP is :class:`trio_streams.protocol.RunStreams`.

Reads go through the hub's subscriptions (replay log, then the store), so
nothing here copies events. Events that exist nowhere any more (a trimmed
log with no store copy) are never skipped silently: in their place the read
returns one message ``{"seq": null, "type": "gap", "data": {"missed",
"first_available"}, "timestamp": null}``, what the runs API's ``gap`` event
says, and the next message is event ``first_available``.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Protocol

import trio

from .._errors import RunNotFound
from ..log._events import Event, Gap
from ..runs._hub import RunNotLive
from ._errors import DurableStreamError
from ._offsets import Offset
from ._reads import Chunked

if TYPE_CHECKING:
    from ..runs._hub import Hub
    from ..runs._run import RunInfo

#: Events one catch-up read returns at most.
MAX_EVENTS_PER_READ = 1024


class RunAccess(Protocol):
    """What run streams need from the runs API (``TrioStreams`` provides it)."""

    def caller(self, authorization: str | None) -> str | None:
        """The user of the request (``None`` with auth off); raises to refuse."""
        ...

    def hub_for_reading(self) -> Hub: ...

    def may_read(self, info: RunInfo, caller: str | None) -> bool: ...


class RunSource:
    """One run as a :class:`~._reads.ReadSource`."""

    content_type = "application/json"
    json = True

    def __init__(self, hub: Hub, info: RunInfo) -> None:
        self._hub = hub
        self._info = info
        self.run_id = info.run_id
        self.etag_id = f"run-{info.run_id}"

    def _last_seq(self) -> int:
        run = self._hub.get(self.run_id)
        return self._info.last_seq if run is None else run.last_seq

    def tail(self) -> Offset:
        last = self._last_seq()
        return Offset(last, last)

    def is_closed(self) -> bool:
        run = self._hub.get(self.run_id)
        return (self._info.status if run is None else run.status).finished

    async def read(self, position: int) -> Chunked:
        target = self._last_seq()
        messages: list[bytes] = []
        end = position
        if position < target:
            try:
                async with self._hub.subscribe(self.run_id, after=position) as subscription:
                    # Everything up to ``target`` is there to read (the log or the
                    # store has it), so this never waits; a batch may reach past it.
                    with contextlib.suppress(trio.EndOfChannel):
                        while subscription.cursor < target and len(messages) < MAX_EVENTS_PER_READ:
                            batch = await subscription.receive_batch(MAX_EVENTS_PER_READ - len(messages))
                            messages.extend(_message(item) for item in batch if isinstance(item, Event | Gap))
                    end = subscription.cursor
            except (RunNotFound, RunNotLive, ValueError) as exc:
                raise DurableStreamError(503, "run_unavailable", f"run {self.run_id}: {exc}") from None
        else:
            await trio.lowlevel.checkpoint()
        tail = self._last_seq()
        up_to_date = end >= tail
        return Chunked(
            [tuple(messages)] if messages else [],
            Offset(end, end),
            up_to_date,
            up_to_date and self.is_closed(),
        )

    async def wait(self, position: int, deadline: float) -> bool:
        if self._last_seq() > position or self.is_closed():
            await trio.lowlevel.checkpoint()
            return True
        try:
            async with self._hub.subscribe(self.run_id, after=position) as subscription:
                with trio.move_on_at(deadline):
                    await subscription.receive_batch(1)
        except trio.EndOfChannel:
            pass
        except (RunNotFound, RunNotLive, ValueError):
            return False
        return True


def _message(item: Event | Gap) -> bytes:
    """An event as its message; a gap as the message that says what was lost."""
    if isinstance(item, Gap):
        return (
            f'{{"seq":null,"type":"gap","data":{{"missed":{item.missed},'
            f'"first_available":{item.first_available}}},"timestamp":null}}'
        ).encode()
    event = item
    return (
        f'{{"seq":{event.seq},"type":{json.dumps(event.type)},'
        f'"data":{event.data_json},"timestamp":{event.timestamp!r}}}'
    ).encode()
