"""Keys: at most one live run per key, and a bounded FIFO of runs behind it.

Theory of operation
-------------------
Each key has a slot holding its current run and a bounded FIFO of queued
runs. ``reject`` refuses while the slot is busy; ``enqueue`` appends;
``interrupt`` cancels the current and queued runs and appends -- the new run
starts only once the old one has finalized, because a slot promotes its next
run only from the old run's finalization (:func:`release_key`, called from
the hub's bookkeeping once a run has ended).

Pure and synchronous: the hub calls these with no checkpoint in between its
checks and its registration, so two starts cannot both claim a free key.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._errors import AtCapacity, RunConflict

if TYPE_CHECKING:
    from ._run import OnConflict, Run


@dataclass(slots=True)
class _KeySlot:
    current: Run | None = None
    queue: deque[Run] = field(default_factory=deque)

    def holder(self) -> Run:
        if self.current is not None:
            return self.current
        return self.queue[0]


def claim_key(keys: dict[str, _KeySlot], run: Run, on_conflict: OnConflict, max_queued_per_key: int) -> None:
    """Give ``run`` its key's slot, or queue it behind the slot's runs.

    Raises:
        RunConflict: ``reject`` and the key is held.
        AtCapacity: ``max_queued_per_key`` runs already wait for the key.
    """
    key = run.key
    if key is None:
        run._turn.set()
        return
    slot = keys.get(key)
    if slot is None:
        slot = keys[key] = _KeySlot()
    if slot.current is None and not slot.queue:
        slot.current = run
        run._turn.set()
        return
    if on_conflict == "reject":
        raise RunConflict(key, slot.holder().id)
    # Runs still waiting for an interrupted run to finalize count too.
    if len(slot.queue) >= max_queued_per_key:
        raise AtCapacity("max_queued_per_key", f"{len(slot.queue)} runs already wait for key {key!r}")
    if on_conflict == "interrupt":
        for old in (slot.current, *slot.queue):
            if old is not None:
                old._request_cancel("interrupted")
    slot.queue.append(run)


def release_key(keys: dict[str, _KeySlot], run: Run) -> None:
    """Free an ended run's key (or its place in the queue); promote the next queued run."""
    if run.key is not None:
        slot = keys[run.key]
        if slot.current is run:
            slot.current = None
            if slot.queue:
                slot.current = slot.queue.popleft()
                slot.current._turn.set()
        else:
            slot.queue.remove(run)
        if slot.current is None and not slot.queue:
            del keys[run.key]
