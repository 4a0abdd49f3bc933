"""Mirrors: live runs another hub instance owns, followed through a shared store.

Theory of operation
-------------------
A subscriber on this instance to a run that another instance drains gets a
*mirror*: a read-only :class:`Run` whose replay log is filled by one tail
task (``store.follow``) -- one per run per instance, however many local
subscribers -- and read by ordinary :class:`Subscription` objects exactly as
they read a local run: same log, same wake-ups, same gap handling (a
subscriber behind the mirror's first seq reads that range from the store).

The tail task lives in the hub's runs nursery. A mirror lives while someone
uses it (subscribers, waiters); when the last one leaves, its tail task is
cancelled and its log released. Its events count in the memory budget
(always: they exist elsewhere already, so they cannot be refused; the log's
bounds keep them few). When the tail delivers the terminal event the mirror is closed:
subscriptions end after it, waiters return.

Shutdown: ``Hub.drain`` keeps the mirrors following (:meth:`Mirrors.drain`)
until each has delivered its run's end -- the owner is usually draining too,
and writes its ``cancelled`` (reason ``shutdown``) within its grace and
finalize deadline -- or until the drain's own grace + ``finalize_timeout``
is over. Then the mirrors still open are closed without a terminal event:
their subscriptions end, and the SSE writer says so (``unavailable``), so
the client resumes elsewhere with Last-Event-ID rather than mistaking the
cut for the run's end.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..log._replay_log import ReplayLog
from ..log._sizes import RUN_OVERHEAD, data_size, event_cost
from ._run import Run, RunInfo, RunStatus
from ._subscription import Subscription

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..log._budget import MemoryBudget
    from ..log._events import Event
    from ..log._store import SharedStore
    from ._config import HubConfig

logger = logging.getLogger("trio_streams")


@dataclass(slots=True)
class _Mirror:
    run: Run
    users: int = 0
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Mirrors:
    """The mirrors of one hub (see the module docstring)."""

    def __init__(
        self,
        store: SharedStore,
        nursery: trio.Nursery,
        config: HubConfig,
        wall_clock: Callable[[], float],
        budget: MemoryBudget,
    ) -> None:
        #: The shared store the mirrors read from.
        self.store = store
        self._nursery = nursery
        self._config = config
        self._wall_clock = wall_clock
        self._budget = budget
        self._mirrors: dict[str, _Mirror] = {}

    def __len__(self) -> int:
        return len(self._mirrors)

    @asynccontextmanager
    async def open(self, info: RunInfo) -> AsyncIterator[Run]:
        """Use the mirror of ``info``'s run (created, and its tail started, if needed)."""
        mirror = self._mirrors.get(info.run_id)
        if mirror is None:
            mirror = self._mirrors[info.run_id] = self._create(info)
        mirror.users += 1
        try:
            await trio.lowlevel.checkpoint()
            yield mirror.run
        finally:
            mirror.users -= 1
            if not mirror.users:
                mirror.scope.cancel(reason="no one follows the run here")
                mirror.run.log.discard()
                # Its tail is cancelled before it could set this: a drain already
                # waiting on the mirror (the only waiter left) must not wait forever.
                mirror.run._finished.set()
                if self._mirrors.get(info.run_id) is mirror:
                    del self._mirrors[info.run_id]

    @asynccontextmanager
    async def subscribe(
        self, info: RunInfo, *, after: int, heartbeat: float | None
    ) -> AsyncIterator[Subscription]:
        """Follow ``info``'s run through its mirror (``Hub.subscribe`` for a run owned elsewhere)."""
        async with self.open(info) as mirror:
            subscription = Subscription(
                info.run_id, run=mirror, stored=None, store=self.store, after=after, heartbeat=heartbeat
            )
            try:
                yield subscription
            finally:
                subscription.close()

    async def wait(self, info: RunInfo) -> RunInfo | None:
        """Wait through its mirror until ``info``'s run has ended (``Hub.wait`` for a run owned elsewhere).

        Returns:
            The run's final metadata if the mirror saw its end, else ``None``
            (the caller then asks the store).

        Cancellation: only the wait is cancelled; the mirror is released.
        """
        async with self.open(info) as mirror:
            await mirror._finished.wait()
            if mirror._closed and mirror.status.finished:
                return mirror.info()
        return None

    def _create(self, info: RunInfo) -> _Mirror:
        config = self._config
        ledger = self._budget.ledger(info.run_id)
        ledger.hold("log", overhead=RUN_OVERHEAD + data_size(info.metadata))
        log = ReplayLog(max_events=config.log_max_events, max_bytes=config.log_max_bytes, ledger=ledger)
        log.last_seq = info.last_seq  # the tail starts here; earlier seqs come from the store
        run = Run(
            info.run_id,
            key=info.key,
            owner=info.owner,
            metadata=info.metadata,
            on_disconnect="continue",
            log=log,
            ledger=ledger,
            store=self.store,
            wall_clock=self._wall_clock,
            finalize_timeout=config.finalize_timeout,
            no_event_timeout=None,
            input_timeout=None,
        )
        run.status = info.status
        run.created_at = info.created_at
        run.started_at = info.started_at
        run._turn.set()
        mirror = _Mirror(run)
        self._nursery.start_soon(self._tail, mirror, name=f"trio_streams mirror {info.run_id}")
        return mirror

    async def _tail(self, mirror: _Mirror) -> None:
        run = mirror.run

        def deliver(events: list[Event]) -> None:
            for event in events:
                run._ledger.charge(event.seq, event_cost(event), force=True)
                run.log.append(event)
                if event.terminal:
                    run._closed = True
                    run.status = RunStatus(event.type)
                    run.ended_at = event.timestamp
                    data = event.data if isinstance(event.data, dict) else {}
                    run.result = data.get("result")
                    run.partial = bool(data.get("partial", False))
                    run.reason = data.get("reason")
                    run.error = data.get("error")
            run._wakeup.notify()

        with mirror.scope:
            try:
                await self.store.follow(run.id, run.log.last_seq, deliver)
            finally:
                # Ended (terminal read, or nothing more will ever be stored), or
                # abandoned: either way nobody waits on this mirror forever.
                if not mirror.scope.cancel_called:
                    run._closed = True
                    run._finished.set()
                    run._wakeup.notify()

    async def drain(self, deadline: float) -> int:
        """Wait, until the trio time ``deadline`` at most, for every mirror to
        deliver its run's end; then close the mirrors still open (:meth:`close`).

        Returns:
            How many mirrors were still open at the deadline (their
            subscriptions end without a terminal event).

        Cancellation: the wait ends and the mirrors are closed at once; the
        cancellation propagates.
        """
        try:
            with trio.move_on_at(deadline):
                while True:
                    # Re-read each time: a mirror opened meanwhile is waited for too,
                    # and a finished one whose readers linger is not waited on again.
                    pending = [m for m in self._mirrors.values() if not m.run._finished.is_set()]
                    if not pending:
                        break
                    await pending[0].run._finished.wait()
            cut = sum(1 for m in self._mirrors.values() if not m.run._finished.is_set())
        finally:
            self.close()
        await trio.lowlevel.checkpoint()
        return cut

    def close(self) -> None:
        """Stop every tail (the hub is closing). Synchronous: no checkpoint."""
        for mirror in self._mirrors.values():
            mirror.scope.cancel(reason="hub closed")
            mirror.run._closed = True
            mirror.run._finished.set()
            mirror.run._wakeup.notify()
