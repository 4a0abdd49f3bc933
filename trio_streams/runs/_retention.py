"""Retention: how long a run stays in the hub's memory, and abandoned runs.

Theory of operation
-------------------
A finished run stays in memory (for replays and :meth:`Hub.get`) while it
has subscribers, and ``grace_period`` seconds after the last one leaves; then
it is evicted (the store still has it). A live ``on_disconnect="cancel"`` run
is cancelled when its last subscriber has been gone for ``disconnect_grace``.
Each run holds at most one such timer (``run._timer``, on the hub's
:class:`TimerQueue`); a subscriber arriving cancels it.

When the hub holds ``max_runs`` runs, ``start`` makes room by evicting the
oldest finished run early (if ``evict_finished_when_full``). When the memory
budget is short, it evicts the oldest finished runs (``reclaim_oldest``,
called by the budget) whatever ``evict_finished_when_full`` says: memory is
the harder limit.

Evicting gives the run's memory back: its log is released at once, or, if
subscribers still read it, shrunk to its terminal event (they read the rest
from the store, or get a true ``Gap`` for what the store no longer has) and
released when the last of them leaves.

They work on the hub's :class:`~._hub_state.HubState` (its runs change
only through its methods), never on the hub itself.

All synchronous: no checkpoint.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._errors import AtCapacity

if TYPE_CHECKING:
    from ._hub_state import HubState
    from ._run import Run

logger = logging.getLogger("trio_streams")


#: How soon eviction is tried again for a finished run whose log still holds
#: events the store has not made durable (Redis down past ``store_timeout``):
#: the log keeps them, counted, until the store has them.
PENDING_RETRY = 1.0


def arm_eviction(hub: HubState, run: Run, delay: float | None = None) -> None:
    delay = hub.config.grace_period if delay is None else delay
    if delay == 0:
        if not run.log.pending_nbytes:
            evict_run(hub, run)
            return
        delay = PENDING_RETRY

    def evict() -> None:
        run._timer = None
        if run._subscribers:
            return
        if run.log.pending_nbytes:
            arm_eviction(hub, run, min(hub.config.grace_period, PENDING_RETRY) or PENDING_RETRY)
        else:
            evict_run(hub, run)

    run._timer = hub.timers.call_after(delay, evict)


def make_room(hub: HubState) -> None:
    """Let ``start`` add a run: evict the oldest finished one if the hub is full.

    Raises:
        AtCapacity: ``max_runs`` live runs, or finished ones may not be evicted early.
    """
    if len(hub.runs) < hub.config.max_runs:
        return
    oldest = hub.oldest_finished()
    if hub.config.evict_finished_when_full and oldest is not None:
        logger.info(
            "run %s evicted early: max_runs=%d reached",
            oldest.id,
            hub.config.max_runs,
            extra={"run_id": oldest.id, "owner": oldest.owner, "event": "evicted"},
        )
        evict_run(hub, oldest)
        return
    raise AtCapacity("max_runs", f"the hub holds its maximum of {hub.config.max_runs} runs")


def reclaim_oldest(hub: HubState) -> bool:
    """Evict the oldest finished run, for the memory budget; False if there is none.

    Runs whose logs still keep events the store has not made durable are
    skipped: evicting them would not free those (the store's writer holds
    them too) and would lose them for readers until the store has them.
    """
    for run in hub.finished.values():
        if not run.log.pending_nbytes:  # else it keeps what the store lacks
            logger.info(
                "run %s evicted early: the memory budget is short",
                run.id,
                extra={"run_id": run.id, "owner": run.owner, "event": "evicted"},
            )
            evict_run(hub, run)
            return True
    return False


def evict_run(hub: HubState, run: Run) -> None:
    if hub.forget(run):
        if run._timer is not None:
            run._timer.cancel()
            run._timer = None
        if run._subscribers:
            run.log.shrink()
        else:
            run.log.discard()
        logger.debug("run %s evicted from memory", run.id)


def attach(run: Run) -> None:
    run._subscribers += 1
    if run._timer is not None:
        run._timer.cancel()
        run._timer = None


def detach(hub: HubState, run: Run) -> None:
    run._subscribers -= 1
    if run._subscribers:
        return
    if run._finished.is_set():
        if hub.holds(run):
            arm_eviction(hub, run)
        else:
            run.log.discard()  # evicted while read: now nobody holds it
    elif run.on_disconnect == "cancel" and not run._closed:
        grace = hub.config.disconnect_grace
        if grace == 0:
            run._request_cancel("disconnected")
            return

        def cancel_abandoned() -> None:
            run._timer = None
            if not run._subscribers:
                logger.info(
                    "run %s: no subscriber came back within %ss",
                    run.id,
                    grace,
                    extra={"run_id": run.id, "owner": run.owner, "event": "abandoned"},
                )
                run._request_cancel("disconnected")

        run._timer = hub.timers.call_after(grace, cancel_abandoned)
