"""MemoryStore: the embedded default. Nothing to run, nothing survives the process."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from .._log import ReplayLog
from ._base import Store, StoreStatistics

if TYPE_CHECKING:
    from .._events import Event
    from .._run import RunInfo, RunStatus


class MemoryStore(Store):
    """Keeps runs' metadata and full event history in this process.

    The hub's replay logs are a bounded hot cache; this store is the record
    a subscriber falls back to when it is behind a trimmed log, and what
    serves a finished run in full after the hub evicted it.

    Memory is bounded two ways: each run keeps at most ``max_events_per_run``
    events / ``max_bytes_per_run`` bytes (oldest trimmed first, the terminal
    event always kept), and at most ``max_finished_runs`` finished runs are
    kept (the oldest finished run is dropped, with its events, first).
    Running runs are never dropped.

    Args:
        max_events_per_run: events retained per run.
        max_bytes_per_run: approximate bytes retained per run.
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
        self._max_bytes = max_bytes_per_run
        self._max_finished = max_finished_runs
        self._runs: dict[str, RunInfo] = {}
        self._logs: dict[str, ReplayLog] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    def _log(self, run_id: str) -> ReplayLog:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = ReplayLog(max_events=self._max_events, max_bytes=self._max_bytes)
        return log

    async def save_run(self, info: RunInfo) -> None:
        """Store the metadata (replacing what was there)."""
        await trio.lowlevel.checkpoint()
        self._runs[info.run_id] = info
        self._log(info.run_id)

    def append_nowait(self, run_id: str, event: Event) -> None:
        """Append to the run's history (never overflows: the history trims)."""
        self._log(run_id).append(event)

    async def finish_run(self, info: RunInfo) -> None:
        """Store the final metadata and enforce the finished-run bound."""
        await self.save_run(info)
        self._finished[info.run_id] = None
        while len(self._finished) > self._max_finished:
            old, _ = self._finished.popitem(last=False)
            self._runs.pop(old, None)
            self._logs.pop(old, None)

    async def read_events(self, run_id: str, after: int, limit: int) -> list[Event]:
        """Events after ``after`` from the retained history."""
        await trio.lowlevel.checkpoint()
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
        return StoreStatistics(runs=len(self._runs), events=sum(len(log) for log in self._logs.values()))
