"""MemoryBudget: one process-wide budget, in bytes, for what the hub keeps in memory.

Theory of operation
-------------------
The hub owns one :class:`MemoryBudget` (``HubConfig.max_memory``) and hands
it to everything that keeps data: the runs' replay logs, the store (the
``MemoryStore``'s records) and the in-memory Durable Streams store. Each
charges what it is about to keep with :meth:`MemoryBudget.reserve` and gives
it back with :meth:`MemoryBudget.release`. Nothing here blocks or knows trio.

**Each event is counted once.** A run's log, the ``MemoryStore``'s record of
the run and a store's not-yet-durable buffer hold *the same* ``Event``
objects (the log keeps what the buffer holds until it is durable). Every
one of them keeps a suffix of the run's events (each trims the oldest
first), so the events in memory are those after the lowest first seq over
the holders. A :class:`RunLedger` per run keeps the cost of each event
from the moment it is published (charged once, whoever appends it) and gives
it back when the last holder has let it go: holders report their first seq
(:meth:`RunLedger.release_before`) or that they hold nothing any more
(:meth:`RunLedger.drop`). Each holder's own fixed overhead (the ``Run``
object, the store's record, each with the run's metadata) counts while it
holds.

**Finished runs give memory back first.** When a reservation does not fit,
the budget calls its *reclaimers* in order -- the ``MemoryStore`` drops its
oldest finished record, the hub evicts its oldest finished run from memory
(a store with room of its own, Redis, still serves it) -- one run at a time
until the reservation fits or none is left; only then is it refused
(:class:`MemoryBudgetExceeded`). A new run must also leave ``headroom`` (an
eighth of the budget) free for the events of runs already live, so under
pressure new runs are refused (429) before live runs fail.

**Not-yet-durable data has a sub-budget** (``max_pending_bytes``,
``HubConfig.max_pending_bytes``): the bytes a store has accepted but not yet
made durable (the Redis writer's queue, and everything it buffers while
Redis is down). The store bounds them itself, by at most this much (see
``Store.use_memory_budget``); past it the store refuses the event and the
emitting run fails with ``store_overflow``, readers and other runs
unaffected. The same events are held by their runs' logs (which keep what
the store has not made durable), so their full cost is in ``used`` already,
counted once: the sub-budget caps how much of the budget an outage can take.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from .._errors import StreamError

if TYPE_CHECKING:
    from collections.abc import Callable

#: New runs must leave this part of the budget free (for live runs' events).
HEADROOM_SHARE: Final = 8

Part = Literal["runs", "durable"]


def mib(nbytes: int) -> str:
    """``nbytes`` for messages: ``"512 MiB"``, ``"1.5 MiB"`` or ``"300 B"``."""
    if nbytes < 1024:
        return f"{nbytes} B"
    if nbytes < 1024 * 1024:
        return f"{nbytes / 1024:.4g} KiB"
    return f"{nbytes / 1024**2:.4g} MiB"


class MemoryBudgetExceeded(StreamError):
    """The memory budget cannot take what was asked, even after finished runs
    gave memory back.

    A live run's producer gets it from ``emit`` (the run then fails with error
    ``memory_budget`` unless the producer handles it); ``Hub.start`` turns it
    into ``AtCapacity("max_memory")`` (HTTP 429); Durable Streams answer 507.

    Attributes:
        limit: the budget (``max_memory``), in bytes.
        used: bytes held when it was refused.
        needed: bytes asked for.
    """

    def __init__(self, message: str, *, limit: int, used: int, needed: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.used = used
        self.needed = needed


class EventTooLarge(StreamError, ValueError):
    """An event's encoded data is larger than ``max_event_bytes``; nothing was published.

    Attributes:
        size: the event's encoded size in bytes.
        limit: ``max_event_bytes``.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the event's data is {mib(size)} encoded; max_event_bytes is {mib(limit)}")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class MemoryStatistics:
    """A snapshot of the memory budget (``hub.statistics().memory``).

    Attributes:
        limit: ``max_memory``.
        used: bytes counted now (``runs + durable``).
        runs: runs' events and overhead (logs and in-memory store records).
        durable: in-memory Durable Streams.
        pending: bytes the store has not made durable yet, as it counts them
            (their full cost is part of ``runs``).
        pending_limit: ``max_pending_bytes``, the sub-budget's limit.
        max_event_bytes: the largest event accepted.
        evicted: finished runs given back (evicted or dropped) to make room.
        refused: runs, events and appends refused because memory was short.
    """

    limit: int
    used: int
    runs: int
    durable: int
    pending: int
    pending_limit: int
    max_event_bytes: int
    evicted: int
    refused: int


