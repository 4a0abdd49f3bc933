"""Run, its status and snapshot, and the RunContext a producer writes through."""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._errors import RunClosed
from ..log import Changed
from ..log._budget import EventTooLarge
from ..log._events import ACCEPTED_TYPES, EVENT_SIZE_OVERHEAD, TERMINAL_TYPES, Event, check_event_type
from ..log._run_info import OnConflict as OnConflict
from ..log._run_info import OnDisconnect as OnDisconnect
from ..log._run_info import RunInfo as RunInfo
from ..log._run_info import RunOutcome as RunOutcome
from ..log._run_info import RunStatus as RunStatus
from ..log._sizes import EVENT_OVERHEAD, FLAT_TYPES, data_size, encoded_size, event_cost

_getsizeof = sys.getsizeof

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..log._budget import RunLedger
    from ..log._replay_log import ReplayLog
    from ..log._store import Store


class Run:
    """A live run held by a hub. Read its attributes; change it through the hub.

    A ``Run`` object is also the handle subscriptions hold, so it stays
    readable after the hub has evicted it.
    """

    def __init__(
        self,
        run_id: str,
        *,
        key: str | None,
        owner: str | None,
        metadata: dict[str, Any],
        on_disconnect: OnDisconnect,
        log: ReplayLog,
        ledger: RunLedger,
        store: Store,
        wall_clock: Callable[[], float],
        finalize_timeout: float,
        no_event_timeout: float | None,
        input_timeout: float | None,
    ) -> None:
        self.id = run_id
        self.key = key
        self.owner = owner
        self.metadata = metadata
        self.on_disconnect: OnDisconnect = on_disconnect
        self.log = log
        self.status = RunStatus.QUEUED
        self.created_at = wall_clock()
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.result: Any = None
        self.partial = False
        self.error: dict[str, str] | None = None
        self.reason: str | None = None
        self.finalize_error: str | None = None
        # The run's account in the memory budget; ``log`` is one of its holders.
        self._ledger = ledger
        self._max_event_bytes = ledger.budget.max_event_bytes
        self._store = store
        # The store's append_nowait for every event; None once the store
        # records the run from its log instead (then only the terminal
        # event is handed over, see _stage).
        self._store_append: Callable[[str, Event], None] | None = store.append_nowait
        self._wall_clock = wall_clock
        self._finalize_timeout = finalize_timeout
        self._no_event_timeout = no_event_timeout
        self._input_timeout = input_timeout
        self._awaiting_input = 0
        # The run's own scope: cancelling it is how a run is aborted.
        self._scope = trio.CancelScope()
        # Nested in _scope; its deadline is the no-event watchdog.
        self._watchdog = trio.CancelScope()
        self._cleanup_deadline = math.inf
        # Readers of the log wait here; every reveal wakes them (log.Changed).
        self._wakeup = Changed()
        self._turn = trio.Event()
        # Set once the store has the run's first metadata (or it never will).
        self._saved = trio.Event()
        self._finished = trio.Event()
        # _sealed: the terminal event exists (producers can emit no more);
        # _closed: it is in the log too (subscribers end after it). In between
        # the hub makes it durable, so nobody sees an end the store lacks.
        self._sealed = False
        self._closed = False
        self._subscribers = 0
        self._had_subscriber = False
        # A pending eviction or disconnect timer (see _timers.TimerQueue).
        self._timer: Any = None

    def __repr__(self) -> str:
        return f"<Run {self.id} key={self.key!r} {self.status.value} seq={self.log.last_seq}>"

    @property
    def last_seq(self) -> int:
        """Seq of the newest event published."""
        return self.log.last_seq

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open on this run now."""
        return self._subscribers

    @property
    def awaiting_input(self) -> bool:
        """True while the producer is inside :meth:`RunContext.awaiting_input`."""
        return self._awaiting_input > 0

    @property
    def cancel_requested(self) -> bool:
        """True once anything asked this run to stop."""
        return self._scope.cancel_called

    def info(self) -> RunInfo:
        """A snapshot of this run's metadata.

        While the run ends (its hooks, the store recording its end) it is still what it was:
        ``ended_at``, ``partial``, ``error`` and ``finalize_error`` appear with the final status,
        in one snapshot.
        """
        finished = self.status.finished
        return RunInfo(
            run_id=self.id,
            key=self.key,
            owner=self.owner,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            ended_at=self.ended_at if finished else None,
            last_seq=self.log.last_seq,
            metadata=self.metadata,
            result=self.result,
            partial=self.partial if finished else False,
            error=self.error if finished else None,
            reason=self.reason,
            finalize_error=self.finalize_error if finished else None,
            awaiting_input=self.awaiting_input,
        )

    async def wait(self) -> RunInfo:
        """Wait until the run has finished and been finalized; return its snapshot.

        Cancellation: cancelling the waiter does not affect the run.
        """
        await self._finished.wait()
        return self.info()

    # -- used by the hub ------------------------------------------------------

    def _request_cancel(self, reason: str) -> bool:
        """Cancel the run's scope; return False if it was already requested."""
        if self._scope.cancel_called or self._sealed:
            return False
        self.reason = reason
        self._cleanup_deadline = trio.current_time() + self._finalize_timeout
        self._scope.cancel(reason=reason)
        return True

    def _publish(self, type: str, data: Any) -> Event:
        """Append a producer's event to the log (and the store), then wake subscribers.

        Never a terminal event (those types are reserved): the drain task
        stages and reveals the terminal event itself, around making it durable.

        :meth:`_stage` and :meth:`_reveal` in one, for an event known not to
        be terminal, with the store called only when it does not record the
        run from its log (``Store.record_from_log``). The general path:
        ``RunContext.emit_nowait`` inlines the common case (its lean path)
        and hands anything else here.

        Raises:
            RunClosed: the run's terminal event is already published.
            EventTooLarge: its data is larger than ``max_event_bytes``.
            MemoryBudgetExceeded: the memory budget cannot take it.
            StoreOverflow: the store cannot buffer it.
            (Whichever it is, nothing was published.)
        """
        if self._sealed:
            raise RunClosed(f"run {self.id} has finished; its producer can emit no more")
        return self._publish_created(Event.create(self.log.last_seq + 1, type, data, self._wall_clock()))

    def _publish_created(self, event: Event) -> Event:
        """:meth:`_publish` from the created event on (the run is not sealed)."""
        log = self.log
        seq = event.seq
        data = event.data
        ledger = self._ledger
        # A character is at most 4 bytes of UTF-8: most events need no count.
        if len(event.data_json) * 4 > self._max_event_bytes:
            size = encoded_size(event)
            if size > self._max_event_bytes:
                raise EventTooLarge(size, self._max_event_bytes)
        # Counted once, here, at its measured size; the log and the store's
        # record then hold the same object (the ledger counts it once). The
        # cost is event_cost's, without the call for a flat value.
        cost = _getsizeof(event.data_json) + EVENT_OVERHEAD
        cost += _getsizeof(data) if data.__class__ in FLAT_TYPES else data_size(data)
        ledger.charge(seq, cost)
        append = self._store_append
        if append is not None:
            try:
                append(self.id, event)
            except BaseException:
                ledger.refund(seq)  # not published: nothing holds it
                raise
        log.append(event)
        self._wakeup.notify()
        if self._no_event_timeout is not None and not self._awaiting_input:
            self._watchdog.deadline = trio.current_time() + self._no_event_timeout
        return event

    def _stage(self, type: str, data: Any) -> Event:
        """Create the next event, count it in the memory budget, and hand it to
        the store, not yet to subscribers.

        A terminal event is always counted (every run can end; the drain task
        keeps it within ``max_event_bytes``); any other event must fit.

        Raises:
            RunClosed, EventTooLarge, MemoryBudgetExceeded, StoreOverflow: as
            :meth:`_publish`.
        """
        if self._sealed:
            raise RunClosed(f"run {self.id} has finished; its producer can emit no more")
        event = Event.create(self.log.last_seq + 1, type, data, self._wall_clock())
        ledger = self._ledger
        terminal = event.terminal
        limit = ledger.budget.max_event_bytes
        # A character is at most 4 bytes of UTF-8: most events need no count.
        if len(event.data_json) * 4 > limit and not terminal:
            size = encoded_size(event)
            if size > limit:
                raise EventTooLarge(size, limit)
        # Counted once, here, at its measured size; the log and the store's
        # record then hold the same object (the ledger counts it once).
        ledger.charge(event.seq, event_cost(event), force=terminal)
        try:
            self._store.append_nowait(self.id, event)
        except BaseException:
            ledger.refund(event.seq)  # not published: nothing holds it
            raise
        if terminal:
            self._sealed = True
        return event

    def _reveal(self, event: Event) -> None:
        """Append a staged event to the log and wake subscribers (only those
        parked: a reader already woken by this step's first event will read
        this one too, see ``log.Changed``)."""
        self.log.append(event)
        if event.type in TERMINAL_TYPES:
            self._closed = True
        self._wakeup.notify()

    def _arm_watchdog(self) -> None:
        if self._no_event_timeout is not None:
            self._watchdog.deadline = trio.current_time() + self._no_event_timeout


