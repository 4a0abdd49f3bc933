"""Offsets: opaque to clients, ``<seq>_<position>`` to us, zero-padded so they sort as strings.

An offset names a boundary in a stream. ``seq`` counts the appends that end
at or before the boundary; ``position`` counts the units before it (bytes,
or messages in a JSON stream). Both are zero-padded to 16 digits, so the
plain string order of two offsets of one stream is their stream order, and
every append (which adds at least one unit) yields a strictly greater one.

Reads only need ``position`` (a read can start anywhere); ``seq`` keeps the
offsets of a fork and its source identical up to the fork point, since a
fork copies the source's boundaries rather than renumbering them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WIDTH = 16
_LIMIT = 10**_WIDTH
_PATTERN = re.compile(r"^([0-9]{16})_([0-9]{16})$")

#: The sentinels a client may send instead of an offset.
BEGINNING = "-1"
NOW = "now"


@dataclass(frozen=True, slots=True, order=True)
class Offset:
    """A boundary in a stream: ``seq`` appends and ``position`` units before it."""

    seq: int
    position: int

    def __post_init__(self) -> None:
        if not (0 <= self.seq < _LIMIT and 0 <= self.position < _LIMIT):
            raise ValueError(f"offset parts must be in [0, 10**{_WIDTH}): {self.seq}, {self.position}")

    def __str__(self) -> str:
        return f"{self.seq:016d}_{self.position:016d}"

    @classmethod
    def parse(cls, text: str) -> Offset:
        """Parse an offset this server minted.

        Raises:
            ValueError: anything else (including the sentinels ``-1`` and ``now``).
        """
        match = _PATTERN.match(text)
        if match is None:
            raise ValueError(f"not an offset: {text[:64]!r}")
        return cls(int(match.group(1)), int(match.group(2)))


#: The start of every stream.
START = Offset(0, 0)
