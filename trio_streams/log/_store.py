"""The Store interface: where runs' events and metadata outlive the hub's memory."""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._budget import MemoryBudget
    from ._events import Event
    from ._replay_log import ReplayLog
    from ._run_info import OnConflict, RunInfo, RunStatus
    from .redis._connection import RedisConnection

#: Marks an argument the caller did not pass (deprecation shims).
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A shared store's answer to a keyed start (:meth:`SharedStore.claim_key`).

    Attributes:
        state: ``"holds"``: the run holds the key now; ``"queued"``: it waits
            for it (``enqueue`` or ``interrupt``); ``"held"``: another run
            holds it (``reject``); ``"full"``: ``max_queued`` runs already wait.
        holder: the run that holds the key (``queued``, ``held``): always a
            run of the same owner, since keys are per owner.
        fence: the key's fencing token while the run holds it: it grows with
            every new holder of the key.
        interrupt: for ``interrupt``: the runs ahead of this one (the holder
            and those queued before it); the store has asked each to cancel.
    """

    state: Literal["holds", "queued", "held", "full"]
    holder: str | None = None
    fence: int = 0
    interrupt: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a shared store holds for one (owner, ``Idempotency-Key``).

    Attributes:
        fingerprint: the digest of the request body that claimed the key.
        run_id: the run that request started; ``None`` while it is still
            starting it (a pending claim, which expires on its own).
    """

    fingerprint: str
    run_id: str | None


class IdempotencyRecords(abc.ABC):
    """``Idempotency-Key`` records every instance of a shared store sees
    (:meth:`Store.idempotency_records`). Each call is one atomic decision on
    one (owner, key); keys are per owner, so one owner never sees another's.
    """

    @abc.abstractmethod
    async def claim(
        self, owner: str | None, key: str, fingerprint: str, token: str, pending_ttl: float
    ) -> IdempotencyRecord | None:
        """Claim (owner, key) for a request, or say who has it.

        Returns ``None`` when the key was free: it now holds a pending claim
        named ``token`` that expires ``pending_ttl`` seconds later unless
        :meth:`record` replaces it. Otherwise, the record already there.

        Raises:
            Exception: the store cannot decide now (unreachable).
        """

    @abc.abstractmethod
    async def record(self, owner: str | None, key: str, token: str, fingerprint: str, run_id: str) -> bool:
        """Replace the pending claim ``token`` with ``run_id`` (kept for the
        store's idempotency TTL). False, with nothing changed, when another
        claim holds the key now (``token``'s expired and was taken)."""

    @abc.abstractmethod
    async def release(self, owner: str | None, key: str, token: str) -> None:
        """Drop the pending claim ``token`` (its request failed), so a retry
        starts afresh. A no-op when the key holds anything else."""


