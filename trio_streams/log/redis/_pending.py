"""The Redis writer's not-yet-durable data: its byte bound, and the logs that wait for it.

Theory of operation
-------------------
Everything :class:`~trio_streams.log.redis._writer.RedisWriter` has
accepted but Redis has not acknowledged -- events and metadata writes,
queued or in flight -- is *pending*. :class:`Pending` counts it in bytes
(each event once, by :attr:`Event.size`; each metadata write by
:attr:`MetaWrite.size`) against ``max_bytes``, and refuses what does not fit
with :class:`StoreOverflow` (logged once per run, counted in ``overflows``):

- a producer's event: the hub fails that run (``error``, ``store_overflow``);
- the metadata write that starts a run: the run fails the same way, and as
  nothing of it was ever queued the store records nothing of it -- its
  terminal event and final metadata are dropped (``refused_runs``), so runs
  that keep starting during an outage cost no memory here;
- never a terminal event or a final metadata write of a recorded run, so
  every recorded run can end: the bound is exceeded by at most one terminal
  event and one final write per live run.

The same events sit in their runs' replay logs, which must not trim an event
Redis cannot serve yet (a reader behind the log's head reads Redis; an event
in neither would be a false ``Gap``). A log handed over with :meth:`hold`
trims only up to the seq :meth:`settle` reports durable after each flush.
Events it retains beyond its own bounds meanwhile are counted here, once,
not by the log (``ReplayLog.pending_nbytes``). Logs are held weakly, and
dropped once their run's final metadata is written.

Pure bookkeeping: no I/O, no checkpoints.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..._errors import StoreOverflow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .._events import Event
    from .._replay_log import ReplayLog


#: A rough fixed cost of one queued metadata write beyond its field text.
_META_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class MetaWrite:
    """A metadata write, queued in order with the run's events."""

    run_id: str
    fields: dict[str, str]
    owner: str | None
    created_at: float
    live: bool
    final: bool

    @property
    def size(self) -> int:
        """Approximate bytes this write holds while queued (for the pending bound)."""
        text = sum(len(name) + len(value) for name, value in self.fields.items())
        return text + len(self.run_id) + len(self.owner or "") + _META_OVERHEAD


logger = logging.getLogger("trio_streams.redis")

#: The default bound on not-yet-durable bytes (``RedisStore(max_pending_bytes=...)``).
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024


class Pending:
    """Counts, bounds and releases the writer's not-yet-durable data (module docstring).

    ``events``, ``meta`` and ``nbytes`` are what is pending now (shown in
    ``RedisStoreStatistics``); ``overflows`` counts refused items and
    ``refused_runs`` runs refused at their start.

    Args:
        max_bytes: bytes of events and metadata writes not yet durable, at most.
        max_items: deprecated ``max_buffered_events``: also at most this many
            items (events plus metadata writes); ``None``: no count bound.
    """

    def __init__(self, *, max_bytes: int, max_items: int | None = None) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_pending_bytes must be at least 1, not {max_bytes}")
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_buffered_events must be at least 1, not {max_items}")
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.events = 0
        self.meta = 0
        self.nbytes = 0
        self.overflows = 0
        self.refused_runs = 0
        self._logs: dict[str, weakref.ref[ReplayLog]] = {}
        self._refused: set[str] = set()
        # Runs already logged as overflowing (one error line per run).
        self._overflowed: set[str] = set()

    def hold(self, run_id: str, log: ReplayLog) -> None:
        """Keep ``log`` from trimming the run's events until :meth:`settle` says they are durable."""
        log.hold()
        self._logs[run_id] = weakref.ref(log)

    def _fits(self, size: int) -> bool:
        if self.nbytes + size > self.max_bytes:
            return False
        return self.max_items is None or self.events + self.meta < self.max_items

    def _overflow(self, run_id: str, size: int, what: str, healthy: bool) -> StoreOverflow:
        self.overflows += 1
        if run_id not in self._overflowed:
            self._overflowed.add(run_id)
            logger.error(
                "redis writer buffer full (%d bytes in %d events and %d metadata writes not yet "
                "durable, bound %d bytes, healthy=%s): %s of run %s refused, the run fails",
                self.nbytes,
                self.events,
                self.meta,
                self.max_bytes,
                healthy,
                what,
                run_id,
            )
        return StoreOverflow(
            f"{self.nbytes} bytes wait for Redis and {size} more do not fit "
            f"(max_pending_bytes={self.max_bytes})"
        )

    def admit_event(self, run_id: str, event: Event, *, healthy: bool) -> bool:
        """Count ``event`` as pending; False if it is to be dropped (a refused run's end).

        Raises:
            StoreOverflow: a producer's event does not fit (terminal events always do).
        """
        size = event.size
        if event.terminal:
            if run_id in self._refused:
                return False
        elif not self._fits(size):
            raise self._overflow(run_id, size, f"event {event.seq}", healthy)
        self.events += 1
        self.nbytes += size
        return True

    def admit_meta(self, write: MetaWrite, *, first: bool, healthy: bool) -> bool:
        """Count ``write`` as pending; False if it is to be dropped (a refused run's end).

        Args:
            write: the write; a final one always fits.
            first: the run's first write (its start): if it does not fit, the
                run is refused and nothing of it is ever written.

        Raises:
            StoreOverflow: a write that is not final does not fit.
        """
        run_id = write.run_id
        if run_id in self._refused:
            if write.final:
                self._refused.discard(run_id)
                self._overflowed.discard(run_id)
            return False
        size = write.size
        if write.final:
            self._overflowed.discard(run_id)
        elif not self._fits(size):
            error = self._overflow(run_id, size, "its start" if first else "a metadata write", healthy)
            if first:
                self._refused.add(run_id)
                self.refused_runs += 1
                ref = self._logs.pop(run_id, None)
                log = None if ref is None else ref()
                if log is not None:
                    log.release()  # nothing of the run will ever be pending
            raise error
        self.meta += 1
        self.nbytes += size
        return True

    def settle(
        self, *, events: int, meta: int, nbytes: int, durable: Mapping[str, int], finals: Iterable[str]
    ) -> None:
        """A flush landed: uncount its items, and let each run's log trim up to
        ``durable[run_id]`` (the last seq of the run in the flush).

        A fenced run's refused events count as durable too: they are settled
        (Redis will never have them), so a gap over them would be the truth.
        """
        self.events -= events
        self.meta -= meta
        self.nbytes -= nbytes
        logs = self._logs
        for run_id, seq in durable.items():
            ref = logs.get(run_id)
            if ref is None:
                continue
            log = ref()
            if log is None:
                del logs[run_id]
            else:
                log.mark_durable(seq)
        for run_id in finals:
            logs.pop(run_id, None)
