"""``Stream-Cursor``: time intervals that only move forward, for CDN collapsing.

Time is cut into ``INTERVAL``-second slots counted from ``EPOCH``; a live
response carries the current slot number. A client echoes it back; if its
cursor is not behind the current slot (a cached response would loop), the
server answers a cursor strictly past it by a random 1-3600 seconds' worth
of slots, so cache keys always progress.
"""

from __future__ import annotations

import random

#: 2024-10-09T00:00:00Z, the protocol's cursor epoch.
EPOCH = 1_728_432_000
INTERVAL = 20

_random = random.SystemRandom()


def next_cursor(client_cursor: str | None, now: float, *, jitter: random.Random = _random) -> str:
    """The cursor for a live response at POSIX time ``now``."""
    current = int((now - EPOCH) // INTERVAL)
    if (
        client_cursor is not None
        and client_cursor.isascii()
        and client_cursor.isdigit()
        and len(client_cursor) < 19
    ):
        echoed = int(client_cursor)
        if echoed >= current:
            return str(echoed + max(1, jitter.randint(1, 3600) // INTERVAL))
    return str(current)
