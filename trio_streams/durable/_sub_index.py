"""Which subscriptions a stream belongs to: globs and an index over them (sans-I/O).

Globs are over stream paths split at ``/``: ``*`` matches exactly one
segment, ``**`` zero or more segments, anything else is literal (a segment
``a*`` is the literal text ``a*``: wildcards are whole segments).

:class:`MembershipIndex` answers "which subscriptions does ``path`` of
``owner`` match?" without scanning every pattern: patterns are bucketed by
``(owner, first segment)`` when the first segment is literal, and in one
``(owner, None)`` bucket when it is a wildcard. A lookup tests only the
path's own bucket and the owner's wildcard bucket. Explicit members are a
dict from stream to subscription keys.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._access import StreamId

#: A subscription's name: ``(owner, id)``.
SubscriptionKey = tuple[str | None, str]


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob (see the module docstring)."""

    text: str
    segments: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> Glob:
        return cls(text, tuple(text.split("/")))

    @property
    def first_literal(self) -> str | None:
        """The first segment when it is literal (the index's bucket), else ``None``."""
        first = self.segments[0]
        return None if first in ("*", "**") else first

    def matches(self, path: str) -> bool:
        """True when ``path`` matches."""
        return _match(self.segments, 0, path.split("/"), 0)


def _match(pattern: tuple[str, ...], i: int, parts: list[str], j: int) -> bool:
    # Iterative over literal/`*` segments; recursive only at `**` (bounded by
    # the path's segment count for each `**`).
    while i < len(pattern):
        segment = pattern[i]
        if segment == "**":
            if i + 1 == len(pattern):
                return True
            return any(_match(pattern, i + 1, parts, k) for k in range(j, len(parts) + 1))
        if j >= len(parts) or (segment != "*" and segment != parts[j]):
            return False
        i += 1
        j += 1
    return j == len(parts)


class MembershipIndex:
    """Patterns and explicit members of every subscription, by owner.

    Subscriptions are named by ``(owner, id)``.
    """

    def __init__(self) -> None:
        self._buckets: dict[tuple[str | None, str | None], dict[SubscriptionKey, Glob]] = defaultdict(dict)
        self._explicit: dict[StreamId, set[SubscriptionKey]] = defaultdict(set)

    def add_pattern(self, owner: str | None, key: SubscriptionKey, glob: Glob) -> None:
        self._buckets[(owner, glob.first_literal)][key] = glob

    def remove_pattern(self, owner: str | None, key: SubscriptionKey, glob: Glob) -> None:
        bucket_key = (owner, glob.first_literal)
        bucket = self._buckets.get(bucket_key)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[bucket_key]

    def add_explicit(self, stream: StreamId, key: SubscriptionKey) -> None:
        self._explicit[stream].add(key)

    def remove_explicit(self, stream: StreamId, key: SubscriptionKey) -> None:
        keys = self._explicit.get(stream)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._explicit[stream]

    def by_pattern(self, stream: StreamId) -> tuple[SubscriptionKey, ...]:
        """The subscriptions whose pattern matches ``stream`` (its bucket and the wildcard one)."""
        first = stream.name.split("/", 1)[0]
        found: list[SubscriptionKey] = []
        for bucket_key in ((stream.owner, first), (stream.owner, None)):
            bucket = self._buckets.get(bucket_key)
            if bucket:
                found.extend(key for key, glob in bucket.items() if glob.matches(stream.name))
        return tuple(found)

    def by_explicit(self, stream: StreamId) -> tuple[SubscriptionKey, ...]:
        """The subscriptions ``stream`` is an explicit member of."""
        return tuple(self._explicit.get(stream, ()))

    def pattern_count(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())
