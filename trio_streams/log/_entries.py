"""Entries: what a log holds, each with its position (``seq``) and its size.

A run's :class:`~trio_streams.Event` and a Durable Stream's append (a
``Chunk``) are both entries: numbered 1, 2, 3 ... within their log (a fork's
numbering continues its source's), and sized for the log's byte bound.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Entry(Protocol):
    """One entry of a log."""

    @property
    def seq(self) -> int:
        """Its position: the previous entry's plus one."""
        ...

    @property
    def size(self) -> int:
        """About how many bytes it holds, for a log's byte bound."""
        ...


E = TypeVar("E", bound=Entry)


def cut_to_bytes(entries: list[E], max_bytes: int) -> list[E]:
    """The first entries of ``entries`` up to the one that reaches ``max_bytes``
    (of their :attr:`Entry.size`), at least one."""
    total = 0
    for index, entry in enumerate(entries):
        total += entry.size
        if total >= max_bytes:
            return entries[: index + 1]
    return entries
