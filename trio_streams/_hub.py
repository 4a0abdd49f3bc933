"""Hub: owns the runs, their drain tasks, their timers, and the store's writer.

Theory of operation
-------------------
``open_hub`` opens two nurseries. The outer one holds services that must
outlive every run: the store's background work and the :class:`TimerQueue`.
The inner one holds one drain task per run. Leaving the block cancels every
live run (reason ``"hub_closed"``), waits for the inner nursery -- each run
finalizes shielded, under deadlines, so partial results are saved and
terminal events published -- then flushes the store, and only then cancels
the services.

A run's life: ``start`` registers it synchronously (capacity, owner and key
checks happen with no checkpoint in between, so two starts cannot both pass
a check) and spawns its drain task. The drain task saves its metadata,
waits for its turn if it is queued behind its key, runs the producer inside
the run's cancel scope, and finally calls ``_finalize``: hooks, terminal
event, durable end, bookkeeping (free the key, promote the next queued run,
arm the grace-period eviction).

Keys: each key has a slot holding its current run and a bounded FIFO of
queued runs. ``reject`` refuses while the slot is busy; ``enqueue`` appends;
``interrupt`` cancels the current and queued runs and appends -- the new run
starts only once the old one has finalized, because a slot promotes its next
run only from the old run's finalization.
"""

from __future__ import annotations

import inspect
import logging
import math
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, cast, get_args

import trio

from ._config import HubConfig, HubStatistics, OnFinish
from ._errors import (
    AtCapacity,
    HubClosed,
    RunConflict,
    RunFailed,
    RunNotFound,
    StoreOverflow,
    StreamError,
    TrioStreamsInternalError,
)
from ._events import RESERVED_TYPES, encode_json
from ._log import ReplayLog
from ._remote import Mirrors, remote_key_holder, wait_for_remote
from ._run import OnConflict, OnDisconnect, Run, RunContext, RunInfo, RunOutcome, RunStatus
from ._subscription import Subscription
from ._timers import TimerQueue
from .stores.memory import MemoryStore

if TYPE_CHECKING:
    from .stores._base import Store

logger = logging.getLogger("trio_streams")

#: A producer: an async function taking a :class:`RunContext` (its return
#: value becomes the result), or an async iterable of events -- each item a
#: ``(type, data)`` tuple, or any other JSON value published as ``message``.
#:
#: Cleanup after a cancel: a producer function awaits inside
#: ``with ctx.cleanup():`` (shielded, under the finalize deadline). An async
#: generator's ``finally`` runs while ``Cancelled`` unwinds through its own
#: frame, so it must shield its awaits itself:
#: ``with trio.move_on_after(5, shield=True): await upstream.aclose()``.
#: Either way the terminal event is published only after the cleanup ends.
Producer: TypeAlias = (
    Callable[[RunContext], Awaitable[Any]] | Callable[[RunContext], AsyncIterable[Any]] | AsyncIterable[Any]
)


class RunNotLive(StreamError):
    """The store says the run is still running, but no hub here drains it."""


@dataclass(slots=True)
class _KeySlot:
    current: Run | None = None
    queue: deque[Run] = field(default_factory=deque)

    def holder(self) -> Run:
        if self.current is not None:
            return self.current
        return self.queue[0]


def _new_run_id() -> str:
    return secrets.token_urlsafe(12)


