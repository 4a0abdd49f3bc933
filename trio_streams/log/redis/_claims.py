"""Run keys across instances: one holder per (owner, key), claimed atomically in Redis.

Theory of operation
-------------------
Each (owner, key) has a *key slot* -- a hash (holder, fencing counter, when
the holder got it) and a FIFO list of waiting runs -- under one hash tag of
its own (``_redis_keys.py``), so the Lua scripts of ``_redis_scripts.py``
decide on it atomically, on a single Redis or a Cluster alike (a run's own
keys live in another slot, which is why the run is registered separately).

- Claim (``CLAIM_KEY``): a free key goes to the run (a new fence); else
  ``reject`` is refused with the holder's id, ``enqueue`` and ``interrupt``
  join the FIFO (bounded), and ``interrupt`` gets the runs ahead to cancel,
  which the claimer asks through the ordinary cancel path (intent in the
  run's meta hash, message on the control stream). ``rollback`` is
  ``interrupt`` with the reason ``rolled_back``: each such run's owner deletes
  it (``RedisStore.finish_run``) before it releases the key.
- Release (``RELEASE_KEY``): the holder's end, once stored, hands the key to
  the queue's head in the same step; a waiting run leaves the queue. The
  releasing instance wakes the new holder: directly if it waits here, else
  with a ``turn`` message on the control stream.
- Waiting (:meth:`KeyClaims.wait_turn`): a queued run waits for that
  wake-up, and every ``lease / 6`` (a trio deadline, not a busy loop) asks
  the slot where it stands -- so a lost message (an instance that died
  between release and message) only delays the turn.
- Healing: a holder that no longer runs is released by whoever notices. Its
  meta hash says it finished (its own release failed or was cut short): it is
  released. Its owner's lease is gone: it is claimed ``dead`` first (the
  usual ``CLAIM_DEAD``, which fences the old owner), then released. Neither
  meta nor lease, a lease after the claim (its instance died before saving
  the run): it gets a tombstone (fenced: a late save is refused), then is
  released. Never while the holder may still run: that is what prevents two
  live runs for one key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .._run_info import ROLLED_BACK, RunStatus
from .._store import KeyClaim
from ._scripts import CLAIM_KEY, KEY_TURN, REFRESH_KEY, RELEASE_KEY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._run_info import OnConflict
    from ._client import Client
    from ._keys import RedisKeys
    from ._writer import Ttls

logger = logging.getLogger("trio_streams.redis")

_FINISHED = frozenset(status.value for status in RunStatus if status.finished)
#: The reason field of a rolled-back run's meta hash (JSON).
_ROLLED_BACK_JSON = f'"{ROLLED_BACK}"'


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """A run of this instance with a claim in Redis (holding or queued)."""

    owner: str | None
    key: str


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class KeyClaims:
    """The key slots of one prefix, seen from one instance (see the module docstring).

    Args:
        client: returns the entered coredis client.
        keys: the key layout.
        ttls: key lifetimes (the slot lives ``ttls.running``; waiters ask
            every ``ttls.renew_every``).
        claim_dead: ``RemoteRuns.claim_dead`` (mark a run dead if its lease expired).
        lease_gone: ``RemoteRuns.lease_gone`` (the lease's grace has passed).
        request_cancel: ``RemoteRuns.request_cancel``.
        announce_turn: ``RemoteRuns.announce_turn`` (a turn message on the control stream).
    """

    def __init__(
        self,
        client: Callable[[], Client],
        keys: RedisKeys,
        ttls: Ttls,
        *,
        claim_dead: Callable[[str, bool], Awaitable[int]],
        lease_gone: Callable[[str, bool, Any], bool],
        request_cancel: Callable[[str, str], Awaitable[None]],
        announce_turn: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client = client
        self._keys = keys
        self._ttls = ttls
        self._claim_dead = claim_dead
        self._lease_gone = lease_gone
        self._request_cancel = request_cancel
        self._announce_turn = announce_turn
        self._scripts: dict[str, Any] = {}
        #: Runs of this instance with a claim (holding or queued): their
        #: slots are refreshed by lease renewal, their release is sent at their end.
        self.claims: dict[str, ClaimRef] = {}
        # run id -> the event its waiter parks on (set by a turn message or a local release)
        self._turns: dict[str, trio.Event] = {}
        # rolled-back holder -> when it was first seen here still holding its key
        # (bounded: dropped when overdue, or as stale after two leases).
        self._rolled_back_seen: dict[str, float] = {}

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._client().register_script(source)
        return script

    def _slot(self, owner: str | None, key: str) -> list[str]:
        return [self._keys.key_slot(owner, key), self._keys.key_queue(owner, key)]

    def _slot_and_gone(self, owner: str | None, key: str, run_id: str) -> list[str]:
        return [*self._slot(owner, key), self._keys.key_gone(owner, key, run_id)]

    # -- claiming -----------------------------------------------------------------------

    async def claim(
        self, owner: str | None, key: str, run_id: str, on_conflict: OnConflict, max_queued: int
    ) -> KeyClaim:
        """See :meth:`SharedStore.claim_key`."""
        claim, age = await self._claim_once(owner, key, run_id, on_conflict, max_queued)
        # A holder that no longer runs (its release was lost) is released
        # here, and the claim asked again: a finished run never blocks a key.
        if claim.holder is not None and await self._heal(owner, key, claim.holder, age):
            claim, age = await self._claim_once(owner, key, run_id, on_conflict, max_queued)
        reason = ROLLED_BACK if on_conflict == "rollback" else "interrupted"
        for other in claim.interrupt:
            await self._request_cancel(other, reason)
        if claim.state in ("holds", "queued"):
            self.claims[run_id] = ClaimRef(owner, key)
        return claim

    async def _claim_once(
        self, owner: str | None, key: str, run_id: str, on_conflict: OnConflict, max_queued: int
    ) -> tuple[KeyClaim, int]:
        """The claim script's answer, and the holder's age in ms (how long it has held the key)."""
        reply = await self._script(CLAIM_KEY)(
            keys=self._slot_and_gone(owner, key, run_id),
            args=[run_id, _ms(self._ttls.running), on_conflict, max_queued],
        )
        code = int(reply[0])
        if code == 1:
            return KeyClaim("holds", fence=int(reply[1])), 0
        if code == -2:
            raise RuntimeError(f"the claim of run {run_id} was withdrawn")
        if code == -1:
            return KeyClaim("full"), 0
        holder, age = str(reply[1]), int(reply[2])
        if code == 0:
            return KeyClaim("held", holder), age
        return KeyClaim("queued", holder, interrupt=tuple(str(r) for r in reply[4:])), age

    # -- waiting for a turn ----------------------------------------------------------------

    async def wait_turn(self, owner: str | None, key: str, run_id: str) -> int:
        """See :meth:`SharedStore.wait_key_turn`."""
        self.claims.setdefault(run_id, ClaimRef(owner, key))
        event = self._turns[run_id] = trio.Event()
        try:
            while True:
                try:
                    fence = await self._where(owner, key, run_id)
                except Exception as exc:
                    logger.warning("run %s: cannot ask for its key's turn (%s); retrying", run_id, exc)
                    fence = 0
                if fence > 0:
                    return fence
                if fence < 0:
                    continue  # healed: ask again at once
                with trio.move_on_after(self._ttls.renew_every):
                    await event.wait()
                event = self._turns[run_id] = trio.Event()
        finally:
            del self._turns[run_id]

    async def _where(self, owner: str | None, key: str, run_id: str) -> int:
        """The fence if ``run_id`` holds its key; 0 if it waits; -1 if a dead
        holder was just released (ask again)."""
        slot, ttl = self._slot(owner, key), _ms(self._ttls.running)
        reply = await self._script(KEY_TURN)(keys=slot, args=[run_id, ttl])
        code = int(reply[0])
        if code == 1:
            return int(reply[1])
        if code == -1:
            # The claim is gone (its slot expired, or Redis lost it): queue
            # again, at the end (the FIFO's bound does not apply: it was admitted).
            logger.warning("run %s: its key claim was gone; queued again", run_id)
            claim, _age = await self._claim_once(owner, key, run_id, "enqueue", 2**31)
            return claim.fence if claim.state == "holds" else 0
        holder = str(reply[1])
        if holder and await self._heal(owner, key, holder, int(reply[2])):
            return -1
        return 0

    def wake(self, run_id: str) -> None:
        """The run's turn may have come (a turn message, a local release)."""
        event = self._turns.get(run_id)
        if event is not None:
            event.set()

    # -- releasing ------------------------------------------------------------------------

    async def release(self, owner: str | None, key: str, run_id: str, *, withdraw: bool = False) -> None:
        """See :meth:`SharedStore.release_key`: release, promote, wake the next run.

        ``withdraw``: the claim's answer never came (a start cancelled or
        failed mid-claim): a claim that arrives after this release is refused.
        """
        slot, ttl = self._slot_and_gone(owner, key, run_id), _ms(self._ttls.running)
        # A claim later than a lease is healed anyway (never saved: tombstoned).
        marker = _ms(self._ttls.lease) if withdraw else 0
        reply = await self._script(RELEASE_KEY)(keys=slot, args=[run_id, ttl, marker])
        self.claims.pop(run_id, None)
        if int(reply[0]) == 1 and len(reply) > 1:
            promoted = str(reply[1])
            logger.info("key handed from run %s to run %s (fence %s)", run_id, promoted, reply[2])
            if promoted in self._turns:
                self.wake(promoted)  # it waits here
            else:
                await self._announce_turn(promoted)

    async def _heal(self, owner: str | None, key: str, holder: str, age_ms: int) -> bool:
        """Release ``holder`` if it no longer runs anywhere; True if it did."""
        keys = self._keys
        async with self._client().pipeline(transaction=False) as pipe:
            meta_reply = pipe.hmget(keys.meta(holder), ["status", "lease_ms", "reason"])
            lease_reply = pipe.exists([keys.lease(holder)])
        (status, lease_ms, reason), lease = await meta_reply, bool(await lease_reply)
        if status == "cancelled" and reason == _ROLLED_BACK_JSON and not self._overdue(holder):
            # Rolled back: its owner deletes it, then releases its key.
            return False
        if status not in _FINISHED:
            if status is None:
                # Never saved: its instance died between the claim and the save
                # (or is that slow: the tombstone then refuses its late save).
                if lease or age_ms < _ms(self._ttls.lease):
                    return False
                await self._claim_dead(holder, True)
            elif self._lease_gone(holder, lease, lease_ms):
                await self._claim_dead(holder, False)
            else:
                return False
            # Dead now (by us or by another instance), or alive after all
            # (its owner renewed the lease just in time): look again.
            status = await self._client().hget(keys.meta(holder), "status")
            if status not in _FINISHED:
                return False
            logger.warning("key %r: its holder, run %s, was declared dead; the key is released", key, holder)
        else:
            # Usually its own release is just on its way (its end is stored
            # first): releasing twice is harmless.
            logger.info(
                "key %r: its holder, run %s, has ended (%s); the key is released", key, holder, status
            )
        await self.release(owner, key, holder)
        return True

    def _overdue(self, holder: str) -> bool:
        """True once a rolled-back ``holder`` has been seen holding its key for
        a whole lease here: its owner died between storing its end and deleting
        it (or is that slow), so the key is healed as for any finished holder
        (the run may then stay undeleted)."""
        now = trio.current_time()
        lease = self._ttls.lease
        # Older entries are stale (their key moved on: an overdue one is dropped at one lease).
        for stale in [h for h, t in self._rolled_back_seen.items() if now - t > 2 * lease]:
            del self._rolled_back_seen[stale]
        seen = self._rolled_back_seen.setdefault(holder, now)
        if now - seen < lease:
            return False
        del self._rolled_back_seen[holder]
        return True

    # -- the owner's upkeep ------------------------------------------------------------------

    def queue_refresh(self, pipe: Any, run_id: str) -> Any:
        """Queue, on ``pipe``, the refresh of a holding run's slot (lease
        renewal); the reply is 0 if it no longer holds its key."""
        ref = self.claims.get(run_id)
        if ref is None:
            return None
        return self._script(REFRESH_KEY)(
            keys=self._slot(ref.owner, ref.key), args=[run_id, _ms(self._ttls.running)], client=pipe
        )

    async def holder_of(self, owner: str | None, key: str) -> str | None:
        """See :meth:`SharedStore.key_holder_of`."""
        holder = await self._client().hget(self._keys.key_slot(owner, key), "run")
        return None if holder is None else str(holder)
