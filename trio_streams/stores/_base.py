"""The Store interface: where runs' events and metadata outlive the hub's memory."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._events import Event
    from .._log import ReplayLog
    from .._run import RunInfo, RunStatus


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """What a store holds and how far behind its writer is.

    Attributes:
        runs: runs whose metadata the store holds.
        events: events it holds (for stores that can count them cheaply).
        pending_events: accepted by :meth:`Store.append_nowait`, not yet durable.
        flush_errors: failed write attempts so far (retried or not).
    """

    runs: int
    events: int
    pending_events: int = 0
    flush_errors: int = 0


class Store(abc.ABC):
    """Persists run metadata and events.

    The hub calls these methods from its own tasks: ``append_nowait`` on the
    hot path (it must not block; a store that writes remotely buffers, within
    a bound), the rest from the run's drain task and from subscriptions.
    """

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the store's background work (e.g. a batched writer) in
        ``nursery``, which the hub owns; return once the store is usable.

        Stores with no background work need not override this.
        """
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Make everything accepted so far durable, then release resources.

        The hub calls this at shutdown, shielded and under a deadline.
        Stores with nothing to flush need not override this.
        """
        await trio.lowlevel.checkpoint()

    @abc.abstractmethod
    async def save_run(self, info: RunInfo) -> None:
        """Create or replace a run's metadata (called at start and on status changes)."""

    @abc.abstractmethod
    def append_nowait(self, run_id: str, event: Event) -> None:
        """Accept an event for the run, without blocking.

        Events arrive in seq order. A terminal event is always accepted.

        Raises:
            StoreOverflow: the store cannot take a non-terminal event now;
                the run fails loudly instead of losing it.
        """

    def hold_log(self, run_id: str, log: ReplayLog) -> None:
        """The hub hands over a new run's replay log before its first event.

        A store that writes behind (events accepted by :meth:`append_nowait`
        but not yet readable through :meth:`read_events`) holds the log
        (``log.hold()``) and calls ``log.mark_durable(seq)`` as the run's
        events become readable, so the log never trims an event the store
        cannot serve yet: a ``Gap`` then means the events exist nowhere. The
        default, for stores whose ``append_nowait`` makes the event readable
        at once, leaves the log alone.
        """
        return

    @abc.abstractmethod
    async def finish_run(self, info: RunInfo) -> None:
        """Make all the run's events, terminal included, and its final
        metadata durable before returning."""

    @abc.abstractmethod
    async def read_events(self, run_id: str, after: int, limit: int) -> list[Event]:
        """Return up to ``limit`` stored events with ``seq > after``, in order.

        If the events right after ``after`` are no longer stored, the result
        starts at the oldest one that is (the caller reports the gap).
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunInfo | None:
        """The run's stored metadata, or ``None`` if the store has none."""

    @abc.abstractmethod
    async def list_runs(
        self, *, owner: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Stored runs, newest first, optionally filtered by owner and status."""

    async def ping(self) -> None:
        """Check that the store is reachable (for health checks).

        The default suits stores in this process; remote stores override it.

        Raises:
            Exception: whatever the store's client raises when it is not.
        """
        await trio.lowlevel.checkpoint()

    @abc.abstractmethod
    def statistics(self) -> StoreStatistics:
        """A snapshot of the store's size and writer state."""


class SharedStore(Store):
    """A store other hub instances share (``RedisStore``).

    A hub on a shared store follows, cancels and waits for live runs that
    another instance owns, through these methods, instead of raising
    ``RunNotLive``; and it honours keys held by runs on other instances.
    """

    @abc.abstractmethod
    def set_cancel_handler(self, handler: Callable[[str, str], None]) -> None:
        """``handler(run_id, reason)`` is called (synchronously) when another
        instance asks to cancel a run; the hub ignores ids it does not own."""

    @abc.abstractmethod
    async def follow(self, run_id: str, after: int, deliver: Callable[[list[Event]], None]) -> bool:
        """Call ``deliver`` with the run's stored events after ``after`` as
        they arrive, in order, until its terminal event; then return True
        (False if the run ended without a stored terminal event).

        Cancellation: the way to stop following a live run.
        """

    @abc.abstractmethod
    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Ask whichever instance owns the run to cancel it (durably)."""

    @abc.abstractmethod
    async def key_holder(self, key: str) -> str | None:
        """The id of the run that holds ``key`` on any instance, if any (a hint)."""