class Hub:
    """Starts, tracks, fans out and stops runs. Create it with :func:`open_hub`."""

    def __init__(
        self,
        store: Store,
        config: HubConfig,
        runs_nursery: trio.Nursery,
        timers: TimerQueue,
        wall_clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self._nursery = runs_nursery
        self._timers = timers
        self._wall_clock = wall_clock
        self._runs: dict[str, Run] = {}
        self._finished: OrderedDict[str, Run] = OrderedDict()
        self._keys: dict[str, _KeySlot] = {}
        self._owner_live: Counter[str] = Counter()
        self._closing = False
        self._runs_started = 0
        self._retired_events = 0
        self._runs_by_status: Counter[str] = Counter()
        # Live runs other instances own, followed through a shared store.
        self._mirrors = Mirrors(store, runs_nursery, config, wall_clock)

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
    ) -> Run:
        """Start draining ``producer`` in the hub's nursery and return its run.

        The run outlives the caller: it is drained to its end whether or not
        anyone subscribes (unless ``on_disconnect="cancel"``).

        Args:
            producer: see :data:`Producer`.
            input: handed to the producer as ``ctx.input``.
            key: e.g. a conversation id; at most one run per key is live.
            owner: the user the run belongs to (for listings and caps).
            on_conflict: when ``key`` is held by a live run: ``"reject"``
                raises :class:`RunConflict`; ``"interrupt"`` cancels it (and
                any runs queued behind it) and starts this one once it has
                finalized; ``"enqueue"`` starts this one when it ends.
            on_disconnect: ``"cancel"`` cancels the run when its last
                subscriber has been gone for ``disconnect_grace``;
                ``"continue"`` (the default) keeps it running.
            metadata: JSON-compatible data kept with the run.
            on_finish: a hook for this run, called after the hub's own.

        With a shared store (``RedisStore``) it returns once the store has the
        run (within ``store_timeout``), so every instance can find it; a key
        held by a run on another instance is checked there too (see
        ``docs/redis.md``).

        Returns:
            The run, ``queued`` if it waits behind its key, else ``running``.

        Raises:
            RunConflict: ``reject`` and the key is held.
            AtCapacity: a limit refuses the run.
            HubClosed: the hub is shutting down.
            ValueError: an invalid argument.
        """
        await trio.lowlevel.checkpoint()
        if self._closing:
            raise HubClosed("the hub is closed and starts no new runs")
        if on_conflict not in get_args(OnConflict):
            raise ValueError(f"on_conflict must be one of {get_args(OnConflict)}, not {on_conflict!r}")
        if on_disconnect not in get_args(OnDisconnect):
            raise ValueError(f"on_disconnect must be one of {get_args(OnDisconnect)}, not {on_disconnect!r}")
        if not (callable(producer) or hasattr(producer, "__aiter__")):
            raise TypeError(f"producer must be an async function or an async iterable, not {producer!r}")
        metadata = {} if metadata is None else dict(metadata)
        encode_json(metadata)  # refuse what the store could not persist, now
        remote = await self._remote_key_holder(key, on_conflict)
        if self._closing:
            raise HubClosed("the hub is closed and starts no new runs")
        config = self.config
        # No checkpoint from here on: the checks and the registration are atomic.
        self._make_room()
        cap = config.max_live_runs_per_owner
        if owner is not None and cap is not None and self._owner_live[owner] >= cap:
            raise AtCapacity("max_live_runs_per_owner", f"owner {owner!r} already has {cap} live runs")
        run = Run(
            _new_run_id(),
            key=key,
            owner=owner,
            metadata=metadata,
            on_disconnect=on_disconnect,
            log=ReplayLog(max_events=config.log_max_events, max_bytes=config.log_max_bytes),
            store=self.store,
            wall_clock=self._wall_clock,
            finalize_timeout=config.finalize_timeout,
            no_event_timeout=config.no_event_timeout,
            input_timeout=config.input_timeout,
        )
        self._claim_key(run, on_conflict)
        self._runs[run.id] = run
        if owner is not None:
            self._owner_live[owner] += 1
        self._runs_started += 1
        ctx = RunContext(run, input)
        self._nursery.start_soon(
            self._drain,
            run,
            producer,
            ctx,
            on_finish,
            None if remote is None else (remote, on_conflict),
            name=f"trio_streams run {run.id}",
        )
        if run._turn.is_set():
            run.status = RunStatus.RUNNING
            run.started_at = run.created_at
        logger.info(
            "run %s %s key=%s owner=%s on_conflict=%s", run.id, run.status.value, key, owner, on_conflict
        )
        if self.store.shared:
            # Other instances can find the run once start returns (a client
            # may follow it through another server at once). Shielded: the
            # run exists now, its caller must get it.
            with trio.move_on_after(config.store_timeout, shield=True):
                await run._saved.wait()
        return run

    async def _remote_key_holder(self, key: str | None, on_conflict: OnConflict) -> RunInfo | None:
        if key is None or not self.store.shared or key in self._keys:
            return None
        return await remote_key_holder(self.store, key, on_conflict, self._runs)

    async def _wait_for_remote(self, run: Run, remote: RunInfo, on_conflict: OnConflict) -> None:
        config = self.config
        deadline = config.finalize_timeout + config.store_timeout if on_conflict == "interrupt" else math.inf
        await wait_for_remote(self.store, self._mirrors, run, remote, on_conflict, deadline)

    def _make_room(self) -> None:
        if len(self._runs) < self.config.max_runs:
            return
        if self.config.evict_finished_when_full and self._finished:
            oldest = next(iter(self._finished.values()))
            logger.info("run %s evicted early: max_runs=%d reached", oldest.id, self.config.max_runs)
            self._evict(oldest)
            return
        raise AtCapacity("max_runs", f"the hub holds its maximum of {self.config.max_runs} runs")

    def _claim_key(self, run: Run, on_conflict: OnConflict) -> None:
        key = run.key
        if key is None:
            run._turn.set()
            return
        slot = self._keys.get(key)
        if slot is None:
            slot = self._keys[key] = _KeySlot()
        if slot.current is None and not slot.queue:
            slot.current = run
            run._turn.set()
            return
        if on_conflict == "reject":
            raise RunConflict(key, slot.holder().id)
        # Runs still waiting for an interrupted run to finalize count too.
        if len(slot.queue) >= self.config.max_queued_per_key:
            raise AtCapacity("max_queued_per_key", f"{len(slot.queue)} runs already wait for key {key!r}")
        if on_conflict == "interrupt":
            for old in (slot.current, *slot.queue):
                if old is not None:
                    old._request_cancel("interrupted")
        slot.queue.append(run)

    # -- draining -------------------------------------------------------------

    async def _drain(
        self,
        run: Run,
        producer: Producer,
        ctx: RunContext,
        on_finish: OnFinish | None,
        remote: tuple[RunInfo, OnConflict] | None = None,
    ) -> None:
        # If the hub's own nursery is cancelled, Cancelled passes through the
        # run's scope; the run then ends as closed by the hub.
        status = RunStatus.CANCELLED
        error: dict[str, str] | None = None
        try:
            with run._scope:
                try:
                    await self.store.save_run(run.info())
                finally:
                    run._saved.set()
                if run.status is RunStatus.QUEUED:
                    # Its turn may already have come (the run ahead of it
                    # finalized before this task started): wait() then returns.
                    await run._turn.wait()
                    run.status = RunStatus.RUNNING
                    run.started_at = self._wall_clock()
                    logger.info("run %s running (its turn for key=%s)", run.id, run.key)
                    await self.store.save_run(run.info())
                if remote is not None:
                    await self._wait_for_remote(run, *remote)
                if self.config.max_age is not None:
                    run._scope.deadline = trio.current_time() + self.config.max_age
                run._arm_watchdog()
                with run._watchdog:
                    await _run_producer(run, producer, ctx)
                status = RunStatus.DEAD if run._watchdog.cancelled_caught else RunStatus.DONE
                if status is RunStatus.DEAD:
                    error = {"code": "no_events", "message": f"no event for {self.config.no_event_timeout}s"}
            if run._scope.cancelled_caught:
                # Caught by the run's own scope: a cancel request, or else its deadline.
                status = RunStatus.CANCELLED
                if run.reason is None:
                    run.reason = "max_age"
        except RunFailed as exc:
            status, error = RunStatus.ERROR, {"code": exc.code, "message": exc.message}
        except StoreOverflow:
            logger.error("run %s failed: the store's write buffer is full", run.id)
            status, error = (
                RunStatus.ERROR,
                {"code": "store_overflow", "message": "the store could not keep up"},
            )
        except Exception as exc:
            logger.exception("run %s: producer raised %s", run.id, type(exc).__name__)
            status, error = (
                RunStatus.ERROR,
                {"code": "producer_error", "message": f"the producer failed ({type(exc).__name__})"},
            )
        finally:
            if status is not RunStatus.CANCELLED:
                run.reason = None
            elif run.reason is None:
                run.reason = "hub_closed"
            await self._finalize(run, status, error, on_finish)

    async def _finalize(
        self, run: Run, status: RunStatus, error: dict[str, str] | None, on_finish: OnFinish | None
    ) -> None:
        """Hooks, terminal event, durable end, bookkeeping -- shielded, each under a deadline."""
        config = self.config
        with trio.CancelScope(shield=True):
            run.error = error
            run.partial = status is not RunStatus.DONE and run.result is not None
            outcome = RunOutcome(status, run.result, run.partial, run.reason, error)
            for hook in (config.on_finish, on_finish):
                if hook is None:
                    continue
                with trio.move_on_after(config.finalize_timeout) as hook_scope:
                    try:
                        await hook(run, outcome)
                    except Exception as exc:
                        logger.exception("run %s: on_finish hook raised %s", run.id, type(exc).__name__)
                        run.finalize_error = f"on_finish raised {type(exc).__name__}: {exc}"
                if hook_scope.cancelled_caught:
                    logger.error("run %s: on_finish hook exceeded %ss", run.id, config.finalize_timeout)
                    run.finalize_error = f"on_finish did not finish within {config.finalize_timeout}s"
            try:
                encode_json(run.result)
            except (TypeError, ValueError):
                logger.error("run %s: result %r is not JSON-serializable", run.id, type(run.result).__name__)
                status = RunStatus.ERROR
                run.error = {"code": "bad_result", "message": "the run's result is not JSON-serializable"}
                run.result, run.partial, run.reason = None, False, None
            run.ended_at = self._wall_clock()
            # The terminal event is durable before anyone sees the run end:
            # staged to the store, recorded with the final metadata, and only
            # then put in the log (subscribers) and the status set.
            terminal = run._stage(status.value, _terminal_data(run))
            final = replace(run.info(), status=status, last_seq=terminal.seq)
            with trio.move_on_after(config.store_timeout) as store_scope:
                try:
                    await self.store.finish_run(final)
                except Exception as exc:
                    logger.exception("run %s: the store could not record its end", run.id)
                    run.finalize_error = run.finalize_error or f"store: {type(exc).__name__}: {exc}"
            if store_scope.cancelled_caught:
                logger.error(
                    "run %s: the store did not record its end within %ss", run.id, config.store_timeout
                )
            run.status = status
            run._reveal(terminal)
            self._retire(run)
            run._finished.set()
            started = run.started_at or run.created_at
            logger.info(
                "run %s %s after %.3fs, %d events%s%s",
                run.id,
                status.value,
                run.ended_at - started,
                run.last_seq,
                f" reason={run.reason}" if run.reason else "",
                f" finalize_error={run.finalize_error!r}" if run.finalize_error else "",
            )

    def _retire(self, run: Run) -> None:
        """Synchronous bookkeeping once a run has ended."""
        if run._timer is not None:
            run._timer.cancel()
            run._timer = None
        self._retired_events += run.last_seq
        self._runs_by_status[run.status.value] += 1
        if run.owner is not None:
            self._owner_live[run.owner] -= 1
            if not self._owner_live[run.owner]:
                del self._owner_live[run.owner]
        if run.key is not None:
            slot = self._keys[run.key]
            if slot.current is run:
                slot.current = None
                if slot.queue:
                    slot.current = slot.queue.popleft()
                    slot.current._turn.set()
            else:
                slot.queue.remove(run)
            if slot.current is None and not slot.queue:
                del self._keys[run.key]
        if self._runs.get(run.id) is run:
            self._finished[run.id] = run
            if not run._subscribers:
                self._arm_eviction(run)

    # -- eviction and disconnects ------------------------------------------------

    def _arm_eviction(self, run: Run) -> None:
        grace = self.config.grace_period
        if grace == 0:
            self._evict(run)
            return

        def evict() -> None:
            run._timer = None
            if not run._subscribers:
                self._evict(run)

        run._timer = self._timers.call_after(grace, evict)

    def _evict(self, run: Run) -> None:
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
            self._finished.pop(run.id, None)
            logger.debug("run %s evicted from memory", run.id)

    def _attach(self, run: Run) -> None:
        run._subscribers += 1
        if run._timer is not None:
            run._timer.cancel()
            run._timer = None

    def _detach(self, run: Run) -> None:
        run._subscribers -= 1
        if run._subscribers:
            return
        if run._finished.is_set():
            if self._runs.get(run.id) is run:
                self._arm_eviction(run)
        elif run.on_disconnect == "cancel" and not run._closed:
            grace = self.config.disconnect_grace
            if grace == 0:
                run._request_cancel("disconnected")
                return

            def cancel_abandoned() -> None:
                run._timer = None
                if not run._subscribers:
                    logger.info("run %s: no subscriber came back within %ss", run.id, grace)
                    run._request_cancel("disconnected")

            run._timer = self._timers.call_after(grace, cancel_abandoned)

    # -- reading and controlling ------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        """The run if this hub holds it in memory (live, or finished within its grace)."""
        return self._runs.get(run_id)

    def current(self, key: str) -> Run | None:
        """The run that holds ``key`` now (running), if any."""
        slot = self._keys.get(key)
        return None if slot is None else slot.current

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
        """
        run = self._runs.get(run_id)
        if run is None:
            info = await self.get_info(run_id)
            if not info.status.finished:
                if not self.store.shared:
                    raise RunNotLive(f"run {run_id} is running elsewhere")
                await self.store.request_cancel(run_id, reason)
                logger.info("run %s cancel requested from another instance: %r", run_id, reason)
            return info.status
        await trio.lowlevel.checkpoint()
        if run._request_cancel(reason):
            logger.info("run %s cancel requested: %r", run.id, reason)
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
        if not self.store.shared:
            raise RunNotLive(f"run {run_id} is running elsewhere")
        async with self._mirrors.open(info) as mirror:
            await mirror._finished.wait()
            if mirror._closed and mirror.status.finished:
                return mirror.info()
        return await self.get_info(run_id)

    @asynccontextmanager
    async def subscribe(
        self, run_id: str, *, after: int = 0, heartbeat: float | None = None
    ) -> AsyncIterator[Subscription]:
        """Follow a run: every event with ``seq > after``, then live, until its end.

        The subscription counts as a subscriber for as long as the block runs
        (keeping a finished run from eviction, and an ``on_disconnect=
        "cancel"`` run alive).

        Args:
            run_id: the run.
            after: the last seq the caller already has (Last-Event-ID).
            heartbeat: yield a :class:`Heartbeat` after this many idle seconds.

        Raises:
            RunNotFound, RunNotLive: as :meth:`cancel`.
            ValueError: ``after`` is negative or beyond the run's last event.
        """
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        run = self._runs.get(run_id)
        if run is None:
            info = await self.get_info(run_id)
            if not info.status.finished:
                if not self.store.shared:
                    raise RunNotLive(f"run {run_id} is running elsewhere")
                if after > info.last_seq:
                    raise ValueError(f"after={after} is beyond the run's last event ({info.last_seq})")
                async with self._mirrors.open(info) as mirror:
                    subscription = Subscription(
                        run_id, run=mirror, stored=None, store=self.store, after=after, heartbeat=heartbeat
                    )
                    try:
                        yield subscription
                    finally:
                        subscription.close()
                return
            if after > info.last_seq:
                raise ValueError(f"after={after} is beyond the run's last event ({info.last_seq})")
            yield Subscription(
                run_id, run=None, stored=info, store=self.store, after=after, heartbeat=heartbeat
            )
            return
        if after > run.last_seq:
            raise ValueError(f"after={after} is beyond the run's last event ({run.last_seq})")
        subscription = Subscription(
            run_id, run=run, stored=None, store=self.store, after=after, heartbeat=heartbeat
        )
        self._attach(run)
        try:
            yield subscription
        finally:
            subscription.close()
            self._detach(run)

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
        return HubStatistics(
            runs_queued=states[RunStatus.QUEUED],
            runs_running=states[RunStatus.RUNNING],
            runs_finished=finished,
            subscribers=subscribers,
            log_events=events,
            log_bytes=nbytes,
            runs_started=self._runs_started,
            events_published=self._retired_events + live_events,
            runs_by_status=dict(self._runs_by_status),
            store=self.store.statistics(),
        )

    async def drain(self, grace: float, *, reason: str = "shutdown") -> None:
        """Stop starting runs, let live ones finish for up to ``grace`` seconds,
        then cancel the rest and wait until every run has finalized.

        What a graceful server shutdown wants: runs that end within the grace
        end normally; the others are cancelled with ``reason`` (partial
        results saved, ``cancelled`` published). Queued runs, which never
        started, are cancelled at once. New starts raise :class:`HubClosed`.

        Cancellation: cancelling the caller cancels every live run at once
        (reason ``"hub_closed"``) and re-raises; the runs still finalize, in
        the hub's nursery, under their finalize deadline.
        """
        if grace < 0:
            raise ValueError(f"grace must be >= 0, not {grace}")
        self._closing = True
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
                    logger.info("run %s cancelled at shutdown after the %ss grace", run.id, grace)
            for run in live:
                await run._finished.wait()
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        """Refuse new runs and cancel every live one. Synchronous: no checkpoint."""
        self._closing = True
        for run in list(self._runs.values()):
            run._request_cancel("hub_closed")
        self._mirrors.close()

    def _cancel_from_store(self, run_id: str, reason: str) -> None:
        """Another instance asked (through the shared store) to cancel a run we own."""
        run = self._runs.get(run_id)
        if run is not None and run._request_cancel(reason):
            logger.info("run %s cancel requested by another instance: %r", run_id, reason)


async def _run_producer(run: Run, producer: Producer, ctx: RunContext) -> None:
    source: Any = producer
    if callable(producer):
        source = producer(ctx)
        if inspect.isawaitable(source):
            value = await source
            if value is not None:
                run.result = value
            return
    if not hasattr(source, "__aiter__"):
        raise TypeError(f"producer returned {type(source).__name__}, not an awaitable or async iterable")
    iterator = cast("AsyncIterator[Any]", source.__aiter__())
    try:
        async for item in iterator:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                ctx.emit_nowait(item[0], item[1])
            else:
                ctx.emit_nowait("message", item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with ctx.cleanup():
                await aclose()


def _terminal_data(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {"result": run.result}
    if run.partial:
        data["partial"] = True
    if run.reason is not None:
        data["reason"] = run.reason
    if run.error is not None:
        data["error"] = run.error
    return data


def _raise_collapsed(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise a group's only real error as itself (see STYLE rule 11)."""
    cancelled, rest = group.split(trio.Cancelled)
    if rest is None and cancelled is not None:
        leaf: BaseException = cancelled
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf
    leaves: list[BaseException] = []
    stack: list[BaseException] = [rest] if rest is not None else []
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) == 1:
        raise leaves[0]
    raise TrioStreamsInternalError(f"{len(leaves)} errors escaped the hub at once") from group


