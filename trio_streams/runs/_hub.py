"""Hub: owns the runs, their drain tasks, their timers, and the store's writer.

Theory of operation
-------------------
``open_hub`` (``_open_hub.py``) opens two nurseries. The outer one holds
services that must outlive every run: the store's background work and the
:class:`TimerQueue`. The inner one holds one drain task per run. Leaving the
block cancels every live run (reason ``"hub_closed"``), waits for the inner
nursery -- each run finalizes shielded, under deadlines, so partial results
are saved and terminal events published -- then flushes the store, and only
then cancels the services.

A run's life: ``start`` registers it synchronously (capacity, owner and key
checks happen with no checkpoint in between, so two starts cannot both pass
a check) and spawns its drain task (``_drain.py``). The drain task saves its
metadata, waits for its turn if it is queued behind its key, runs the
producer inside the run's cancel scope, and finally calls ``finalize``:
hooks, terminal event, durable end, bookkeeping (free the key, promote the
next queued run, arm the grace-period eviction, see ``_retention.py``).
The hub's bookkeeping is a :class:`~._hub_state.HubState`, changed only
through its methods, here and from the drain task and the retention rules,
which get the state (not the hub).

Keys (``_keys.py``): a key belongs to its owner, and each (owner, key) has
a slot holding its current run and a bounded FIFO of queued runs. ``reject``
refuses while the slot is busy; ``enqueue`` appends; ``interrupt`` cancels
the current and queued runs and appends -- the new run starts only once the
old one has finalized, because a slot promotes its next run only from the
old run's finalization. With a shared store the store's key slot decides, for
every instance at once (``SharedStore.claim_key``), before the run is
registered here; a claim whose registration then fails is released.

Runs that another instance owns (a shared store) are followed through
mirrors (``_remote.py``).
"""

from __future__ import annotations

import logging
import secrets
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, get_args

import trio

from .._errors import AtCapacity, HubClosed, RunNotFound
from ..log._budget import MemoryBudgetExceeded
from ..log._events import RESERVED_TYPES, encode_json
from ..log._replay_log import ReplayLog
from ..log._run_info import ROLLED_BACK
from ..log._sizes import RUN_OVERHEAD, data_size
from ..log._store import SharedStore
from ._config import HubStatistics
from ._drain import Producer, drain_run
from ._hub_state import HubState
from ._key_claims import claim_shared, withdraw_claim
from ._keys import cancel_reason, current_holder
from ._remote import Mirrors
from ._retention import make_room, reclaim_oldest
from ._run import OnConflict, OnDisconnect, Run, RunContext, RunInfo, RunStatus
from ._subscribing import RunNotLive as RunNotLive  # (defined there: Subscribing raises it)
from ._subscribing import Subscribing

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..log._budget import MemoryBudget, RunLedger
    from ..log._store import KeyClaim, Store
    from ._config import HubConfig, OnFinish
    from ._timers import TimerQueue

logger = logging.getLogger("trio_streams")


def _new_run_id() -> str:
    return secrets.token_urlsafe(12)


#: ``Hub.current(key)`` without ``owner=`` (deprecated).
_UNSET: Any = object()


