"""Keys on a shared store, the hub's side: claim before registering, undo a
claim whose start failed, wait for a turn the store hands over.

Theory of operation
-------------------
With a shared store the store's key slot decides a keyed start for every
instance (``SharedStore.claim_key``, atomic there), so the hub asks it
*before* it registers the run, with the run's id already chosen. Anything
that then stops the start -- a hub limit, the hub closing, the caller's
cancellation, the store failing mid-call -- withdraws the claim (shielded,
under ``store_timeout``); a withdrawn claim that reaches the store late is
refused there. A store that cannot decide (unreachable) refuses the start
with :class:`KeysUnavailable`, or, with ``cross_instance_keys="best_effort"``,
lets the hub decide locally (``_keys.claim_key``).

A queued run waits in its drain task for the store to hand it the key
(``SharedStore.wait_key_turn``), whichever instance ran the run ahead; there
is no deadline after which it starts anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .._errors import AtCapacity, KeysUnavailable, RunConflict

if TYPE_CHECKING:
    from ..log._store import KeyClaim, SharedStore
    from ._config import HubConfig
    from ._hub_state import HubState
    from ._run import OnConflict, Run

logger = logging.getLogger("trio_streams")


async def claim_shared(
    store: SharedStore, config: HubConfig, run_id: str, key: str, owner: str | None, on_conflict: OnConflict
) -> KeyClaim | None:
    """Claim (owner, key) for ``run_id`` in the shared store.

    Returns:
        The claim (the run holds the key, or waits for it), or ``None``: the
        store cannot decide and the hub is ``best_effort`` (decide locally).

    Raises:
        RunConflict, AtCapacity: the store's decision.
        KeysUnavailable: the store cannot decide now (``strict``).

    Cancellation: the claim is withdrawn (shielded), then ``Cancelled`` propagates.
    """
    try:
        with trio.fail_after(config.store_timeout):
            claim = await store.claim_key(owner, key, run_id, on_conflict, config.max_queued_per_key)
    except BaseException as exc:
        # Cancelled or failed after the script may have run: undo it.
        await withdraw_claim(store, config, run_id, key, owner)
        if not isinstance(exc, Exception):
            raise
        if config.cross_instance_keys == "best_effort":
            logger.warning("key %r: the shared store cannot claim it (%s); checked here only", key, exc)
            return None
        logger.warning("key %r: the shared store cannot claim it (%s); start refused", key, exc)
        raise KeysUnavailable(
            "the shared store cannot claim the key now; retry later (unkeyed runs still start)"
        ) from None
    if claim.state == "held":
        assert claim.holder is not None
        raise RunConflict(key, claim.holder)
    if claim.state == "full":
        waiting = config.max_queued_per_key
        raise AtCapacity("max_queued_per_key", f"{waiting} runs already wait for key {key!r}")
    return claim


async def withdraw_claim(
    store: SharedStore, config: HubConfig, run_id: str, key: str, owner: str | None
) -> None:
    """Withdraw a claim whose start did not register (shielded, under ``store_timeout``)."""
    with trio.move_on_after(config.store_timeout, shield=True):
        try:
            await store.release_key(owner, key, run_id, withdraw=True)
        except Exception as exc:
            # The claim heals: a holder that was never saved is released
            # by the next claimer once its lease-long grace has passed.
            logger.warning("key %r: could not withdraw the claim of run %s (%s)", key, run_id, exc)


async def wait_for_turn(hub: HubState, run: Run, store: SharedStore) -> None:
    """Until the store hands queued ``run`` its key; then it is the key's current run here.

    Cancellation: the wait ends; the run's end then releases its place.
    """
    assert run.key is not None
    fence = await store.wait_key_turn(run.owner, run.key, run.id)
    logger.info("run %s: its turn for key=%s came (fence %d)", run.id, run.key, fence)
    hub.take_turn(run)
