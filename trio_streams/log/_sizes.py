"""What things cost in memory, in bytes, as the memory budget counts them (sans-I/O).

The figures track what CPython really holds, not payload length: an event
keeps its ``data`` (Python objects) *and* its encoded JSON, plus the event
object, its seq and timestamp, and a slot in every list that holds it. The
constants were measured with ``tracemalloc`` on CPython 3.11 (see
``tests/test_budget.py::test_event_cost_tracks_what_python_holds``, which
keeps them honest).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._events import Event

#: The event object, its seq and timestamp objects, two list slots (the
#: run's log and the store's record) and the budget's own cost entry.
EVENT_OVERHEAD: Final = 136

#: A run the hub holds: the ``Run`` (cancel scopes, parking lot, trio
#: events, timers), its log and its snapshots; its metadata comes on top.
RUN_OVERHEAD: Final = 4 * 1024

#: A ``MemoryStore`` record: its ``RunInfo``, its log and index entries;
#: the run's metadata comes on top.
RECORD_OVERHEAD: Final = 2 * 1024

#: A Durable Stream in memory (the stream, its log, trio event, dicts) ...
STREAM_OVERHEAD: Final = 1200
#: ... each append's chunk (object, offsets, bytes header, list slots) ...
CHUNK_OVERHEAD: Final = 176
#: ... and each JSON message of an append (a ``bytes`` and its tuple slot).
MESSAGE_OVERHEAD: Final = 48

_getsizeof = sys.getsizeof


#: Types whose value is one object (no walk): ``sys.getsizeof`` is its whole size.
FLAT_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_FLAT: Final = FLAT_TYPES


def data_size(value: Any) -> int:
    """Bytes the Python objects of a JSON-compatible value hold.

    Shared objects (interned keys, small ints, ``None``) are counted every
    time they appear: an over-estimate by a few dozen bytes, never an
    under-estimate beyond pymalloc's rounding (measured: within 10%). Flat
    strings, dicts and lists (what producers emit most) take one pass;
    anything nested is walked.
    """
    kind = type(value)
    if kind in _FLAT:
        return _getsizeof(value)  # what the walk would count: one object
    total = _getsizeof(value)
    if kind is dict:
        for key, item in value.items():
            if type(item) not in _FLAT:
                return _walk(value)
            total += _getsizeof(key) + _getsizeof(item)
        return total
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _FLAT:
                return _walk(value)
            total += _getsizeof(item)
        return total
    return _walk(value)


def _walk(value: Any) -> int:
    # An explicit stack, not recursion: the JSON encoder accepted this value,
    # but it may be nested deeper than Python's recursion limit allows here.
    total = 0
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        total += _getsizeof(item)
        if isinstance(item, dict):
            extend(item.keys())
            extend(item.values())
        elif isinstance(item, list | tuple):
            extend(item)
    return total


def event_cost(event: Event) -> int:
    """Bytes one event holds in memory: its data, its JSON, and the fixed overhead."""
    data = event.data
    # A flat value (a token string, a number) is one object: no call, no walk.
    held = _getsizeof(data) if type(data) in _FLAT else data_size(data)
    return _getsizeof(event.data_json) + held + EVENT_OVERHEAD


def encoded_size(event: Event) -> int:
    """Bytes of the event's JSON data in UTF-8 (what ``max_event_bytes`` limits)."""
    return json_bytes(event.data_json)


def json_bytes(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (``isascii`` is O(1) on CPython: no copy for ASCII).

    A lone surrogate (events refuse them; any other text may hold one) counts
    as the three bytes it would take.
    """
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