class MemoryBudget:
    """One budget in bytes for a hub's memory (see the module docstring).

    Args:
        limit: ``max_memory``, bytes.
        max_event_bytes: the largest event's encoded data, bytes.
        max_pending_bytes: the not-yet-durable sub-budget (default: a quarter
            of ``limit``); stores that write behind bound their buffer by it.
    """

    def __init__(
        self, limit: int, *, max_event_bytes: int = 1024 * 1024, max_pending_bytes: int | None = None
    ) -> None:
        if limit < 1 or max_event_bytes < 1:
            raise ValueError("limit and max_event_bytes must be at least 1 byte")
        self.limit = limit
        self.max_event_bytes = max_event_bytes
        pending = limit // 4 if max_pending_bytes is None else max_pending_bytes
        if pending < 1:
            raise ValueError(f"max_pending_bytes must be at least 1 byte, not {pending}")
        #: The not-yet-durable sub-budget (see the module docstring).
        self.max_pending_bytes = pending
        self._used = 0
        self._durable = 0  # of _used: the rest is runs
        self._reclaimers: list[Callable[[], bool]] = []
        self._ledgers: dict[str, RunLedger] = {}
        self._reclaiming = False
        # Bytes finished runs hold (what reclaiming could give back, at most).
        self._reclaimable = 0
        self.evicted = 0
        self.refused = 0

    @property
    def used(self) -> int:
        """Bytes counted now."""
        return self._used

    @property
    def reclaimable(self) -> int:
        """Bytes finished runs hold now: what giving them back could free, at most."""
        return self._reclaimable

    @property
    def headroom(self) -> int:
        """Bytes a new run must leave free, for the events of live runs."""
        return self.limit // HEADROOM_SHARE

    # -- reserving and releasing --------------------------------------------------

    def add_reclaimer(self, reclaim: Callable[[], bool]) -> None:
        """``reclaim()`` gives back one finished run's memory; False when it has none.

        Reclaimers are asked in the order they were added.
        """
        self._reclaimers.append(reclaim)

    def remove_reclaimer(self, reclaim: Callable[[], bool]) -> None:
        if reclaim in self._reclaimers:
            self._reclaimers.remove(reclaim)

    def reserve(self, nbytes: int, *, part: Part = "runs", keep_free: int = 0, what: str = "this") -> None:
        """Count ``nbytes``, giving back finished runs' memory first if it does not fit.

        Args:
            nbytes: bytes to count.
            part: which part of the budget they belong to (statistics).
            keep_free: bytes that must stay free afterwards (``headroom``
                for a new run).
            what: names the thing refused, in the error message.

        Raises:
            MemoryBudgetExceeded: it does not fit even with every finished
                run given back; nothing was counted.
        """
        if not self._fits(nbytes, keep_free):
            self.refused += 1
            # Not what is held: that is every user's runs and streams (``used``, /metrics).
            kept = f", {mib(keep_free)} kept for live runs" if keep_free else ""
            raise MemoryBudgetExceeded(
                f"{what} needs {mib(nbytes)} and the memory budget is full "
                f"(max_memory={mib(self.limit)}{kept})",
                limit=self.limit,
                used=self._used,
                needed=nbytes,
            )
        self._add(nbytes, part)

    def charge(self, nbytes: int, *, part: Part = "runs") -> None:
        """Count ``nbytes`` even past the limit (what must never be refused: a
        run's terminal event, events read from a shared store), then give back
        finished runs' memory until the budget is within its limit again, if
        that is possible."""
        self._add(nbytes, part)
        if self._used > self.limit:
            self._fits(0, 0)

    def release(self, nbytes: int, *, part: Part = "runs") -> None:
        """Give back ``nbytes`` counted earlier."""
        self._used -= nbytes
        if part == "durable":
            self._durable -= nbytes

    def _add(self, nbytes: int, part: Part) -> None:
        self._used += nbytes
        if part == "durable":
            self._durable += nbytes

    def _fits(self, nbytes: int, keep_free: int) -> bool:
        """Whether ``nbytes`` fit (after reclaiming, if they do not at once)."""
        target = self.limit - keep_free
        if self._used + nbytes <= target:
            return True
        if self._reclaiming or self._used - self._reclaimable + nbytes > target:
            # A reclaimer's own release cannot reclaim again; and evicting
            # every finished run would not be enough: evict none for nothing.
            return False
        self._reclaiming = True
        try:
            for reclaim in self._reclaimers:
                while self._used + nbytes > target:
                    if not reclaim():
                        break
                    self.evicted += 1
        finally:
            self._reclaiming = False
        return self._used + nbytes <= target

    # -- runs ---------------------------------------------------------------------

    def ledger(self, run_id: str) -> RunLedger:
        """The run's ledger (a new, empty one if nothing holds the run yet).

        Register a holder on it (:meth:`RunLedger.hold`) at once.
        """
        ledger = self._ledgers.get(run_id)
        if ledger is None:
            ledger = self._ledgers[run_id] = RunLedger(self, run_id)
        return ledger

    def _forget(self, ledger: RunLedger) -> None:
        if self._ledgers.get(ledger.run_id) is ledger:
            del self._ledgers[ledger.run_id]

    def statistics(self, *, pending: int = 0) -> MemoryStatistics:
        """A snapshot; ``pending``: what the store reports not yet durable."""
        return MemoryStatistics(
            limit=self.limit,
            used=self._used,
            runs=self._used - self._durable,
            durable=self._durable,
            pending=pending,
            pending_limit=self.max_pending_bytes,
            max_event_bytes=self.max_event_bytes,
            evicted=self.evicted,
            refused=self.refused,
        )