@asynccontextmanager
async def open_hub(
    store: Store | None = None,
    *,
    config: HubConfig | None = None,
    wall_clock: Callable[[], float] = time.time,
    **options: Any,
) -> AsyncIterator[Hub]:
    """Open a hub that owns its runs for the duration of the block.

    ``async with open_hub(MemoryStore(), grace_period=60) as hub: ...``

    Leaving the block cancels every live run (reason ``"hub_closed"``),
    waits until each has finalized (partial results saved, terminal events
    published), flushes the store, and only then returns.

    Args:
        store: where runs are persisted; a new :class:`MemoryStore` if omitted.
        config: a :class:`HubConfig`; ``options`` override its fields.
        wall_clock: the source of event timestamps and run times.
        **options: any :class:`HubConfig` field, e.g. ``grace_period=60``.

    Raises:
        TypeError: an unknown option.
        ValueError: an invalid option value.

    An exception raised in the block propagates as itself, not wrapped in an
    ``ExceptionGroup``; several at once raise :class:`TrioStreamsInternalError`.
    """
    unknown = set(options) - HubConfig.option_names()
    if unknown:
        raise TypeError(f"unknown hub option(s): {', '.join(sorted(unknown))}")
    config = HubConfig(**options) if config is None else replace(config, **options)
    store = MemoryStore() if store is None else store
    try:
        async with trio.open_nursery() as services:
            await store.start(services)
            timers = TimerQueue()
            await services.start(timers.run)
            try:
                async with trio.open_nursery() as runs:
                    hub = Hub(store, config, runs, timers, wall_clock)
                    store.set_cancel_handler(hub._cancel_from_store)
                    try:
                        yield hub
                    finally:
                        hub._close()
            finally:
                with trio.move_on_after(config.store_timeout, shield=True) as flush_scope:
                    await store.aclose()
                if flush_scope.cancelled_caught:
                    logger.error("the store did not flush within %ss at shutdown", config.store_timeout)
                services.cancel_scope.cancel(reason="hub closed")
    except BaseExceptionGroup as group:
        _raise_collapsed(group)


__all__ = ["RESERVED_TYPES", "Hub", "Producer", "RunNotLive", "open_hub"]
