"""Server-Sent Events framing (sans-I/O): the one field-safe encoder, and the runs' frames.

Both protocols write SSE through :func:`event_frame` (text) or
:func:`event_frame_bytes` (bytes, for Durable Streams payloads, which need
not be UTF-8), which hold the rules of the format (WHATWG HTML, "Server-sent
events", "Interpreting an event stream"):

- A line ends at CR, LF or CRLF, and a blank line ends the event. So the
  ``event:`` and ``id:`` fields must not contain CR or LF (the rest would be
  read as fields of the writer's choosing -- ``event: tok`` then
  ``id: 999``), and a reader ignores an ``id:`` that contains NUL: all three
  are refused there with a ``ValueError``. ``data`` is split on every line
  ending and each line goes out as its own ``data:`` line, which a reader
  joins back with LF, so no payload can end its event or forge a field.
- A reader drops one space after the colon. :func:`event_frame` always
  writes one (``data: {...}``), so a value that starts with a space keeps
  it; :func:`event_frame_bytes` writes one only when the line starts with a
  space (``data:[...]``, the form Durable Streams clients are tested with).

Runs: ``id:`` is the event's seq, ``event:`` its type and ``data:`` its
JSON, which never contains a line break, so every event is exactly three
lines. A gap has no ``id:`` (a client's Last-Event-ID must stay the last
*real* event) and a heartbeat is a comment line, which EventSource ignores.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from ..log._events import Event, Gap, Heartbeat, Item, encode_json

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

HEARTBEAT_FRAME = b": heartbeat\n\n"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def check_field(name: str, value: str) -> str:
    """``value``, if it can be the value of the one-line field ``name`` (``event``, ``id``).

    Raises:
        ValueError: it contains CR, LF or NUL.
    """
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"an SSE {name}: field may not contain CR, LF or NUL: {value[:64]!r}")
    return value


def event_frame(data: str, *, event: str | None = None, id: str | None = None) -> str:
    """One event: ``id:``, ``event:`` (each if given), then ``data`` line by line, then a blank line.

    Raises:
        ValueError: ``event`` or ``id`` contains CR, LF or NUL.
    """
    head = ""
    if id is not None:
        head = f"id: {check_field('id', id)}\n"
    if event is not None:
        head += f"event: {check_field('event', event)}\n"
    if "\n" in data or "\r" in data:
        return head + "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data)) + "\n"
    return f"{head}data: {data}\n\n"


def event_frame_bytes(data: bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """:func:`event_frame` for a payload in bytes, with the compact ``data:`` form.

    Raises:
        ValueError: ``event`` or ``id`` contains CR, LF or NUL.
    """
    head = b""
    if id is not None:
        head = b"id: " + check_field("id", id).encode() + b"\n"
    if event is not None:
        head += b"event: " + check_field("event", event).encode() + b"\n"
    lines = _LINE_BREAK_BYTES.split(data) if b"\n" in data or b"\r" in data else [data]
    # A reader drops one space after "data:"; a line that starts with one gets another.
    body = b"".join((b"data: " if line[:1] == b" " else b"data:") + line + b"\n" for line in lines)
    return head + body + b"\n"


def comment_frame(text: str) -> str:
    """A comment line (``: text``), which readers ignore: a heartbeat.

    Raises:
        ValueError: ``text`` contains CR, LF or NUL.
    """
    return f": {check_field('comment', text)}\n\n"


def encode_event(event: Event) -> str:
    """Encode one event as an SSE frame.

    Raises:
        ValueError: its type contains CR, LF or NUL (``RunContext.emit``
            refuses such types, so only a store written by something else
            could hold one).
    """
    type, data = event.type, event.data_json
    # The hot path of every runs SSE writer: when no rule can apply (a
    # printable type has no CR, LF or NUL; JSON text has no line break and
    # an int id needs no check), these are the bytes event_frame writes,
    # without its checks and calls (test_sse pins the equality).
    if type.isprintable() and "\n" not in data and "\r" not in data:
        return f"id: {event.seq}\nevent: {type}\ndata: {data}\n\n"
    return event_frame(data, event=type, id=str(event.seq))


def encode_item(item: Item) -> str:
    """Encode any subscription item (event, gap or heartbeat) as SSE text."""
    if isinstance(item, Event):
        return encode_event(item)
    if isinstance(item, Gap):
        payload = encode_json({"missed": item.missed, "first_available": item.first_available})
        return event_frame(payload, event="gap")
    if isinstance(item, Heartbeat):
        return comment_frame("heartbeat")
    raise TypeError(f"not a subscription item: {item!r}")


def encode_batch(items: Iterable[Item]) -> bytes:
    """Encode a batch into one buffer, so a backlog goes out as one write."""
    return "".join(map(encode_item, items)).encode()


#: The largest batch encoding :class:`SharedBatches` keeps for other writers
#: (a live step's events; a backlog read by one reader is not worth keeping).
SHARED_BATCH_BYTES: Final = 64 * 1024


class SharedBatches:
    """One encoding per batch, shared by every SSE writer that sends the same batch.

    When a run publishes, each of its S subscribers wakes and reads the same
    slice of the run's log -- the same ``Event`` objects. Encoding it S times
    gives S equal buffers; this keeps the last encoding and hands it to the
    next writer whose batch is that slice, so fan-out encodes each live batch
    once. It holds at most one buffer of up to :data:`SHARED_BATCH_BYTES`
    (and its two end events), whatever the number of runs.

    A batch is recognized by its first and last events (the same objects)
    and its length, which identify one slice of one run's log: the events of
    a subscription's batch are contiguous in seq (``Subscription.receive_batch``;
    a batch that starts with a ``Gap`` or is a ``Heartbeat`` is encoded
    afresh, never shared).
    """

    __slots__ = ("_last", "hits", "misses")

    def __init__(self) -> None:
        self._last: tuple[Event, Event, int, bytes] | None = None
        #: Batches served from the shared encoding / encoded here.
        self.hits = 0
        self.misses = 0

    def encode(self, items: Sequence[Item]) -> bytes:
        """:func:`encode_batch` of ``items``, a batch as ``Subscription.receive_batch``
        returns it (events contiguous in seq, after at most one control item),
        shared with the writers before and after it that send the same slice."""
        if not items:
            return b""
        first, last = items[0], items[-1]
        if type(first) is not Event or type(last) is not Event:
            return encode_batch(items)
        count = len(items)
        kept = self._last
        if kept is not None and kept[0] is first and kept[1] is last and kept[2] == count:
            self.hits += 1
            return kept[3]
        self.misses += 1
        frames = encode_batch(items)
        # A subscription's batch of events is contiguous in seq: then its two
        # ends and its length name this slice of this run and nothing else.
        if len(frames) <= SHARED_BATCH_BYTES and last.seq - first.seq + 1 == count:
            self._last = (first, last, count, frames)
        return frames


def retry_frame(milliseconds: int) -> bytes:
    """The ``retry:`` field that sets the browser's reconnection delay."""
    return f"retry: {int(milliseconds)}\n\n".encode()
