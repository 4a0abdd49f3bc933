"""Keys: at most one live run per (owner, key), and a bounded FIFO of runs behind it.

Theory of operation
-------------------
A key belongs to its owner: the key space is (owner, key), so two owners'
runs never conflict, queue behind or interrupt each other, whatever their
keys (``None``, the owner of runs started without one, is an owner like any
other).

Each (owner, key) has a slot holding its current run and a bounded FIFO of
queued runs. ``reject`` refuses while the slot is busy; ``enqueue`` appends;
``interrupt`` cancels the current and queued runs and appends -- the new run
starts only once the old one has finalized, because a slot promotes its next
run only from the old run's finalization (:func:`release_key`, called from
the hub's bookkeeping once a run has ended). ``rollback`` is ``interrupt``
with the reason ``rolled_back``: each run it cancels is also deleted by its
own finalization, before that releases the key, so the new run starts only
once the old ones are gone.

Who decides: with no shared store, these slots (:func:`claim_key`). With a
shared store, the store's key slot decides for every instance
(``SharedStore.claim_key``) and these slots only record the outcome
(:func:`note_claim`, :func:`take_turn`), so ``Hub.current`` and a
best-effort fallback still see this instance's runs; such runs are promoted
by the store, never here.

Pure and synchronous: the hub calls these with no checkpoint in between its
checks and its registration, so two starts cannot both claim a free key.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from .._errors import AtCapacity, RunConflict
from ..log._run_info import ROLLED_BACK

if TYPE_CHECKING:
    from collections.abc import Container

    from ._run import OnConflict, Run

#: A key's identity: (owner, key).
KeyId: TypeAlias = tuple[str | None, str]


@dataclass(slots=True)
class _KeySlot:
    current: Run | None = None
    queue: deque[Run] = field(default_factory=deque)

    def holder(self) -> Run:
        if self.current is not None:
            return self.current
        return self.queue[0]


def key_id(run: Run) -> KeyId | None:
    """The run's (owner, key), or ``None`` for a run without a key."""
    return None if run.key is None else (run.owner, run.key)


def claim_key(
    keys: dict[KeyId, _KeySlot], run: Run, on_conflict: OnConflict, max_queued_per_key: int
) -> None:
    """Give ``run`` its key's slot, or queue it behind the slot's runs.

    Raises:
        RunConflict: ``reject`` and the key is held (by a run of the same owner).
        AtCapacity: ``max_queued_per_key`` runs already wait for the key.
    """
    ident = key_id(run)
    if ident is None:
        run._turn.set()
        return
    slot = keys.get(ident)
    if slot is None:
        slot = keys[ident] = _KeySlot()
    if slot.current is None and not slot.queue:
        slot.current = run
        run._turn.set()
        return
    if on_conflict == "reject":
        raise RunConflict(ident[1], slot.holder().id)
    # Runs still waiting for an interrupted run to finalize count too.
    if len(slot.queue) >= max_queued_per_key:
        raise AtCapacity("max_queued_per_key", f"{len(slot.queue)} runs already wait for key {ident[1]!r}")
    if on_conflict in ("interrupt", "rollback"):
        reason = cancel_reason(on_conflict)
        for old in (slot.current, *slot.queue):
            if old is not None:
                old._request_cancel(reason)
    slot.queue.append(run)


def cancel_reason(on_conflict: OnConflict) -> str:
    """The reason the runs ahead are cancelled with, for ``interrupt`` or ``rollback``."""
    return ROLLED_BACK if on_conflict == "rollback" else "interrupted"


def note_claim(keys: dict[KeyId, _KeySlot], run: Run, *, holds: bool) -> None:
    """Record what a shared store decided for ``run``: it holds its key, or waits."""
    ident = key_id(run)
    assert ident is not None
    slot = keys.get(ident)
    if slot is None:
        slot = keys[ident] = _KeySlot()
    if holds:
        slot.current = run
        run._turn.set()
    else:
        slot.queue.append(run)


def take_turn(keys: dict[KeyId, _KeySlot], run: Run) -> None:
    """The shared store gave queued ``run`` its key: it is the slot's current run now."""
    ident = key_id(run)
    assert ident is not None
    slot = keys.get(ident)
    if slot is None:
        slot = keys[ident] = _KeySlot()
    if run in slot.queue:
        slot.queue.remove(run)
    slot.current = run
    run._turn.set()


def release_key(keys: dict[KeyId, _KeySlot], run: Run, shared: Container[str] = ()) -> None:
    """Free an ended run's key (or its place in the queue); promote the next queued run.

    Runs whose id is in ``shared`` wait for the shared store's word
    (:func:`take_turn`) and are not promoted here.
    """
    ident = key_id(run)
    slot = None if ident is None else keys.get(ident)
    if ident is None or slot is None:
        return
    if slot.current is run:
        slot.current = None
        if slot.queue and slot.queue[0].id not in shared:
            slot.current = slot.queue.popleft()
            slot.current._turn.set()
    elif run in slot.queue:
        slot.queue.remove(run)
    if slot.current is None and not slot.queue:
        del keys[ident]


def current_holder(
    keys: dict[KeyId, _KeySlot], key: str, owner: str | None, *, any_owner: bool = False
) -> Run | None:
    """The current run of (owner, key); with ``any_owner`` (the deprecated
    ``Hub.current(key)``), of whichever one owner holds ``key``.

    Raises:
        LookupError: ``any_owner`` and runs of several owners hold ``key``.
    """
    if not any_owner:
        slot = keys.get((owner, key))
        return None if slot is None else slot.current
    holders = [slot.current for (_, k), slot in keys.items() if k == key and slot.current]
    if len(holders) > 1:
        raise LookupError(f"runs of {len(holders)} owners hold key {key!r}: pass owner=")
    return holders[0] if holders else None
