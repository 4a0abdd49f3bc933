"""MemoryStore: the embedded default. Nothing to run, nothing survives the process."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from ._replay_log import ReplayLog
from ._sizes import RECORD_OVERHEAD, data_size, event_cost
from ._store import Store, StoreStatistics

if TYPE_CHECKING:
    from ._budget import MemoryBudget, RunLedger
    from ._events import Event
    from ._run_info import RunInfo, RunStatus

#: With a memory budget, one run's record keeps at most this part of it.
RECORD_SHARE = 4


class MemoryStore(Store):
    """Keeps runs' metadata and full event history in this process.

    The hub's replay logs are a bounded hot cache; this store is the record
    a subscriber falls back to when it is behind a trimmed log, and what
    serves a finished run in full after the hub evicted it.

    Memory is bounded three ways: each run keeps at most ``max_events_per_run``
    events / ``max_bytes_per_run`` bytes (oldest trimmed first, the terminal
    event always kept; with the hub's memory budget, at most a quarter of
    ``max_memory``), at most ``max_finished_runs`` finished runs are kept (the
    oldest finished run is dropped, with its events, first), and every record
    counts in the hub's memory budget (``max_memory``): when it is short, the
    oldest finished records are dropped first (a later read of such a run is
    a 404; a reader in the middle of it gets a ``Gap``). Running runs are
    never dropped. The hub and this store hold the same event objects; the
    budget counts each once.

    A live run's events are not handed over one by one: the store records
    the run's log (:meth:`record_from_log`) and copies what is new from it
    in one slice when it needs to -- before any read of the run, at its
    terminal event, and when the log is about to trim an event the record
    has not copied yet. Reads see exactly what per-event appends would have
    given.

    Args:
        max_events_per_run: events retained per run.
        max_bytes_per_run: approximate bytes retained per run (``Event.size``).
        max_finished_runs: finished runs retained.
    """

    def __init__(
        self,
        *,
        max_events_per_run: int = 1_000_000,
        max_bytes_per_run: int = 256 * 1024 * 1024,
        max_finished_runs: int = 10_000,
    ) -> None:
        if max_finished_runs < 0:
            raise ValueError("max_finished_runs must be >= 0")
        self._max_events = max_events_per_run
        self._max_bytes_per_run = max_bytes_per_run
        self._max_bytes = max_bytes_per_run  # with a budget, at most a share of it
        self._max_finished = max_finished_runs
        self._runs: dict[str, RunInfo] = {}
        self._logs: dict[str, ReplayLog] = {}
        # Live runs whose record is copied from their log (record_from_log).
        self._recording: dict[str, ReplayLog] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._budget: MemoryBudget | None = None

    def use_memory_budget(self, budget: MemoryBudget) -> None:
        """Count the records in ``budget`` and give finished ones back when it is short.

        Records kept from an earlier hub are counted in this one from now on.
        """
        if budget is self._budget:
            return
        if self._budget is not None:
            self._budget.remove_reclaimer(self._reclaim_oldest)
        self._budget = budget
        self._max_bytes = min(self._max_bytes_per_run, budget.limit // RECORD_SHARE)
        self._catch_up_all()
        for run_id, log in list(self._logs.items()):
            log.max_bytes = self._max_bytes
            ledger = self._hold(run_id)
            log.bind(ledger, "store")
            for event in log.read_after(0):
                ledger.charge(event.seq, event_cost(event), force=True)
            if run_id in self._finished:
                ledger.finish()
        # Registered before the hub's: finished records go before the hub
        # evicts its finished runs (with this store, evicting from the hub
        # alone frees nothing). After the loop above: counting old records
        # must not drop any.
        budget.add_reclaimer(self._reclaim_oldest)

    def _hold(self, run_id: str) -> RunLedger:
        """Hold ``run_id`` in the budget's ledger, counting this record's overhead."""
        assert self._budget is not None
        ledger = self._budget.ledger(run_id)
        info = self._runs.get(run_id)
        metadata = data_size(info.metadata) if info is not None else 0
        ledger.hold("store", overhead=RECORD_OVERHEAD + metadata)
        return ledger

    def _log(self, run_id: str) -> ReplayLog:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = ReplayLog(
                max_events=self._max_events,
                max_bytes=self._max_bytes,
                ledger=None if self._budget is None else self._hold(run_id),
                holder="store",
            )
        return log

    def _drop(self, run_id: str) -> None:
        live = self._recording.pop(run_id, None)
        if live is not None:
            live.stop_recording()
        self._runs.pop(run_id, None)
        self._finished.pop(run_id, None)
        log = self._logs.pop(run_id, None)
        if log is not None:
            log.discard()

    def _reclaim_oldest(self) -> bool:
        """Drop the oldest finished record, for the memory budget; False if there is none."""
        if not self._finished:
            return False
        self._drop(next(iter(self._finished)))
        return True

    async def save_run(self, info: RunInfo) -> None:
        """Store the metadata (replacing what was there)."""
        await trio.lowlevel.checkpoint()
        self._runs[info.run_id] = info
        self._log(info.run_id)

    def record_from_log(self, run_id: str, log: ReplayLog) -> bool:
        """Record the run's events from ``log`` (see the class docstring); True.

        Only for a log that holds every event of the run so far (a new one),
        and only if ``append_nowait`` is this class's own: a subclass that
        overrides it (to buffer, to refuse) is handed each event, as before.
        Otherwise False, and the caller hands over each event.
        """
        if type(self).append_nowait is not MemoryStore.append_nowait:
            return False
        record = self._logs.get(run_id)  # made by save_run, with the run's metadata
        recorded = 0 if record is None else record.last_seq
        if run_id in self._recording or log.last_seq != recorded or len(log) != log.last_seq:
            return False
        self._recording[run_id] = log
        log.record_by(lambda: self._catch_up(run_id))
        return True

    def _catch_up(self, run_id: str) -> int:
        """Copy what the recorded log has that the record lacks; the last seq recorded."""
        log = self._recording[run_id]
        record = self._log(run_id)
        if log.last_seq > record.last_seq:
            # The log trims only what was copied (Tail.record_by): the slice
            # continues the record exactly.
            record.extend(log.read_after(record.last_seq))
        return log.last_seq

    def _catch_up_all(self) -> None:
        for run_id in self._recording:
            self._catch_up(run_id)

    def append_nowait(self, run_id: str, event: Event) -> None:
        """Append to the run's history (never overflows: the history trims).

        For a run recorded from its log, what the log has is copied first;
        its terminal event ends the recording (nothing follows it).

        The hub has counted the event in the memory budget already; an event
        appended by anyone else is counted here (always: it is history).
        """
        if run_id in self._recording:
            self._catch_up(run_id)
            if event.terminal:
                self._recording.pop(run_id).stop_recording()
        log = self._log(run_id)
        if event.seq <= log.last_seq:
            return  # copied from the log already
        ledger = log.ledger
        if ledger is not None and event.seq >= ledger.next_seq:
            ledger.charge(event.seq, event_cost(event), force=True)
        log.append(event)

    async def finish_run(self, info: RunInfo) -> None:
        """Store the final metadata and enforce the finished-run bound."""
        await self.save_run(info)
        self._finished[info.run_id] = None
        ledger = self._logs[info.run_id].ledger
        if ledger is not None:
            ledger.finish()
        while len(self._finished) > self._max_finished:
            self._drop(next(iter(self._finished)))

    async def delete_run(self, run_id: str) -> None:
        """Drop the run's record and history (its memory is given back)."""
        await trio.lowlevel.checkpoint()
        self._drop(run_id)

    async def read_events(self, run_id: str, after: int, limit: int) -> list[Event]:
        """Events after ``after`` from the retained history."""
        await trio.lowlevel.checkpoint()
        if run_id in self._recording:
            self._catch_up(run_id)
        log = self._logs.get(run_id)
        return [] if log is None else log.read_after(after, limit)

    async def get_run(self, run_id: str) -> RunInfo | None:
        """The stored metadata, or ``None``."""
        await trio.lowlevel.checkpoint()
        return self._runs.get(run_id)

    async def list_runs(
        self, *, owner: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Stored runs, newest first."""
        await trio.lowlevel.checkpoint()
        found = [
            info
            for info in reversed(self._runs.values())
            if (owner is None or info.owner == owner) and (status is None or info.status == status)
        ]
        return found[:limit]

    def statistics(self) -> StoreStatistics:
        """Runs and events held."""
        self._catch_up_all()
        return StoreStatistics(runs=len(self._runs), events=sum(len(log) for log in self._logs.values()))