class RunLedger:
    """The bytes one run holds, each event counted once however many hold it.

    Holders (the run's log ``"log"`` -- which also keeps what a store that
    writes behind has not made durable -- and a ``MemoryStore`` record
    ``"store"``) each keep a suffix of the run's events and report the first
    seq they still hold. An event's cost is
    given back once every holder is past it, and everything once the last
    holder has dropped the run. Each holder also has a fixed overhead of its
    own (the ``Run`` object, the store's record), counted while it holds.
    """

    __slots__ = (
        "_budget",
        "_costs",
        "_first",
        "_holders",
        "_overheads",
        "finished",
        "nbytes",
        "reserved",
        "run_id",
    )

    def __init__(self, budget: MemoryBudget, run_id: str) -> None:
        self._budget = budget
        self.run_id = run_id
        #: Bytes of the events counted now (overheads not included).
        self.nbytes = 0
        self._costs: deque[int] = deque()
        self._first = 1  # the seq of _costs[0]
        self._holders: dict[str, int] = {}
        self._overheads: dict[str, int] = {}
        #: Bytes counted in the budget ahead of the run's events (``hold(reserve=)``).
        self.reserved = 0
        #: The run has ended: what it holds can be given back (see :meth:`finish`).
        self.finished = False

    @property
    def budget(self) -> MemoryBudget:
        return self._budget

    @property
    def next_seq(self) -> int:
        """The seq after the last one counted."""
        return self._first + len(self._costs)

    @property
    def total(self) -> int:
        """Everything counted for the run now: events, overheads, reservation."""
        return self.nbytes + sum(self._overheads.values()) + self.reserved

    def finish(self) -> None:
        """The run has ended: its memory may be reclaimed from now on (idempotent)."""
        if not self.finished:
            self.finished = True
            self._budget._reclaimable += self.total

    def _count(self, nbytes: int) -> None:
        self._budget.charge(nbytes)
        if self.finished:
            self._budget._reclaimable += nbytes

    def _give_back(self, nbytes: int) -> None:
        self._budget.release(nbytes)
        if self.finished:
            self._budget._reclaimable -= nbytes

    def holds(self, holder: str) -> bool:
        return holder in self._holders

    def hold(
        self, holder: str, *, first_seq: int = 1, overhead: int = 0, admit: bool = False, reserve: int = 0
    ) -> None:
        """Register ``holder``, which holds the run's events from ``first_seq`` on,
        and count its fixed ``overhead`` while it does.

        Args:
            holder: its name (replacing a holder of that name).
            first_seq: the first seq it holds.
            overhead: its own fixed cost.
            admit: a new run: the overhead (and ``reserve``) must fit and leave
                the budget's headroom free. Otherwise it is counted regardless.
            reserve: bytes to set aside now for the run's coming events (they
                use them first; :meth:`unreserve` gives back the rest).

        Raises:
            MemoryBudgetExceeded: ``admit`` and it does not fit; nothing changed.
        """
        budget = self._budget
        if admit:
            try:
                budget.reserve(overhead + reserve, keep_free=budget.headroom, what="a new run")
            except MemoryBudgetExceeded:
                if not self._holders:
                    budget._forget(self)
                raise
        else:
            budget.charge(overhead + reserve)
        if self.finished:
            budget._reclaimable += overhead + reserve
        self.reserved += reserve
        self._give_back(self._overheads.get(holder, 0))
        self._holders[holder] = first_seq
        self._overheads[holder] = overhead

    def attach(self, holder: str, first_seq: int) -> None:
        """``holder`` holds the events from ``first_seq`` on (registered with no
        overhead if it was not a holder yet)."""
        if holder in self._holders:
            self.release_before(holder, first_seq)
        else:
            self.hold(holder, first_seq=first_seq)

    def charge(self, seq: int, cost: int, *, force: bool = False) -> bool:
        """Count event ``seq`` (``cost`` bytes) unless it is counted already.

        Returns:
            True if it was counted now, False if another holder had.

        Raises:
            MemoryBudgetExceeded: not ``force`` and it does not fit.
        """
        costs = self._costs
        following = self._first + len(costs)
        if seq == following and not self.reserved and not self.finished:
            # The hot path (a live run's next event, nothing reserved): one
            # test against the limit. (With no costs, _first is seq already.)
            budget = self._budget
            used = budget._used + cost
            if used <= budget.limit:
                budget._used = used
                costs.append(cost)
                self.nbytes += cost
                return True
        if seq < following:
            return False
        needed = cost - self.reserved
        budget = self._budget
        if needed <= 0:
            self.reserved = -needed  # counted already, ahead of time
        elif budget._used + needed <= budget.limit and not self.finished:
            budget._used += needed  # the hot path: it fits
            self.reserved = 0
        elif force:
            self._count(needed)
            self.reserved = 0
        else:
            budget.reserve(needed, what=f"an event of run {self.run_id}")
            if self.finished:
                budget._reclaimable += needed
            self.reserved = 0
        if not costs:
            self._first = seq
        elif seq > following:
            # Seqs nobody counted (a holder that joined late): they cost nothing.
            costs.extend(0 for _ in range(seq - following))
        costs.append(cost)
        self.nbytes += cost
        return True

    def unreserve(self) -> None:
        """Give back what is left of the reservation (the run has ended)."""
        if self.reserved:
            self._give_back(self.reserved)
            self.reserved = 0

    def refund(self, seq: int) -> None:
        """Take back the charge of ``seq``, the last one counted (it was not kept after all)."""
        if self._costs and seq == self.next_seq - 1:
            cost = self._costs.pop()
            self.nbytes -= cost
            self._give_back(cost)

    def release_before(self, holder: str, seq: int) -> None:
        """``holder`` now holds only the events from ``seq`` on."""
        holders = self._holders
        previous = holders.get(holder)
        if previous is None:
            return
        holders[holder] = seq
        # Only the holder that held the oldest event can free anything; the
        # others (a log trimming while the store keeps more) just move on.
        if previous <= self._first < seq:
            self._settle()

    def drop(self, holder: str) -> None:
        """``holder`` holds none of the run's events any more."""
        if self._holders.pop(holder, None) is not None:
            self._give_back(self._overheads.pop(holder, 0))
            self._settle()

    def _settle(self) -> None:
        costs = self._costs
        if not self._holders:
            freed = self.nbytes + self.reserved
            costs.clear()
            self.nbytes = self.reserved = 0
            self._give_back(freed)
            self._budget._forget(self)
            return
        low = min(self._holders.values())
        freed = 0
        while costs and self._first < low:
            freed += costs.popleft()
            self._first += 1
        if freed:
            self.nbytes -= freed
            self._give_back(freed)


