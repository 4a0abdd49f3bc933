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

#: Names a producer may not use for its own events: the terminal types and the
#: control items, which only the hub and subscriptions create.
RESERVED_TYPES: Final = TERMINAL_TYPES | {"gap", "heartbeat"}

# A rough fixed cost per event (object, seq, timestamp, list slot) added to the
# encoded payload when byte limits are enforced; it keeps a flood of tiny
# events from looking free.
_EVENT_OVERHEAD: Final = 64


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
        return cls(seq, type, data, timestamp, data_json)

    @property
    def terminal(self) -> bool:
        """True for ``done``, ``error``, ``cancelled`` and ``dead``."""
        return self.type in TERMINAL_TYPES

    @property
    def size(self) -> int:
        """Approximate bytes this event holds in memory, for log bounds."""
        return len(self.data_json) + len(self.type) + _EVENT_OVERHEAD


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
