"""HubState: what a hub holds about its runs, and the only code that changes it.

Theory of operation
-------------------
The hub's bookkeeping -- the runs it holds, the finished ones in eviction
order, its key slots, which runs the shared store promotes, live runs per
owner and the counters behind ``Hub.statistics`` -- is one object with a
method per change. ``Hub.start`` registers, the drain task retires, the
retention rules forget, the shared-key wait hands over a turn: each through
a method here, so the invariants (a run is in ``finished`` only while it is
in ``runs``; ``owner_live`` counts exactly the registered, unretired runs of
each owner; a key slot exists only while it holds a run) are kept in one
place. The drain task and the retention rules see this object, not the
:class:`~._hub.Hub`, so neither imports the hub (no import cycle).

It also carries the services those modules need (store, config, timers,
clock, budget): it is the hub's context as much as its state.

All synchronous: no checkpoint, so a caller's check and change are atomic.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from ._keys import claim_key, note_claim, release_key, take_turn

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..log._budget import MemoryBudget
    from ..log._store import Store
    from ._config import HubConfig
    from ._keys import KeyId, _KeySlot
    from ._run import OnConflict, Run
    from ._timers import TimerQueue


class HubState:
    """A hub's runs and counters, with the services its modules share.

    Read the attributes freely; change them only through the methods.
    """

    __slots__ = (
        "budget",
        "closing",
        "config",
        "finished",
        "keys",
        "owner_live",
        "retired_events",
        "runs",
        "runs_by_status",
        "runs_started",
        "shared_keys",
        "store",
        "timers",
        "wall_clock",
    )

    def __init__(
        self,
        store: Store,
        config: HubConfig,
        timers: TimerQueue,
        wall_clock: Callable[[], float],
        budget: MemoryBudget,
    ) -> None:
        self.store = store
        self.config = config
        self.timers = timers
        self.wall_clock = wall_clock
        self.budget = budget
        #: Every run held in memory, live or finished, by id.
        self.runs: dict[str, Run] = {}
        #: The finished ones among them, oldest first (eviction order).
        self.finished: OrderedDict[str, Run] = OrderedDict()
        self.keys: dict[KeyId, _KeySlot] = {}
        #: Runs whose key the shared store decides (claimed there): it promotes them.
        self.shared_keys: set[str] = set()
        self.owner_live: Counter[str] = Counter()
        self.closing = False
        self.runs_started = 0
        self.retired_events = 0
        self.runs_by_status: Counter[str] = Counter()

    def refuse_new(self) -> None:
        """From now on the hub starts no new runs."""
        self.closing = True

    def claim_local_key(self, run: Run, on_conflict: OnConflict) -> None:
        """Give ``run`` its key here, or queue it (no shared store decides).

        Raises:
            RunConflict, AtCapacity: as :func:`._keys.claim_key`.
        """
        claim_key(self.keys, run, on_conflict, self.config.max_queued_per_key)

    def register(self, run: Run, *, shared_claim: bool | None = None) -> None:
        """Hold a new run. ``shared_claim``: the shared store decided its key
        (``True``: it holds it; ``False``: it waits); ``None``: it did not."""
        if shared_claim is not None:
            self.shared_keys.add(run.id)
            note_claim(self.keys, run, holds=shared_claim)
        self.runs[run.id] = run
        if run.owner is not None:
            self.owner_live[run.owner] += 1
        self.runs_started += 1

    def take_turn(self, run: Run) -> None:
        """The shared store handed queued ``run`` its key."""
        take_turn(self.keys, run)

    def retire(self, run: Run) -> bool:
        """A run has ended: count it, free its key (promoting the next queued
        run), and mark it finished. Returns True if the hub still holds it
        (then the caller arms its eviction)."""
        self.retired_events += run.last_seq
        self.runs_by_status[run.status.value] += 1
        if run.owner is not None:
            self.owner_live[run.owner] -= 1
            if not self.owner_live[run.owner]:
                del self.owner_live[run.owner]
        release_key(self.keys, run, self.shared_keys)
        self.shared_keys.discard(run.id)
        if self.runs.get(run.id) is run:
            self.finished[run.id] = run
            return True
        return False

    def holds(self, run: Run) -> bool:
        """True while the hub holds this very run (not an evicted one, nor a newer one)."""
        return self.runs.get(run.id) is run

    def forget(self, run: Run) -> bool:
        """Stop holding ``run`` (evicted); False if the hub did not hold it."""
        if self.runs.get(run.id) is not run:
            return False
        del self.runs[run.id]
        self.finished.pop(run.id, None)
        return True

    def oldest_finished(self) -> Run | None:
        """The finished run held longest, if any."""
        return next(iter(self.finished.values()), None)
