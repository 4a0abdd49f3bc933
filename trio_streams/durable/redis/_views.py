"""What one instance knows of the Durable Streams it wrote to Redis (pure: no I/O).

Theory of operation
-------------------
A *view* is a stream's meta as this instance's last successful commit left
it. A batch of appends is planned on it without a load; its commit checks
the view's version and incarnation, so a view that another instance made
stale costs one failed check and a load, never a wrong decision. At most
:data:`MAX_VIEWS` are kept (the least recently written go first).

A *recent* entry is the data of a stream's last commit on this instance,
kept only while readers of that stream wait here: the readers that commit
wakes read it from memory (data in Redis never changes, so it is valid
while a reader's tail is the one it ends at, in the same incarnation).
Together they hold at most :data:`MAX_RECENT_BYTES`; past that, streams
whose readers have gone give their room back, and if that is not enough the
commit is not kept (readers read Redis, as without it).

A view is *settled* while nothing from elsewhere can have changed its stream
since its commit started (``Notifications.elsewhere`` has not moved): a live
read that is at its tail then waits without loading the stream, since any
later change from another instance is notified, counted, and wakes it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._access import StreamId
    from .._log import Data
    from ._layout import Meta

#: How many streams' views are kept.
MAX_VIEWS = 10_000
#: How many bytes of last commits are kept for live readers, in all.
MAX_RECENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recent:
    """The entries (start, seq, data) of a stream's last commit here, ending at ``tail``."""

    incarnation: int
    tail: int
    entries: list[tuple[int, int, Data]]
    nbytes: int

    def covers(self, meta: Meta, position: int) -> bool:
        """True if these entries hold everything of ``meta``'s stream from ``position``."""
        return (
            self.incarnation == meta.incarnation
            and self.tail == meta.tail.position
            and bool(self.entries)
            and self.entries[0][0] <= position < self.tail
        )


class LocalViews:
    """Views and recent commits of the streams this instance wrote (see the module docstring).

    Args:
        waiting: how many readers wait here on a stream (recent data is kept only for those).
    """

    def __init__(self, waiting: Callable[[StreamId], int]) -> None:
        self._waiting = waiting
        self._views: OrderedDict[StreamId, Meta] = OrderedDict()
        #: The count of changes from elsewhere (``Notifications.elsewhere``) each
        #: view's commit started at; absent: not known to be current.
        self._since: dict[StreamId, int] = {}
        self._recent: dict[StreamId, Recent] = {}
        self.recent_bytes = 0

    def view(self, ident: StreamId) -> Meta | None:
        return self._views.get(ident)

    def recent(self, ident: StreamId) -> Recent | None:
        return self._recent.get(ident)

    def settled(self, ident: StreamId, elsewhere: int) -> Meta | None:
        """The view of ``ident`` if it is still the stream's state: its commit
        started when the count of changes from elsewhere was ``elsewhere``, as it
        is now (a live read need not load the stream to know nothing is new)."""
        view = self._views.get(ident)
        return view if view is not None and self._since.get(ident) == elsewhere else None

    def remember(
        self,
        meta: Meta,
        entries: Sequence[tuple[int, int, Data]] = (),
        nbytes: int = 0,
        *,
        since: int | None = None,
    ) -> None:
        """``meta`` is how this instance's commit left its stream, adding
        ``entries``; ``since``: the count of changes from elsewhere when that
        commit started (``None``: the view is only a starting point to plan on)."""
        ident = meta.stream_id
        self._views[ident] = meta
        self._views.move_to_end(ident)
        if since is None:
            self._since.pop(ident, None)
        else:
            self._since[ident] = since
        while len(self._views) > MAX_VIEWS:
            gone, _ = self._views.popitem(last=False)
            self._since.pop(gone, None)
        self._forget_recent(ident)
        if not entries or not self._waiting(ident):
            return
        if self.recent_bytes + nbytes > MAX_RECENT_BYTES:
            for gone in [other for other in self._recent if not self._waiting(other)]:
                self._forget_recent(gone)
            if self.recent_bytes + nbytes > MAX_RECENT_BYTES:
                return
        self._recent[ident] = Recent(meta.incarnation, meta.tail.position, list(entries), nbytes)
        self.recent_bytes += nbytes

    def forget(self, ident: StreamId) -> None:
        """``ident`` moved in a way this instance does not know (or went)."""
        self._views.pop(ident, None)
        self._since.pop(ident, None)
        self._forget_recent(ident)

    def clear(self) -> None:
        self._views.clear()
        self._since.clear()
        self._recent.clear()
        self.recent_bytes = 0

    def _forget_recent(self, ident: StreamId) -> None:
        old = self._recent.pop(ident, None)
        if old is not None:
            self.recent_bytes -= old.nbytes
