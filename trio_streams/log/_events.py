"""Events and the control items a subscriber can receive.

Pure data, no trio: an :class:`Event` is one entry of a run's history; a
:class:`Gap` and a :class:`Heartbeat` are control items that only
subscriptions produce and that are never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ._json import encode_json as encode_json

#: The four event types that end a run. A run publishes exactly one, last.
TERMINAL_TYPES: Final = frozenset({"done", "error", "cancelled", "dead"})

#: Names a producer may not use for its own events: the terminal types, the
#: control items, which only the hub and subscriptions create, and
#: ``unavailable``, the SSE writer's own notice that a stream cannot go on.
RESERVED_TYPES: Final = TERMINAL_TYPES | {"gap", "heartbeat", "unavailable"}

#: The longest event type a producer may emit, in characters.
MAX_EVENT_TYPE_LENGTH: Final = 64


def check_event_type(type: str) -> None:
    """Refuse an event type a producer may not emit, naming the rule it breaks.

    The type becomes the SSE ``event:`` field, so it must be one line that
    cannot end its field early and forge another one (``"tok\\nid: 999"``
    would reset every reader's Last-Event-ID): a non-empty string of at
    most :data:`MAX_EVENT_TYPE_LENGTH` characters, without CR, LF or NUL,
    encodable as UTF-8, and not one of :data:`RESERVED_TYPES`.

    Raises:
        ValueError: the message names the rule.
    """
    # A producer emits a handful of types many times: each is checked once.
    if type.__class__ is str and type in _ACCEPTED:
        return
    if not isinstance(type, str):
        raise ValueError(f"an event type must be a string, not {type.__class__.__name__}")
    if not type:
        raise ValueError("an event type must not be empty")
    if len(type) > MAX_EVENT_TYPE_LENGTH:
        raise ValueError(f"an event type is at most {MAX_EVENT_TYPE_LENGTH} characters, not {len(type)}")
    # isprintable() is one fast check for the common case; it is False for
    # far more than the three characters refused below.
    if not type.isprintable():
        if "\r" in type or "\n" in type or "\0" in type:
            raise ValueError(f"an event type may not contain CR, LF or NUL (SSE framing): {type!r}")
        if not type.isascii():
            try:
                type.encode()
            except UnicodeEncodeError:
                message = f"an event type must be valid Unicode (no lone surrogate): {type!r}"
                raise ValueError(message) from None
    if type in RESERVED_TYPES:
        raise ValueError(f"event type {type!r} is reserved (terminal and control types: see RESERVED_TYPES)")
    if type.__class__ is str:  # a subclass could compare equal to anything
        if len(_ACCEPTED) >= _ACCEPTED_MAX:
            _ACCEPTED.clear()  # bounded: a producer inventing types starts over
        _ACCEPTED.add(type)


# Event types that passed check_event_type (exact str only), at most _ACCEPTED_MAX.
_ACCEPTED: Final[set[str]] = set()
_ACCEPTED_MAX: Final = 1024
#: The same set, for a caller that skips the call when a type is in it already.
ACCEPTED_TYPES: Final = _ACCEPTED


# A rough fixed cost per event (object, seq, timestamp, list slot) added to the
# encoded payload when byte limits are enforced; it keeps a flood of tiny
# events from looking free.
EVENT_SIZE_OVERHEAD: Final = 64
_EVENT_OVERHEAD: Final = EVENT_SIZE_OVERHEAD


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a run.

    Attributes:
        seq: 1, 2, 3 ... within the run; the SSE ``id``.
        type: the SSE ``event`` name, e.g. ``"token"`` or ``"done"``.
        data: a JSON-compatible value.
        timestamp: wall-clock seconds since the epoch when it was published.
        data_json: ``data`` encoded once, at publish time, and reused by every
            writer (SSE, stores) so fan-out never re-encodes.
    """

    seq: int
    type: str
    data: Any
    timestamp: float
    data_json: str = field(repr=False, compare=False)

    @classmethod
    def create(cls, seq: int, type: str, data: Any, timestamp: float) -> Event:
        """Build an event, encoding ``data`` as strict JSON.

        Raises:
            TypeError: ``data`` holds a value JSON has no form for.
            ValueError: ``data`` holds ``NaN`` or an infinity, a lone
                surrogate, or nests too deeply (the message names the event).
        """
        try:
            data_json = encode_json(data)
        except ValueError as exc:
            raise ValueError(f"event {type!r}: its data is not valid JSON: {exc}") from None
        if cls is not Event:
            return cls(seq, type, data, timestamp, data_json)
        # The frozen dataclass's __init__ sets each field through
        # object.__setattr__ (a lookup by name per field); the slots'
        # descriptors set the same fields directly, in half the time.
        event = _new(Event)
        _set_seq(event, seq)
        _set_type(event, type)
        _set_data(event, data)
        _set_timestamp(event, timestamp)
        _set_data_json(event, data_json)
        return event

    @property
    def terminal(self) -> bool:
        """True for ``done``, ``error``, ``cancelled`` and ``dead``."""
        return self.type in TERMINAL_TYPES

    @property
    def size(self) -> int:
        """Approximate bytes this event holds in memory, for log bounds."""
        return len(self.data_json) + len(self.type) + _EVENT_OVERHEAD


_new = object.__new__
_set_seq = Event.__dict__["seq"].__set__
_set_type = Event.__dict__["type"].__set__
_set_data = Event.__dict__["data"].__set__
_set_timestamp = Event.__dict__["timestamp"].__set__
_set_data_json = Event.__dict__["data_json"].__set__


@dataclass(frozen=True, slots=True)
class Gap:
    """Events were trimmed from history before this subscriber read them.

    The subscriber's cursor jumps to ``first_available``; nothing is skipped
    silently.

    Attributes:
        missed: how many events the subscriber will never see.
        first_available: the seq of the next event it will receive.
    """

    missed: int
    first_available: int
    type: str = field(default="gap", init=False)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for one heartbeat interval (trio clock time)."""

    time: float
    type: str = field(default="heartbeat", init=False)


#: What a subscription yields.
Item = Event | Gap | Heartbeat
