"""Group commit: concurrent appends to one stream share one Redis round trip.

Theory of operation
-------------------
:meth:`GroupCommit.submit` queues an append on its stream's queue and waits
for its answer. Each stream with queued appends has a
:class:`~trio_streams.log._group_commit.CommitQueue` (the group-commit core
the runs' Redis writer uses too), whose committer task (in the nursery the
store owns for as long as it is connected) takes everything queued -- up to
a batch bound -- and hands it to ``commit`` (one planned, version-checked
script call, see :mod:`._plan`), then takes what arrived meanwhile, and ends
when the queue is empty. An append that finds no committer starts one, so
an idle stream's append is flushed at once; appends arriving while a commit
is in flight wait for it and go together in the next one. There is no timer
on the path.

Each append is answered only when ``commit`` has decided it: its data is in
Redis, or it was refused, or the batch failed (every append of it gets the
error). A waiter cancelled before its append was taken removes it (nothing
is written); one cancelled later stops waiting, and its append commits or
not with the others, whose answers do not depend on it. If the committer
itself is cancelled (the store closes), every append it holds is answered
with a 503.

Bounds: at most ``max_pending`` appends and ``max_pending_bytes`` body bytes
are queued or in flight in the whole store; an append past either is
refused at once with a 503 (``store_busy``, ``Retry-After``). A batch holds
at most ``max_batch`` appends and about ``max_batch_bytes`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ...log._group_commit import CommitQueue
from .._errors import DurableStreamError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._access import StreamId
    from .._stream import AppendOutcome, AppendRequest


@dataclass(eq=False, slots=True)
class Pending:
    """One queued append and, once decided, its answer."""

    request: AppendRequest
    nbytes: int
    outcome: AppendOutcome | None = None
    error: BaseException | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def answer(self, outcome: AppendOutcome | BaseException) -> None:
        """Decide this append (the first answer counts)."""
        if self.done.is_set():
            return
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.outcome = outcome
        self.done.set()


@dataclass(frozen=True, slots=True)
class GroupCommitStatistics:
    """What :meth:`GroupCommit.statistics` reports."""

    #: Appends queued or in flight, and their body bytes.
    pending: int
    pending_bytes: int
    #: Batches committed (one script call each, retries aside) and the appends in them.
    batches: int
    appends: int
    #: Appends refused because a bound was reached.
    refused: int


class GroupCommit:
    """Per-stream queues of appends, each drained by one committer task."""

    def __init__(
        self,
        commit: Callable[[StreamId, list[Pending]], Awaitable[None]],
        *,
        max_pending: int = 10_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        max_batch: int = 256,
        max_batch_bytes: int = 1024 * 1024,
    ) -> None:
        if min(max_pending, max_pending_bytes, max_batch, max_batch_bytes) < 1:
            raise ValueError("the group commit bounds must be positive")
        self._commit = commit
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self._queues: dict[StreamId, CommitQueue[Pending]] = {}
        self._nursery: trio.Nursery | None = None
        self._pending = 0
        self._pending_bytes = 0
        self._batches = 0
        self._appends = 0
        self._refused = 0

    def statistics(self) -> GroupCommitStatistics:
        return GroupCommitStatistics(
            self._pending, self._pending_bytes, self._batches, self._appends, self._refused
        )

    def attach(self, nursery: trio.Nursery | None) -> None:
        """Run committers in ``nursery`` from now on (``None``: refuse appends)."""
        self._nursery = nursery

    async def submit(self, ident: StreamId, request: AppendRequest) -> AppendOutcome:
        """Append ``request`` to ``ident`` with whatever else is queued for it;
        its outcome once decided.

        Raises:
            DurableStreamError: the protocol's refusal; 503 when a bound is
                reached, the store is not connected or closes, or Redis fails.

        Cancellation: before the append is taken into a batch, nothing is
        written; after, it is committed or not, and the others are unaffected.
        """
        nursery = self._nursery
        if nursery is None:
            raise _unavailable("the Durable Streams store is not connected to Redis")
        nbytes = len(request.body)
        if self._pending + 1 > self.max_pending or self._pending_bytes + nbytes > self.max_pending_bytes:
            self._refused += 1
            raise DurableStreamError(
                503,
                "store_busy",
                # No figures: they would be every user's appends (the counts are in /metrics).
                "too many appends are waiting for Redis; retry",
                headers={"Retry-After": "1"},
            )
        queue = self._queues.get(ident)
        if queue is None:
            queue = self._queues[ident] = self._open_queue(ident, nursery)
        item = Pending(request, nbytes)
        self._pending += 1
        self._pending_bytes += nbytes
        queue.push(item)  # flushed at once if the stream has no commit in flight
        try:
            await item.done.wait()
        except BaseException:
            # State-only handler: an append not taken yet is withdrawn; then re-raise.
            if queue.withdraw(item):
                self._release(item)
            raise
        if item.error is not None:
            raise item.error
        assert item.outcome is not None
        return item.outcome

    def _open_queue(self, ident: StreamId, nursery: trio.Nursery) -> CommitQueue[Pending]:
        """The queue of ``ident``'s appends, committed batch by batch; it is
        dropped when its committer ends (see :meth:`_run`)."""

        async def flush(batch: list[Pending]) -> None:
            await self._run(ident, batch)

        def idle() -> None:
            if self._queues.get(ident) is queue and not len(queue):
                del self._queues[ident]

        queue: CommitQueue[Pending] = CommitQueue(
            flush,
            size=_nbytes,
            max_items=self.max_batch,
            max_bytes=self.max_batch_bytes,
            abandon=self._abandon,
            on_idle=idle,
        )
        queue.attach(nursery)
        return queue

    def _release(self, item: Pending) -> None:
        self._pending -= 1
        self._pending_bytes -= item.nbytes

    async def _run(self, ident: StreamId, batch: list[Pending]) -> None:
        """Commit ``batch`` (appends to ``ident``), answering each.

        A failed commit answers every append of it with the error.
        Cancellation: every append of the batch not answered yet is answered
        with a 503 (the queued ones go to :meth:`_abandon`).
        """
        try:
            await self._commit(ident, batch)
            self._batches += 1
            self._appends += len(batch)
        except Exception as exc:
            for item in batch:
                item.answer(exc)
        finally:
            closing = None
            for item in batch:
                self._release(item)
                if not item.done.is_set():  # only when cancelled: no error built per append
                    closing = closing or _unavailable("the Durable Streams store closed during the append")
                    item.answer(closing)

    def _abandon(self, items: list[Pending]) -> None:
        """The store closed before these appends were taken: answer each with a 503."""
        closing = _unavailable("the Durable Streams store closed before the append")
        for item in items:
            self._release(item)
            item.answer(closing)


def _nbytes(item: Pending) -> int:
    return item.nbytes


def _unavailable(message: str) -> DurableStreamError:
    return DurableStreamError(503, "store_unavailable", message, headers={"Retry-After": "1"})