class Store(abc.ABC):
    """Persists run metadata and events.

    The hub calls these methods from its own tasks: ``append_nowait`` on the
    hot path (it must not block; a store that writes remotely buffers, within
    a bound), the rest from the run's drain task and from subscriptions.
    """

    def use_memory_budget(self, budget: MemoryBudget) -> None:
        """Count what this store keeps in this process in ``budget`` (the hub's
        ``max_memory``), from now on; ``open_hub`` calls it before :meth:`start`.

        The hub counts every event once, when it is published, and the run's
        log holds it. A store that keeps events in memory (``MemoryStore``)
        registers as another holder of each run (``budget.ledger(run_id)``)
        and gives finished runs back when the budget is short
        (``budget.add_reclaimer``). A store that buffers events until they are
        durable bounds that buffer by at most ``budget.max_pending_bytes``
        (the not-yet-durable sub-budget), refusing past it with
        ``StoreOverflow``; the events it buffers are held by their runs'
        logs until durable (:meth:`hold_log`), so they are counted already.
        Stores that keep nothing in memory need not override this.
        """
        del budget  # nothing of this store's is in memory

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

    def record_from_log(self, run_id: str, log: ReplayLog) -> bool:
        """Offered a new run's replay log (after :meth:`hold_log`): may the
        store take the run's events from it instead of from :meth:`append_nowait`?

        A store that keeps its record in this process (``MemoryStore``) can
        copy what is new from the log when it needs it (``log.record_by``),
        so each event is appended once on the hot path. Returning True means
        the hub calls :meth:`append_nowait` for the run's terminal event
        only (staged before it is in the log); every other event reaches the
        store through the log, and :meth:`read_events` must return what
        per-event appends would have given. The default, False, suits every
        store that writes elsewhere (Redis gets its batches as before).
        """
        del run_id, log
        return False

    @abc.abstractmethod
    async def finish_run(self, info: RunInfo) -> None:
        """Make all the run's events, terminal included, and its final
        metadata durable before returning."""

    async def delete_run(self, run_id: str) -> None:
        """Forget a finished run: its events and its record (a later
        :meth:`get_run` is ``None``, :meth:`read_events` empty). Idempotent.

        The hub calls it once a run cancelled by ``on_conflict="rollback"``
        (reason ``"rolled_back"``) has made its end durable. Stores that keep
        runs override it; the default, for stores that keep nothing, does nothing.
        """
        await trio.lowlevel.checkpoint()

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

    def observe_persisted(self, observer: Callable[[float], None] | None) -> None:
        """Call ``observer`` with the oldest event's timestamp of each write the store acknowledges.

        For ``/metrics``' persist lag. The default does nothing: a store that
        holds an event when ``append_nowait`` returns has no lag to report.
        """
        return

    def idempotency_records(self) -> IdempotencyRecords | None:
        """Where ``Idempotency-Key`` records live when every instance of this
        store must see them (a shared store). ``None`` (the default): in each
        process only, which is all a store of one process needs.
        """
        return None

    def durable_storage(self) -> RedisConnection | None:
        """Where Durable Streams can live beside this store's runs: the same
        storage, connection, key prefix and health, for
        ``RedisDurableStore.attach`` while this store is started. ``None``
        (the default): nowhere, so they are served from memory.
        """
        return None


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

    # -- keys: one holder per (owner, key) across every instance ---------------------

    @abc.abstractmethod
    async def claim_key(
        self, owner: str | None, key: str, run_id: str, on_conflict: OnConflict, max_queued: int
    ) -> KeyClaim:
        """Decide a keyed start atomically for every instance of the store:
        ``run_id`` holds (owner, key), waits for it, or is refused.

        Idempotent for one ``run_id``. For ``interrupt``, the store asks the
        runs ahead to cancel (wherever they run) before it returns.

        Raises:
            Exception: the store cannot decide now (unreachable); the claim
                may or may not have been made -- :meth:`release_key` undoes
                either.
        """

    @abc.abstractmethod
    async def wait_key_turn(self, owner: str | None, key: str, run_id: str) -> int:
        """Wait until ``run_id`` (queued by :meth:`claim_key`) holds its key;
        return the key's fencing token.

        The turn comes when the run ahead has ended and its end is stored, or
        when its owner has been declared dead (its lease expired); never
        while it may still run. Store errors are retried, not raised.

        Cancellation: the way to give up waiting (then :meth:`release_key`).
        """

    @abc.abstractmethod
    async def release_key(self, owner: str | None, key: str, run_id: str, *, withdraw: bool = False) -> None:
        """Give (owner, key) up (or leave its queue) and hand it to the next
        queued run, wherever that runs. A no-op for a run that has no claim.

        ``withdraw``: the caller never got :meth:`claim_key`'s answer
        (cancelled, or the store failed mid-call): that claim, should it
        still arrive, must not take effect."""

    @abc.abstractmethod
    async def key_holder_of(self, owner: str | None, key: str) -> str | None:
        """The id of the run that holds (owner, key) now, on any instance, if any."""

    async def key_holder(self, key: str, *, owner: str | None = _UNSET) -> str | None:
        """The run that holds ``key``; use :meth:`key_holder_of`.

        .. deprecated:: 0.2
            Keys belong to their owner; ``key_holder(key)`` without ``owner=``
            means the runs started with no owner.
        """
        if owner is _UNSET:
            warnings.warn(
                "SharedStore.key_holder(key) is deprecated: keys are per owner; "
                "use key_holder_of(owner, key) (owner=None for runs started without one)",
                DeprecationWarning,
                stacklevel=2,
            )
            owner = None
        return await self.key_holder_of(owner, key)