class Account:
    """What one store keeps in a part of a :class:`MemoryBudget` (Durable Streams'
    data, counted per append): charged before it is kept, given back when it goes,
    and moved whole when the store is handed another budget.

    Without a budget it only counts (:attr:`nbytes`).
    """

    __slots__ = ("_budget", "nbytes", "part")

    def __init__(self, part: Part) -> None:
        self.part: Part = part
        self._budget: MemoryBudget | None = None
        #: Bytes counted now.
        self.nbytes = 0

    def use(self, budget: MemoryBudget) -> None:
        """Count in ``budget`` from now on: what is counted moves there at once,
        even past its limit (it is held already; nothing is dropped)."""
        if budget is self._budget:
            return
        if self._budget is not None:
            self._budget.release(self.nbytes, part=self.part)
        self._budget = budget
        budget.charge(self.nbytes, part=self.part)

    def reserve(self, nbytes: int, *, what: str) -> None:
        """Count ``nbytes`` more, or refuse and change nothing.

        Raises:
            MemoryBudgetExceeded: they do not fit, even after finished runs
                gave memory back.
        """
        if self._budget is not None:
            self._budget.reserve(nbytes, part=self.part, what=what)
        self.nbytes += nbytes

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` counted before."""
        self.nbytes -= nbytes
        if self._budget is not None:
            self._budget.release(nbytes, part=self.part)