class Hub:
    """Starts, tracks, fans out and stops runs. Create it with :func:`open_hub`."""

    def __init__(
        self,
        store: Store,
        config: HubConfig,
        runs_nursery: trio.Nursery,
        timers: TimerQueue,
        wall_clock: Callable[[], float],
        budget: MemoryBudget,
    ) -> None:
        self.store = store
        self.config = config
        #: The memory budget (``max_memory``) this hub and its store count in.
        self.budget = budget
        self._nursery = runs_nursery
        self._wall_clock = wall_clock
        # Every change to the hub's bookkeeping goes through this object's methods.
        self._state = state = HubState(store, config, timers, wall_clock, budget)
        self._runs = state.runs  # read-only views (statistics, tests)
        self._owner_live = state.owner_live
        # Live runs other instances own, followed through a shared store.
        #: Runs other instances own, followed here (a shared store only).
        self._mirrors = (
            Mirrors(store, runs_nursery, config, wall_clock, budget)
            if isinstance(store, SharedStore)
            else None
        )
        # Finished runs give memory back when the budget is short (after the
        # store's own finished records, which the store registered first).
        budget.add_reclaimer(lambda: reclaim_oldest(state))

    # -- starting -------------------------------------------------------------

    async def start(
        self,
        producer: Producer,
        *,
        input: Any = None,
        key: str | None = None,
        owner: str | None = None,
        on_conflict: OnConflict = "reject",
        on_disconnect: OnDisconnect = "continue",
        metadata: dict[str, Any] | None = None,
        on_finish: OnFinish | None = None,
        reserve: int = 0,
    ) -> Run:
        """Start draining ``producer`` in the hub's nursery and return its run.

        The run outlives the caller: it is drained to its end whether or not
        anyone subscribes (unless ``on_disconnect="cancel"``).

        Args:
            producer: see :data:`Producer`.
            input: handed to the producer as ``ctx.input``.
            key: e.g. a conversation id; at most one run per (owner, key) is
                live. Keys belong to their owner: runs of other owners never
                conflict with it, whatever their keys.
            owner: the user the run belongs to (for listings, caps and keys).
            on_conflict: when the owner's ``key`` is held by a live run:
                ``"reject"`` raises :class:`RunConflict`; ``"interrupt"``
                cancels it (and any runs queued behind it) and starts this one
                once it has finalized; ``"rollback"`` does the same and also
                deletes the cancelled runs (their stream ends ``cancelled``,
                reason ``"rolled_back"``, then they are gone: ``RunNotFound``)
                before this one starts; ``"enqueue"`` starts this one when it ends.
            on_disconnect: ``"cancel"`` cancels the run when its last
                subscriber has been gone for ``disconnect_grace``;
                ``"continue"`` (the default) keeps it running.
            metadata: JSON-compatible data kept with the run.
            on_finish: a hook for this run, called after the hub's own.
            reserve: bytes of the memory budget to set aside for the run's
                events now, for a producer that knows roughly how much it will
                emit: the run is refused (``AtCapacity("max_memory")``) unless
                they fit, so it is not failed half-way for lack of memory
                (``memory_budget``). Its events use the reservation first; what
                is left is given back when it ends.

        With a shared store (``RedisStore``) it returns once the store has the
        run (within ``store_timeout``), so every instance can find it; the key
        is claimed in the store, atomically for every instance (see
        ``docs/redis.md``).

        Returns:
            The run, ``queued`` if it waits behind its key, else ``running``.

        Raises:
            RunConflict: ``reject`` and the key is held.
            AtCapacity: a limit refuses the run (``"max_memory"``: the memory
                budget, even after evicting finished runs, lacks room for a new
                run and the headroom live runs keep).
            KeysUnavailable: a shared store cannot claim the key now, and
                ``cross_instance_keys`` is ``"strict"``.
            HubClosed: the hub is shutting down.
            ValueError: an invalid argument.

        Cancellation: a key claimed in a shared store for a start that is
        cancelled is released (shielded, under ``store_timeout``).
        """
        await trio.lowlevel.checkpoint()
        if self._state.closing:
            raise HubClosed("the hub is closed and starts no new runs")
        if on_conflict not in get_args(OnConflict):
            raise ValueError(f"on_conflict must be one of {get_args(OnConflict)}, not {on_conflict!r}")
        if on_disconnect not in get_args(OnDisconnect):
            raise ValueError(f"on_disconnect must be one of {get_args(OnDisconnect)}, not {on_disconnect!r}")
        if not (callable(producer) or hasattr(producer, "__aiter__")):
            raise TypeError(f"producer must be an async function or an async iterable, not {producer!r}")
        if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 0:
            raise ValueError(f"reserve must be a number of bytes >= 0, not {reserve!r}")
        metadata = {} if metadata is None else dict(metadata)
        encode_json(metadata)  # refuse what the store could not persist, now
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a string or None, not {type(key).__name__}")
        config = self.config
        run_id = _new_run_id()
        claim: KeyClaim | None = None
        log: ReplayLog | None = None
        if key is not None and self._mirrors is not None:
            self._check_owner_cap(owner)  # before asking the store: fail fast
            claim = await claim_shared(self._mirrors.store, config, run_id, key, owner, on_conflict)
        try:
            if self._state.closing:
                raise HubClosed("the hub is closed and starts no new runs")
            # No checkpoint from here on: the checks and the registration are atomic.
            make_room(self._state)
            self._check_owner_cap(owner)
            ledger = self._admit(run_id, metadata, reserve)
            log = ReplayLog(max_events=config.log_max_events, max_bytes=config.log_max_bytes, ledger=ledger)
            run = Run(
                run_id,
                key=key,
                owner=owner,
                metadata=metadata,
                on_disconnect=on_disconnect,
                log=log,
                ledger=ledger,
                store=self.store,
                wall_clock=self._wall_clock,
                finalize_timeout=config.finalize_timeout,
                no_event_timeout=config.no_event_timeout,
                input_timeout=config.input_timeout,
            )
            if claim is None:
                self._state.claim_local_key(run, on_conflict)
        except BaseException:
            if log is not None:
                log.discard()  # refused: give its memory back
            if claim is not None:
                assert key is not None
                assert self._mirrors is not None
                await withdraw_claim(self._mirrors.store, config, run_id, key, owner)
            raise
        self._state.register(run, shared_claim=None if claim is None else claim.state == "holds")
        if claim is not None:
            for other_id in claim.interrupt:
                other = self._runs.get(other_id)
                if other is not None:
                    other._request_cancel(cancel_reason(on_conflict))
        # A store that writes behind keeps the log from trimming what it cannot serve yet.
        self.store.hold_log(run.id, run.log)
        if self.store.record_from_log(run.id, run.log):
            run._store_append = None  # one append per event: the store copies from the log
        ctx = RunContext(run, input)
        name = f"trio_streams run {run.id}"
        self._nursery.start_soon(drain_run, self._state, run, producer, ctx, on_finish, name=name)
        if run._turn.is_set():
            run.status = RunStatus.RUNNING
            run.started_at = run.created_at
        logger.info(
            "run %s %s key=%s owner=%s on_conflict=%s",
            run.id,
            run.status.value,
            key,
            owner,
            on_conflict,
            extra={"run_id": run.id, "owner": owner, "event": "run_started"},
        )
        if self._mirrors is not None:
            # Other instances can find the run once start returns (a client
            # may follow it through another server at once). Shielded: the
            # run exists now, its caller must get it.
            with trio.move_on_after(config.store_timeout, shield=True):
                await run._saved.wait()
        return run

    def _check_owner_cap(self, owner: str | None) -> None:
        cap = self.config.max_live_runs_per_owner
        if owner is not None and cap is not None and self._owner_live[owner] >= cap:
            raise AtCapacity("max_live_runs_per_owner", f"owner {owner!r} already has {cap} live runs")

    def _admit(self, run_id: str, metadata: dict[str, Any], reserve: int) -> RunLedger:
        """Count a new run's fixed cost and ``reserve`` in the memory budget
        (evicting finished runs if needed).

        Raises:
            AtCapacity: ``"max_memory"``, the budget has no room for it.
        """
        ledger = self.budget.ledger(run_id)
        try:
            ledger.hold("log", overhead=RUN_OVERHEAD + data_size(metadata), admit=True, reserve=reserve)
        except MemoryBudgetExceeded as exc:
            logger.warning("run refused: %s", exc)
            raise AtCapacity("max_memory", f"{exc}; retry later") from None
        return ledger

    # -- reading and controlling ------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        """The run if this hub holds it in memory (live, or finished within its grace)."""
        return self._runs.get(run_id)

    def current(self, key: str, *, owner: str | None = _UNSET) -> Run | None:
        """The run of ``owner`` on this hub that holds ``key`` now (running), if any.

        .. deprecated:: 0.2
            ``current(key)`` without ``owner=``: keys belong to their owner.
            It still returns the holder if only one owner's run holds ``key``
            here, and raises ``LookupError`` if several do.
        """
        if owner is _UNSET:
            warnings.warn(
                "Hub.current(key) without owner= is deprecated: keys belong to their owner; "
                "pass owner= (None for runs started without one)",
                DeprecationWarning,
                stacklevel=2,
            )
        return current_holder(
            self._state.keys, key, None if owner is _UNSET else owner, any_owner=owner is _UNSET
        )

    async def get_info(self, run_id: str) -> RunInfo:
        """The run's metadata, from memory or from the store.

        Raises:
            RunNotFound: neither has it.
        """
        run = self._runs.get(run_id)
        if run is not None:
            await trio.lowlevel.checkpoint()
            return run.info()
        info = await self.store.get_run(run_id)
        if info is None:
            raise RunNotFound(run_id)
        return info

    async def list_runs(
        self, *, owner: str | None = None, status: RunStatus | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs in memory and in the store, newest first, optionally filtered."""
        found: dict[str, RunInfo] = {}
        for run in reversed(self._runs.values()):
            if (owner is None or run.owner == owner) and (status is None or run.status == status):
                found[run.id] = run.info()
        for info in await self.store.list_runs(owner=owner, status=status, limit=limit):
            if info.run_id not in found and info.run_id not in self._runs:
                found[info.run_id] = info
        return sorted(found.values(), key=lambda info: info.created_at, reverse=True)[:limit]

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunStatus:
        """Ask a run to stop; return its status now.

        The run's scope is cancelled; its cleanup and ``on_finish`` hooks run
        shielded under ``finalize_timeout``; then its ``cancelled`` event is
        published. Use :meth:`wait` to wait for that. Cancelling a finished
        run, or one already cancelled, changes nothing.

        Raises:
            RunNotFound: no such run.
            RunNotLive: the store says it runs, but no hub here drains it.
            ValueError: ``reason`` is ``"rolled_back"``, reserved for ``rollback``
                (a run cancelled with it is deleted).
        """
        if reason == ROLLED_BACK:
            raise ValueError(f"the cancel reason {ROLLED_BACK!r} is reserved for on_conflict='rollback'")
        run = self._runs.get(run_id)
        if run is None:
            info = await self.get_info(run_id)
            if not info.status.finished:
                if self._mirrors is None:
                    raise RunNotLive(f"run {run_id} is running elsewhere")
                await self._mirrors.store.request_cancel(run_id, reason)
                logger.info(
                    "run %s cancel requested from another instance: %r",
                    run_id,
                    reason,
                    extra={"run_id": run_id, "event": "cancel_forwarded"},
                )
            return info.status
        await trio.lowlevel.checkpoint()
        if run._request_cancel(reason):
            logger.info(
                "run %s cancel requested: %r",
                run.id,
                reason,
                extra={"run_id": run.id, "owner": run.owner, "event": "cancel_requested"},
            )
        return run.status

    async def wait(self, run_id: str) -> RunInfo:
        """Wait until the run has ended and been finalized; return its metadata.

        Raises:
            RunNotFound, RunNotLive: as :meth:`cancel`.

        Cancellation: only the wait is cancelled, never the run.
        """
        run = self._runs.get(run_id)
        if run is not None:
            return await run.wait()
        info = await self.get_info(run_id)
        if info.status.finished:
            return info
        if self._mirrors is None:
            raise RunNotLive(f"run {run_id} is running elsewhere")
        final = await self._mirrors.wait(info)
        return await self.get_info(run_id) if final is None else final

    def subscribe(self, run_id: str, *, after: int = 0, heartbeat: float | None = None) -> Subscribing:
        """Follow a run: every event with ``seq > after``, then live, until its end.

        The subscription counts as a subscriber for as long as the block runs
        (keeping a finished run from eviction, and an ``on_disconnect=
        "cancel"`` run alive). The context manager is a class of slots
        (:class:`~._subscribing.Subscribing`), not a generator's: less held
        by every open event stream.

        Args:
            run_id: the run.
            after: the last seq the caller already has (Last-Event-ID).
            heartbeat: yield a :class:`Heartbeat` after this many idle seconds.

        Raises (on entering):
            RunNotFound, RunNotLive: as :meth:`cancel`.
            ValueError: ``after`` is negative or beyond the run's last event.
        """
        return Subscribing(self, run_id, after, heartbeat)

    def wall_clock(self) -> float:
        """Now, on the clock events are timestamped with (``open_hub(wall_clock=)``)."""
        return self._wall_clock()

    def statistics(self) -> HubStatistics:
        """Counts of runs, subscribers and retained events now."""
        states: Counter[RunStatus] = Counter()
        subscribers = events = nbytes = live_events = 0
        for run in self._runs.values():
            states[run.status] += 1
            subscribers += run._subscribers
            events += len(run.log)
            nbytes += run.log.nbytes
            if not run._finished.is_set():
                live_events += run.last_seq
        finished = sum(count for status, count in states.items() if status.finished)
        store = self.store.statistics()
        return HubStatistics(
            runs_queued=states[RunStatus.QUEUED],
            runs_running=states[RunStatus.RUNNING],
            runs_finished=finished,
            subscribers=subscribers,
            log_events=events,
            log_bytes=nbytes,
            runs_started=self._state.runs_started,
            events_published=self._state.retired_events + live_events,
            runs_by_status=dict(self._state.runs_by_status),
            store=store,
            # A store that writes behind (RedisStoreStatistics) reports its pending bytes.
            memory=self.budget.statistics(pending=getattr(store, "pending_bytes", 0)),
        )

    async def drain(self, grace: float, *, reason: str = "shutdown") -> None:
        """Stop starting runs, let live ones finish for up to ``grace`` seconds,
        then cancel the rest and wait until every run has finalized.

        What a graceful server shutdown wants: runs that end within the grace
        end normally; the others are cancelled with ``reason`` (partial
        results saved, ``cancelled`` published). Queued runs, which never
        started, are cancelled at once. New starts raise :class:`HubClosed`.

        With a shared store, subscribers here to runs another instance owns
        keep following them until each run's terminal event arrives (its
        owner, draining too, cancels it after its own grace), for at most
        ``grace`` + ``finalize_timeout`` from the start of the drain; then
        their subscriptions end without one while :attr:`closing` is True
        (the server's SSE writer then sends ``unavailable``: resume elsewhere).

        Cancellation: cancelling the caller cancels every live run at once
        (reason ``"hub_closed"``) and re-raises; the runs still finalize, in
        the hub's nursery, under their finalize deadline.
        """
        if grace < 0:
            raise ValueError(f"grace must be >= 0, not {grace}")
        started = trio.current_time()
        self._state.refuse_new()
        live = [run for run in self._runs.values() if not run._finished.is_set()]
        for run in live:
            if run.status is RunStatus.QUEUED:
                run._request_cancel(reason)
        if live:
            logger.info("draining %d live run(s), grace %ss", len(live), grace)
        try:
            with trio.move_on_after(grace):
                for run in live:
                    await run._finished.wait()
            for run in live:
                if run._request_cancel(reason):
                    logger.info(
                        "run %s cancelled at shutdown after the %ss grace",
                        run.id,
                        grace,
                        extra={"run_id": run.id, "owner": run.owner, "event": "cancelled_at_shutdown"},
                    )
            for run in live:
                await run._finished.wait()
            if self._mirrors is not None:
                # Followers of runs owned elsewhere get those runs' terminal
                # events: their owners drain too (see _remote.py, "Shutdown").
                cut = await self._mirrors.drain(started + grace + self.config.finalize_timeout)
                if cut:
                    logger.warning(
                        "%d run(s) owned by other instances did not end within the drain; "
                        "their followers here were told to resume elsewhere",
                        cut,
                        extra={"event": "followers_cut_at_shutdown"},
                    )
        except BaseException:
            self._close()
            raise

    @property
    def closing(self) -> bool:
        """True once the hub refuses new runs (``drain`` started, or the hub is closing)."""
        return self._state.closing

    def _close(self) -> None:
        """Refuse new runs and cancel every live one. Synchronous: no checkpoint."""
        self._state.refuse_new()
        for run in list(self._runs.values()):
            run._request_cancel("hub_closed")
        if self._mirrors is not None:
            self._mirrors.close()

    def _cancel_from_store(self, run_id: str, reason: str) -> None:
        """Another instance asked (through the shared store) to cancel a run we own."""
        run = self._runs.get(run_id)
        if run is not None and run._request_cancel(reason):
            logger.info(
                "run %s cancel requested by another instance: %r",
                run_id,
                reason,
                extra={"run_id": run_id, "owner": run.owner, "event": "cancel_requested"},
            )


__all__ = ["RESERVED_TYPES", "Hub", "Producer", "RunNotLive"]
