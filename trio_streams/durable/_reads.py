"""What a read needs from a stream: :class:`ReadSource`, :class:`Chunked`, :class:`ReadSettings`.

Stored streams and runs both provide a :class:`ReadSource` (their data from
a position, their tail, whether they are closed, a way to wait for more),
so a run reads exactly like any other Durable Stream. Serving reads over
HTTP (catch-up, long-poll, SSE) is the protocol layer's
(:mod:`trio_streams.protocol`); nothing here knows HTTP or a web framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from trio_util import AsyncValue

if TYPE_CHECKING:
    from ._log import Data
    from ._offsets import Offset


@dataclass(frozen=True, slots=True)
class Chunked:
    """Data from a position: the pieces, the offset after them, and the state then."""

    pieces: list[Data]
    end: Offset
    up_to_date: bool
    closed: bool


class ReadSource(Protocol):
    """A readable stream (see the module docstring)."""

    content_type: str
    json: bool
    #: Distinguishes incarnations of a name in ETags; reveals nothing about other
    #: streams (no count of streams created, no order: random or keyed, never a counter).
    etag_id: str

    def tail(self) -> Offset: ...

    def is_closed(self) -> bool: ...

    async def read(self, position: int) -> Chunked:
        """What is available from ``position`` now (never waits for more)."""
        ...

    async def wait(self, position: int, deadline: float) -> bool:
        """Wait for data past ``position`` or the end, until ``deadline``.

        Returns False when waiting again is pointless (the stream is gone, or
        the server is stopping): an SSE response then ends.
        """
        ...


@dataclass(frozen=True, slots=True)
class ReadSettings:
    """How live reads behave: the long-poll timeout, the SSE recycle, caching."""

    long_poll_timeout: float
    sse_recycle: float
    #: Auth on: responses are ``private`` to caches.
    private: bool
    #: Live reads (long-polls, SSE responses) waiting for data now: a gauge
    #: for /metrics, and what a caller awaits to know a reader is parked.
    waiting: AsyncValue[int] = field(default_factory=lambda: AsyncValue(0))
