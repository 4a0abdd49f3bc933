"""HubConfig and HubStatistics: the hub's knobs and its gauges."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal, get_args

from ..log._budget import HEADROOM_SHARE

if TYPE_CHECKING:
    from ..log._budget import MemoryStatistics
    from ..log._store import StoreStatistics
    from ._run import Run, RunOutcome

#: ``async def on_finish(run, outcome)``: runs shielded, under ``finalize_timeout``,
#: before the terminal event is published -- the place to save a partial result.
OnFinish = Callable[["Run", "RunOutcome"], Awaitable[None]]

#: How a hub on a shared store treats a keyed start it cannot claim in the
#: store (unreachable): ``"strict"`` refuses it (:class:`KeysUnavailable`,
#: HTTP 503); ``"best_effort"`` checks the key on this instance only.
CrossInstanceKeys = Literal["strict", "best_effort"]


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Limits and timers of a hub. Times are seconds on the trio clock.

    Attributes:
        log_max_events: events each run's replay log retains.
        log_max_bytes: approximate bytes each run's replay log retains.
        finalize_timeout: budget for the producer's cleanup after a cancel,
            and, separately, for each ``on_finish`` hook.
        store_timeout: budget for making a run's end durable, and for
            flushing the store at shutdown.
        grace_period: a finished run with no subscribers stays in memory this
            long (later it is served from the store).
        disconnect_grace: for ``on_disconnect="cancel"`` runs, how long the
            last subscriber may be gone (a page reload) before the run is
            cancelled with reason ``"disconnected"``; 0 cancels at once.
        no_event_timeout: a running run that publishes nothing for this long
            is stopped and ends ``dead``. ``None``: no watchdog.
        input_timeout: the watchdog's limit while the producer is awaiting
            human input (:meth:`RunContext.awaiting_input`). ``None``: none.
        max_age: a run running longer than this is cancelled with reason
            ``"max_age"``. ``None``: no limit.
        max_runs: runs held in memory (queued, running, and finished within
            their grace period). When full, the oldest finished run is
            evicted early if ``evict_finished_when_full``; else, or if all
            are live, the new run is refused (``AtCapacity``).
        evict_finished_when_full: see ``max_runs``.
        max_live_runs_per_owner: queued plus running runs one owner may have.
            ``None``: no limit.
        max_queued_per_key: runs waiting behind one key (``enqueue``).
        on_finish: a hook called for every run; see :data:`OnFinish`.
        cross_instance_keys: with a shared store, a keyed start whose key
            cannot be claimed there (the store is unreachable): ``"strict"``
            (the default) refuses it with :class:`KeysUnavailable` -- an
            outage then refuses keyed starts while unkeyed runs go on;
            ``"best_effort"`` starts it checked against this instance's runs
            only (two instances may then both run the key). A hub with no
            shared store always decides locally.
        max_memory: the process-wide memory budget in bytes: runs' logs,
            the ``MemoryStore``'s records and in-memory Durable Streams, each
            event counted once (see ``docs/architecture.md``, "Memory").
            Finished runs give memory back first; then a new run is refused
            (``AtCapacity("max_memory")``, HTTP 429) and a live run whose next
            event does not fit fails (error ``memory_budget``).
        max_event_bytes: the largest event, as encoded JSON data in bytes; a
            bigger one raises ``EventTooLarge`` from ``emit`` (uncaught, the
            run fails with error ``event_too_large``). At most an eighth of
            ``max_memory``.
        max_pending_bytes: the part of ``max_memory`` that events accepted by
            the store but not yet durable may take (a Redis writer's buffer,
            e.g. during an outage); past it the emitting run fails with
            ``store_overflow``. ``None``: a quarter of ``max_memory``.
    """

    log_max_events: int = 10_000
    log_max_bytes: int = 8 * 1024 * 1024
    finalize_timeout: float = 10.0
    store_timeout: float = 10.0
    grace_period: float = 180.0
    disconnect_grace: float = 5.0
    no_event_timeout: float | None = None
    input_timeout: float | None = None
    max_age: float | None = None
    max_runs: int = 10_000
    evict_finished_when_full: bool = True
    max_live_runs_per_owner: int | None = None
    max_queued_per_key: int = 16
    on_finish: OnFinish | None = None
    cross_instance_keys: CrossInstanceKeys = "strict"
    max_memory: int = 512 * 1024 * 1024
    max_event_bytes: int = 1024 * 1024
    max_pending_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("log_max_events", "log_max_bytes", "max_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("finalize_timeout", "store_timeout", "grace_period", "disconnect_grace"):
            value = getattr(self, name)
            if not value >= 0 or (value == math.inf and name != "grace_period"):
                raise ValueError(f"{name} must be a finite number >= 0, not {value}")
        for name in ("no_event_timeout", "input_timeout", "max_age"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        if self.max_live_runs_per_owner is not None and self.max_live_runs_per_owner < 1:
            raise ValueError("max_live_runs_per_owner must be at least 1 or None")
        if self.max_queued_per_key < 1:
            raise ValueError("max_queued_per_key must be at least 1 (interrupt queues the new run too)")
        if self.cross_instance_keys not in get_args(CrossInstanceKeys):
            raise ValueError(
                f"cross_instance_keys must be one of {get_args(CrossInstanceKeys)}, "
                f"not {self.cross_instance_keys!r}"
            )
        _check_memory(self)

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The names ``open_hub(**options)`` accepts."""
        return frozenset(f.name for f in fields(cls))


def _check_memory(config: HubConfig) -> None:
    if config.max_memory < 1024 * 1024:
        raise ValueError(f"max_memory must be at least 1 MiB, not {config.max_memory} bytes")
    if not 1 <= config.max_event_bytes <= config.max_memory // HEADROOM_SHARE:
        raise ValueError(
            f"max_event_bytes must be between 1 and max_memory / {HEADROOM_SHARE} "
            f"({config.max_memory // HEADROOM_SHARE} bytes), not {config.max_event_bytes}"
        )
    pending = config.max_pending_bytes
    if pending is not None and not 1 <= pending <= config.max_memory:
        raise ValueError(f"max_pending_bytes must be between 1 and max_memory, not {pending}")


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """A snapshot of a hub's load (see :meth:`Hub.statistics`).

    Attributes:
        runs_queued / runs_running / runs_finished: runs in memory by state.
        subscribers: open subscriptions on runs in memory.
        log_events / log_bytes: what the replay logs in memory retain.
        runs_started / events_published: totals since the hub opened.
        runs_by_status: finished-run totals since the hub opened, by status.
        store: the store's own statistics.
        memory: the memory budget: limit, bytes used, by part.
    """

    runs_queued: int
    runs_running: int
    runs_finished: int
    subscribers: int
    log_events: int
    log_bytes: int
    runs_started: int
    events_published: int
    runs_by_status: dict[str, int]
    store: StoreStatistics
    memory: MemoryStatistics