class RunContext:
    """What a producer function receives: its run, and the means to emit into it.

    The context is bound to one run forever. After that run's terminal event
    it refuses to emit (``RunClosed``), so a producer that outlives its run
    can never write into a newer run with the same key.
    """

    __slots__ = (
        "_budget",
        "_lean",
        "_ledger",
        "_log",
        "_max_chars",
        "_run",
        "_type",
        "_wakeup",
        "_wall_clock",
        "input",
    )

    def __init__(self, run: Run, input: Any = None) -> None:
        self._run = run
        # emit_nowait's lean path, for a run whose every event goes to its log
        # alone: the store records it from there, no watchdog to re-arm, and
        # a log nobody holds. (The hub sets all three before it makes the
        # context; they do not change after.)
        self._lean = run._store_append is None and run._no_event_timeout is None and run.log._durable is None
        # The last event type checked (an exact str): the next event's is most often the same.
        self._type: str | None = None
        # The run's parts the lean path uses, each fixed for the run's life.
        self._log = run.log
        self._ledger = run._ledger
        self._budget = run._ledger.budget
        self._wakeup = run._wakeup
        self._wall_clock = run._wall_clock
        # A character is at most 4 bytes of UTF-8: shorter data needs no count.
        self._max_chars = run._max_event_bytes // 4
        #: The input the run was started with (e.g. the request's JSON).
        self.input = input

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run.id

    @property
    def key(self) -> str | None:
        """The run's key (e.g. a conversation id), if any."""
        return self._run.key

    @property
    def owner(self) -> str | None:
        """The user the run belongs to, if any."""
        return self._run.owner

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata the run was started with."""
        return self._run.metadata

    @property
    def last_seq(self) -> int:
        """Seq of the newest event emitted so far."""
        return self._run.log.last_seq

    @property
    def cancel_reason(self) -> str | None:
        """Why the run is being cancelled, once it is; else ``None``."""
        return self._run.reason if self._run.cancel_requested else None

    @property
    def result(self) -> Any:
        """The run's result so far.

        Set it as you go: if the run is cancelled, whatever it holds is saved
        as the partial result. A producer function's non-``None`` return
        value replaces it.
        """
        return self._run.result

    @result.setter
    def result(self, value: Any) -> None:
        self._run.result = value

    def history(self, after: int = 0) -> list[Event]:
        """Events emitted so far with ``seq > after`` that the log still retains."""
        return self._run.log.read_after(after)

    def emit_nowait(self, type: str, data: Any = None) -> Event:
        """Publish an event without a checkpoint (for tight loops).

        Raises:
            ValueError: ``type`` breaks a rule of :func:`check_event_type`
                (empty, over 64 characters, CR/LF/NUL, reserved), or
                ``data`` holds ``NaN``/``Infinity`` or a lone surrogate
                (strict JSON only); the message names the rule.
            TypeError: ``data`` is not JSON-serializable.
            EventTooLarge: ``data`` encodes to more than ``max_event_bytes``
                (a ``ValueError``); uncaught, the run fails (``event_too_large``).
            MemoryBudgetExceeded: the hub's memory budget is full even after
                finished runs gave memory back; uncaught, the run fails
                (``memory_budget``).
            RunClosed: the run has finished.
            StoreOverflow: the store's buffer is full; the run will fail.

        Whatever it raises, nothing was published.
        """
        if type is not self._type:  # else: the type it checked last
            if type.__class__ is not str or type not in ACCEPTED_TYPES:  # else: checked before
                check_event_type(type)
            if type.__class__ is str:
                self._type = type
        run = self._run
        ledger = self._ledger
        if not self._lean or run._sealed or ledger.reserved or ledger.finished:
            return run._publish(type, data)
        # The lean path (see __init__): _publish and what it calls, inline.
        log = self._log
        seq = log.last_seq + 1
        event = Event.create(seq, type, data, self._wall_clock())
        data_json = event.data_json
        length = len(data_json)
        # Exactly event_cost: __sizeof__ is sys.getsizeof for objects the GC
        # does not track (a str, a flat value), without its argument parsing.
        cost = data_json.__sizeof__() + EVENT_OVERHEAD
        cost += data.__sizeof__() if data.__class__ in FLAT_TYPES else data_size(data)
        costs = ledger._costs
        budget = self._budget
        used = budget._used + cost
        if length > self._max_chars or used > budget.limit or seq != ledger._first + len(costs):
            return run._publish_created(event)  # the size test, a refusal (naming it), or a reclaim
        budget._used = used  # RunLedger.charge's hot path
        costs.append(cost)
        ledger.nbytes += cost
        entries = log._entries  # Tail.append for a tail nobody holds
        entries.append(event)
        log.last_seq = seq
        size = length + len(type) + EVENT_SIZE_OVERHEAD  # Event.size
        nbytes = log._nbytes = log._nbytes + size
        if size > log._max_size:
            log._max_size = size
        if len(entries) - log._head > log.max_entries or nbytes > log.max_bytes:
            log._trim()
        wakeup = self._wakeup
        if wakeup._waiters:  # Changed.notify's test
            wakeup.notify()
        return event

    async def emit(self, type: str, data: Any = None) -> Event:
        """Publish an event; a checkpoint, so a cancelled run stops here.

        Cancellation: if the run is cancelled before the call, nothing is
        published and ``trio.Cancelled`` is raised; otherwise the event is
        published and the call yields to the scheduler.

        Raises:
            ValueError, TypeError, EventTooLarge, MemoryBudgetExceeded,
            RunClosed, StoreOverflow: as :meth:`emit_nowait`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        event = self.emit_nowait(type, data)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event

    @contextmanager
    def awaiting_input(self) -> Iterator[None]:
        """Mark the run as waiting for a human: the no-event watchdog uses the
        hub's (longer) ``input_timeout`` instead while inside the block."""
        run = self._run
        run._awaiting_input += 1
        timeout = run._input_timeout
        run._watchdog.deadline = math.inf if timeout is None else trio.current_time() + timeout
        try:
            yield
        finally:
            run._awaiting_input -= 1
            if not run._awaiting_input:
                run._watchdog.deadline = math.inf
                run._arm_watchdog()

    def cleanup(self) -> trio.CancelScope:
        """A shielded scope for cleanup after cancellation, with the run's
        finalize deadline: ``with ctx.cleanup(): await save(partial)``.

        The deadline is ``finalize_timeout`` after the cancel was requested
        (or after this call, if the run was not cancelled).
        """
        deadline = self._run._cleanup_deadline
        if deadline == math.inf:
            deadline = trio.current_time() + self._run._finalize_timeout
        return trio.CancelScope(shield=True, deadline=deadline)
