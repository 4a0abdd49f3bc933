"""Which subscriptions a stream belongs to: globs and an index over them (sans-I/O).

Globs are over stream paths split at ``/``: ``*`` matches exactly one
segment, ``**`` zero or more segments, anything else is literal (a segment
``a*`` is the literal text ``a*``: wildcards are whole segments).

:class:`MembershipIndex` answers "which subscriptions does ``path`` of
``owner`` match?" without scanning every pattern: a pattern is bucketed by
its first segment when that is literal (``events/*`` under ``events``), else
by its last segment when that is literal (``*/inbox`` under ``inbox``), else
in the owner's one wildcard bucket (``**``, ``*/*``). A lookup of ``a/b/c``
tests only three buckets (first ``a``, last ``c``, wildcard), and each
candidate without ``**`` is rejected on its segment count before any
comparison. Explicit members are a dict from stream to subscription keys.

A stream is appended to again and again, and patterns and members change
rarely (a subscription created or deleted, a member added or removed), so
the answer for a stream -- its pattern matches and its explicit
memberships, :meth:`MembershipIndex.members` -- is kept (:data:`MAX_CACHED`
streams at most; all forgotten at once when full, or when any pattern or
explicit member is added or removed), keyed by the plain ``(owner, path)``
tuple: an append to a stream looked up before costs one dict lookup,
matching or not, however many patterns there are.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._access import StreamId

#: A subscription's name: ``(owner, id)``.
SubscriptionKey = tuple[str | None, str]


def key_for_logs(key: SubscriptionKey) -> str:
    """A subscription as the logs name it: its name, and its owner when auth is on (two users'
    subscriptions may share a name)."""
    owner, name = key
    return repr(name) if owner is None else f"{name!r} of {owner}"


#: A stream's place in the index: ``(owner, path)``.
_Stream = tuple[str | None, str]
#: A stream's subscriptions: (by pattern, explicitly and not by pattern).
Members = tuple[tuple[SubscriptionKey, ...], tuple[SubscriptionKey, ...]]
#: ``(owner, "first" | "last" | "any", segment)``.
_Bucket = tuple[str | None, str, str | None]
#: How many streams' pattern matches :class:`MembershipIndex` keeps.
MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob (see the module docstring)."""

    text: str
    segments: tuple[str, ...]
    #: No ``**``: matches only paths of exactly as many segments.
    fixed: bool

    @classmethod
    def compile(cls, text: str) -> Glob:
        segments = tuple(text.split("/"))
        return cls(text, segments, "**" not in segments)

    @property
    def bucket(self) -> tuple[str, str | None]:
        """The index's bucket: ``("first", segment)``, ``("last", segment)`` or ``("any", None)``."""
        first, last = self.segments[0], self.segments[-1]
        if first not in ("*", "**"):
            return ("first", first)
        if last not in ("*", "**"):
            return ("last", last)
        return ("any", None)

    def matches(self, path: str) -> bool:
        """True when ``path`` matches."""
        return self.matches_parts(path.split("/"))

    def matches_parts(self, parts: list[str]) -> bool:
        """True when the path split at ``/`` into ``parts`` matches."""
        if self.fixed:
            if len(parts) != len(self.segments):
                return False
            # (A plain loop: this runs for every candidate of every append.)
            for segment, part in zip(self.segments, parts, strict=True):
                if segment != part and segment != "*":
                    return False
            return True
        return _match(self.segments, 0, parts, 0)


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
        self._buckets: dict[_Bucket, dict[SubscriptionKey, Glob]] = defaultdict(dict)
        self._explicit: dict[_Stream, set[SubscriptionKey]] = defaultdict(set)
        #: ``members``' answers since the patterns or members last changed (at most MAX_CACHED).
        self._members: dict[_Stream, Members] = {}

    def add_pattern(self, owner: str | None, key: SubscriptionKey, glob: Glob) -> None:
        self._members.clear()
        self._buckets[(owner, *glob.bucket)][key] = glob

    def remove_pattern(self, owner: str | None, key: SubscriptionKey, glob: Glob) -> None:
        self._members.clear()
        bucket_key = (owner, *glob.bucket)
        bucket = self._buckets.get(bucket_key)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[bucket_key]

    def add_explicit(self, stream: StreamId, key: SubscriptionKey) -> None:
        self._members.clear()
        self._explicit[(stream.owner, stream.name)].add(key)

    def remove_explicit(self, stream: StreamId, key: SubscriptionKey) -> None:
        self._members.clear()
        place = (stream.owner, stream.name)
        keys = self._explicit.get(place)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._explicit[place]

    def members(self, owner: str | None, name: str) -> Members:
        """The subscriptions ``name`` of ``owner`` belongs to: (those whose pattern
        matches it, those it is an explicit member of and whose pattern does not
        match it). Three buckets, or the answer kept from the last lookup (see the
        module docstring): what an append asks, so one plain-tuple dict lookup."""
        place = (owner, name)
        found = self._members.get(place)
        if found is None:
            if len(self._members) >= MAX_CACHED:
                self._members.clear()
            by_pattern = self._lookup(owner, name)
            explicit = self._explicit.get(place)
            only = () if explicit is None else tuple(key for key in explicit if key not in by_pattern)
            found = self._members[place] = (by_pattern, only)
        return found

    def by_pattern(self, stream: StreamId) -> tuple[SubscriptionKey, ...]:
        """The subscriptions whose pattern matches ``stream`` (see :meth:`members`)."""
        return self.members(stream.owner, stream.name)[0]

    def _lookup(self, owner: str | None, name: str) -> tuple[SubscriptionKey, ...]:
        parts = name.split("/")
        found: list[SubscriptionKey] = []
        for bucket_key in ((owner, "first", parts[0]), (owner, "last", parts[-1]), (owner, "any", None)):
            bucket = self._buckets.get(bucket_key)
            if bucket:
                found.extend(key for key, glob in bucket.items() if glob.matches_parts(parts))
        return tuple(found)

    def by_explicit(self, stream: StreamId) -> tuple[SubscriptionKey, ...]:
        """The subscriptions ``stream`` is an explicit member of."""
        keys = self._explicit.get((stream.owner, stream.name))
        return () if keys is None else tuple(keys)

    def cached(self) -> int:
        """How many streams' matches are kept (at most :data:`MAX_CACHED`)."""
        return len(self._members)

    def pattern_count(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())
