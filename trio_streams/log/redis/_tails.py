"""One ``XREAD BLOCK`` for every run this instance follows (a single Redis).

Theory of operation
-------------------
A run owned elsewhere is followed here by one tail (``RemoteRuns.follow``,
for a mirror). Each tail used to wait in an ``XREAD BLOCK`` of its own: with
many live runs, one command -- and one reply, one wake-up -- per run per
batch its owner writes. Here one task, :meth:`TailMux.run`, reads the streams
of every registered tail in one ``XREAD BLOCK`` (``COUNT`` per stream), and
hands each its events: one round trip however many runs moved. (A blocked
``XREAD`` is answered with only the stream that woke it, so the same read
goes again, without ``BLOCK``, right behind it in the same pipeline: see
:meth:`TailMux._read`.)

A tail registers where its catch-up read ended (an entry id); the mux's
next read includes it from there, so nothing is missed. So that a read
already blocked picks a new tail up at once, the registration adds an entry
to this instance's *wake* stream (``{prefix}tails:<instance>``, one entry,
an hour's TTL renewed by each registration), which every read includes too.
A tail can be *paused* (not read; what a read in flight brought it is read
again later from the same id), and is woken the same way when resumed.

Errors (Redis down, a timeout) are logged and the read is retried with
backoff from the same ids: no event is lost or repeated. A tail waits for
its own activity with the follower's block time; an idle spell is when it
checks the run (``RemoteRuns``: a dead owner is claimed), as an idle
``XREAD`` did. A Redis Cluster keeps one ``XREAD`` per run (the streams of
one read must share a slot); so does a tail past :data:`MAX_TAILS`.

Memory: one small record per registered tail, at most :data:`MAX_TAILS`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from coredis.tokens import PureToken

from ._codec import decode_entries

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .._events import Event
    from ._client import Client

logger = logging.getLogger("trio_streams.redis")

#: Tails one read serves; a follower past it reads on its own.
MAX_TAILS = 1024
#: Entries read per stream per round trip.
COUNT = 64
#: The wake stream's TTL (ms), renewed by every registration.
WAKE_TTL_MS = 3_600_000


@dataclass(eq=False, slots=True)
class Tail:
    """One followed run: where its stream was read up to, and what came."""

    key: str
    last_id: str
    seq: int
    deliver: Callable[[list[Event]], None]
    #: Set when the mux delivered to it (its follower replaces it after each wait).
    activity: trio.Event = field(default_factory=trio.Event)
    #: The run's terminal event was delivered.
    ended: bool = False
    #: ``deliver`` raised this: the follower re-raises it.
    error: BaseException | None = None
    #: Not read while set (its follower is checking the run, see ``RemoteRuns``).
    paused: bool = False


def _block_cap_ms(client: Any) -> int:
    """A quarter of ``client``'s stream timeout (ms), or 10 minutes if it has none."""
    options = getattr(client.connection_pool, "connection_kwargs", None) or {}
    timeout = options.get("stream_timeout")
    return 600_000 if not timeout else max(1, int(timeout * 250))


class TailMux:
    """The shared reader of this instance's tails (see the module docstring).

    Args:
        client: the Redis client (a single Redis, not a Cluster).
        wake_key: this instance's wake stream.
        block_seconds: how long one read blocks.
    """

    def __init__(self, client: Callable[[], Client], wake_key: str, *, block_seconds: float) -> None:
        self._client = client
        self._wake_key = wake_key
        self._block_ms = max(1, int(block_seconds * 1000))
        self._tails: dict[str, Tail] = {}
        self._added = trio.Event()
        self.running = False
        #: Round trips made (reads), for tests and statistics.
        self.reads = 0

    def __len__(self) -> int:
        return len(self._tails)

    def accepts(self, key: str) -> bool:
        """True if a tail of ``key`` can register (the mux runs, has room, and has none of it)."""
        return self.running and key not in self._tails and len(self._tails) < MAX_TAILS

    @contextmanager
    def register(self, tail: Tail) -> Iterator[Tail]:
        """Read ``tail`` with the others while the block lasts (see :meth:`wake`)."""
        assert self.accepts(tail.key)
        self._tails[tail.key] = tail
        self._added.set()
        try:
            yield tail
        finally:
            if self._tails.get(tail.key) is tail:
                del self._tails[tail.key]

    async def wake(self) -> None:
        """Make a read blocked now return, so the next includes the tails registered since.

        Cancellation: as for any command.
        """
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {"w": "1"}, trim_strategy=PureToken.MAXLEN, threshold=1)
            pipe.pexpire(self._wake_key, WAKE_TTL_MS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the registered tails' streams until cancelled; Redis errors are
        logged and retried with backoff (from the same ids).

        Cancellation: the only way it ends; registered tails just stop moving.
        """
        wake_last = "0-0"  # at most one stale wake entry: one extra round trip
        delay = 0.05
        self.running = True
        task_status.started()
        try:
            while True:
                if not self._tails:
                    self._added = trio.Event()
                    await self._added.wait()
                    continue
                streams = {self._wake_key: wake_last}
                streams.update((key, t.last_id) for key, t in self._tails.items() if not t.paused)
                try:
                    self.reads += 1
                    reply = await self._read(streams)
                except Exception as exc:
                    logger.warning("following runs: %s; retrying in %.2fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                for key, entries in (reply or {}).items():
                    if not entries:
                        continue
                    name = str(key)
                    if name == self._wake_key:
                        wake_last = str(entries[-1].identifier)
                        continue
                    tail = self._tails.get(name)
                    if tail is not None:
                        self._deliver(tail, entries)
        finally:
            self.running = False

    async def _read(self, streams: dict[str, str]) -> dict[Any, Any]:
        """One round trip: the blocked read, and the same read again right behind it.

        Redis (before 7.2) serves a blocked ``XREAD`` with the one stream whose
        write woke it, however many that write moved: an owner's flush of 25 runs
        woke this read with one, and the other 24 waited for the next read. The
        second, non-blocking read queued behind it on the same connection runs as
        soon as the first is served, and brings every stream that moved (all of a
        flush: its entries are one script call, ``APPEND_BATCH``). Both replies
        come back together; a stream in both is the second's (read later from the
        same id: the same entries and maybe more).

        The blocked read is part of a pipeline, which waits for its reply within
        the client's stream timeout like any command: it blocks a quarter of that
        at most (an idle read's length only bounds how often it comes back).
        """
        client = self._client()
        async with client.pipeline(transaction=False) as pipe:
            blocked = pipe.xread(streams, count=COUNT, block=min(self._block_ms, _block_cap_ms(client)))
            behind = pipe.xread(streams, count=COUNT)
        first, second = await blocked, await behind
        return {**(first or {}), **(second or {})}

    def _deliver(self, tail: Tail, entries: Any) -> None:
        if tail.paused:
            return  # read again from the same id once its follower resumes it
        tail.last_id = str(entries[-1].identifier)
        events = decode_entries(((str(e.identifier), e.field_values) for e in entries), tail.seq)
        if events:
            tail.seq = events[-1].seq
            try:
                tail.deliver(events)
            except Exception as exc:  # the follower's, re-raised there (this task serves all)
                tail.error = exc
            if events[-1].terminal:
                tail.ended = True
        tail.activity.set()
