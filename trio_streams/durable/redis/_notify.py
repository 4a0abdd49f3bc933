"""Waking this instance's live reads when a stream changes on any instance.

Every commit that changes a stream's data, closed state or existence adds
the stream to ``{prefix}ds:notify`` (a capped Redis stream): its name as
``n`` and, for a stream in an owner's namespace, the owner as ``o`` (see
:mod:`._layout`). One task per instance, :meth:`Notifications.follow`,
reads it with ``XREAD BLOCK`` and sets the :class:`trio.Event` of each
stream it sees, if a local reader waits on that stream: one Redis
connection however many readers wait, and no polling.

A reader takes the current event of its stream *before* it loads the
stream from Redis (:meth:`Notifications.watching`): a change committed
between the load and the wait has set that very event, so it is never
missed. When the follower loses Redis it wakes every reader (they look
again), so a notification lost meanwhile costs at most one wait.

While no reader waits on this instance the follower does not read (a busy
writer would otherwise cost a read per commit for nobody); when the first
reader registers it reads the current end again and, if notifications went
by unread meanwhile, wakes every reader once, so a change committed between
a registration and that read is not missed either.

:attr:`Notifications.elsewhere` counts every moment a change from another
instance may have happened (a notification of theirs seen, an idle spell
with notifications unread, a lost connection): while it holds, a stream
this instance committed last is as that commit left it, and a reader that
is there waits without loading it (see :mod:`._views`).

Memory: one event per stream that has local waiters (dropped with the last).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING

import coredis
import trio
from trio_util import AsyncValue

from .._access import StreamId

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

logger = logging.getLogger("trio_streams.durable.redis")

#: One XREAD BLOCK waits this long (ms) before the follower reads again.
BLOCK_MS = 5_000


class Notifications:
    """Per-stream wake-ups for this instance's waiting readers."""

    def __init__(self) -> None:
        self._events: dict[StreamId, trio.Event] = {}
        self._waiting: Counter[StreamId] = Counter()
        #: Readers registered on any stream (awaitable: ``wait_value``).
        self.readers: AsyncValue[int] = AsyncValue(0)
        #: Marks this instance's notifications (field ``i``): the follower skips
        #: them, since the commit woke this instance's readers itself.
        self.origin = secrets.token_hex(8)
        #: Counts what may have changed a stream behind this instance's back: a
        #: notification from another instance, an idle spell of the follower in
        #: which notifications went by unread, a lost connection. While it holds,
        #: a stream this instance committed last is as that commit left it (a
        #: change from elsewhere would have moved it, and will wake its readers).
        self.elsewhere = 0

    @property
    def idle(self) -> bool:
        """True when no reader waits (and no event is held)."""
        return not self._events and not self._waiting

    def waiting(self, ident: StreamId) -> int:
        """How many readers wait on the stream ``ident``."""
        return self._waiting[ident]

    @contextmanager
    def watching(self, ident: StreamId) -> Iterator[Callable[[], trio.Event]]:
        """Register a reader of ``ident``; yields a function returning the event
        to take before each look at the stream (set by its next change)."""
        self._waiting[ident] += 1
        self.readers.value += 1
        try:
            yield lambda: self._events.setdefault(ident, trio.Event())
        finally:
            self.readers.value -= 1
            self._waiting[ident] -= 1
            if self._waiting[ident] <= 0:
                del self._waiting[ident]
                self._events.pop(ident, None)

    def wake(self, ident: StreamId) -> None:
        event = self._events.pop(ident, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def follow(
        self,
        client: coredis.Redis[bytes] | coredis.RedisCluster[bytes],
        key: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read ``key`` from its current end, waking readers, until cancelled;
        report started once the end is known (no later change is missed).

        Cancellation: the only way it ends.
        """
        top = await client.xrevrange(key, end="+", start="-", count=1)
        last: str | bytes = top[0].identifier if top else "0-0"
        task_status.started()
        delay = 0.05
        while True:
            try:
                if not self.readers.value:
                    await self.readers.wait_value(lambda readers: readers > 0)
                    top = await client.xrevrange(key, end="+", start="-", count=1)
                    end = top[0].identifier if top else "0-0"
                    if end != last:  # notifications went by unread
                        last = end
                        self._lost_track()  # the readers registered before that end: they look again
                reply = await client.xread({key: last}, count=1024, block=BLOCK_MS)
            except (coredis.exceptions.RedisError, OSError) as exc:
                logger.warning("durable streams notifications: %s; retrying in %.2fs", exc, delay)
                self._lost_track()  # readers look again (and fail fast while redis is down)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            origin = self.origin.encode()
            for entries in (reply or {}).values():
                for entry in entries:
                    last = entry.identifier
                    if entry.field_values.get(b"i") != origin:
                        self.elsewhere += 1
                        self.wake(notified(entry.field_values))

    def _lost_track(self) -> None:
        """Something may have changed anywhere unseen: every reader looks again."""
        self.elsewhere += 1
        self.wake_all()


def notify_fields(ident: StreamId, origin: str | None = None) -> list[str]:
    """The fields of a notification that ``ident`` changed (what :func:`notified`
    reads), sent by the instance ``origin`` (if given)."""
    fields = ["n", ident.name] if ident.owner is None else ["n", ident.name, "o", ident.owner]
    return fields if origin is None else [*fields, "i", origin]


def notified(fields: Mapping[bytes | str, bytes | str]) -> StreamId:
    """The stream a notification names (an entry without ``o``: the shared namespace)."""
    owner = fields.get(b"o")
    return StreamId(None if owner is None else _text(owner), _text(fields[b"n"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
