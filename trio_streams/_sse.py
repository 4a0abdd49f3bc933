"""Server-Sent Events framing (sans-I/O).

``id:`` is the event's seq, ``event:`` its type and ``data:`` its JSON, which
never contains a newline, so every event is exactly three lines. A gap has no
``id:`` (a client's Last-Event-ID must stay the last *real* event) and a
heartbeat is a comment line, which EventSource ignores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._events import Event, Gap, Heartbeat, Item, encode_json

if TYPE_CHECKING:
    from collections.abc import Iterable

HEARTBEAT_FRAME = b": heartbeat\n\n"


def encode_event(event: Event) -> str:
    """Encode one event as an SSE frame."""
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.data_json}\n\n"


def encode_item(item: Item) -> str:
    """Encode any subscription item (event, gap or heartbeat) as SSE text."""
    if isinstance(item, Event):
        return encode_event(item)
    if isinstance(item, Gap):
        payload = encode_json({"missed": item.missed, "first_available": item.first_available})
        return f"event: gap\ndata: {payload}\n\n"
    if isinstance(item, Heartbeat):
        return ": heartbeat\n\n"
    raise TypeError(f"not a subscription item: {item!r}")


def encode_batch(items: Iterable[Item]) -> bytes:
    """Encode a batch into one buffer, so a backlog goes out as one write."""
    return "".join(map(encode_item, items)).encode()


def retry_frame(milliseconds: int) -> bytes:
    """The ``retry:`` field that sets the browser's reconnection delay."""
    return f"retry: {int(milliseconds)}\n\n".encode()
