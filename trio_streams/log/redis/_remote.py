"""What makes a RedisStore shared between instances: following runs owned
elsewhere, cancelling them, and declaring owners dead.

Theory of operation
-------------------
- Follow: a tail reader catches up with XRANGE, then waits with ``XREAD
  BLOCK`` on the run's stream -- on a single Redis in the one read all of
  this instance's live tails share (:mod:`._tails`), on a Cluster one per
  followed run; the hub fans what it reads out to local subscribers. When a
  block times out (the run was idle that long) it looks at the run: a live run whose lease is gone is
  claimed ``dead`` (Lua, atomic: exactly one instance wins), which appends
  the ``dead`` event the reader then reads like any other.
- Cancel: a durable intent (``cancel`` field of the meta hash) plus a
  message on the control stream (which also carries key turns:
  ``_redis_claims.py``). Every instance reads the control stream and
  cancels the runs it owns at once; the owner's lease renewal also reads the
  intent of each of its runs, so a cancel sent while it was disconnected is
  not lost.
- Reap: every instance scans the running index ``RENEWALS_PER_LEASE`` times
  per lease and claims runs whose lease expired, so a dead owner's runs end
  even with no subscriber anywhere.
- Grace and fencing: a run is claimed only once its lease key has been seen
  missing for ``CLAIM_GRACE`` of the owner's lease (the key itself lives the
  rest, so a run is claimed within one lease of its owner's last renewal; a
  live owner re-creates a key that expired while Redis was down), and the owner's
  renewal, its appends and its metadata writes are scripts that refuse a run
  already declared ``dead``: claim and renewal exclude each other, and a
  stale owner can never write past the dead event.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import trio
from coredis.tokens import PureToken

from .._events import encode_json
from ._codec import decode_entries, resume_start
from ._scripts import CLAIM_DEAD
from ._tails import Tail, TailMux
from ._writer import CLAIM_GRACE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._events import Event
    from ._client import Client
    from ._keys import RedisKeys
    from ._writer import Ttls

logger = logging.getLogger("trio_streams.redis")

#: How long one XREAD BLOCK waits before the reader looks at the run's state.
BLOCK_SECONDS = 1.0
#: Control messages kept (approximately) on the control stream.
CONTROL_MAXLEN = 10_000

OWNER_LOST = {"code": "owner_lost", "message": "the instance running it stopped renewing its lease"}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RemoteRuns:
    """Cross-instance operations on one prefix (see the module docstring)."""

    def __init__(
        self,
        client: Callable[[], Client],
        keys: RedisKeys,
        ttls: Ttls,
        *,
        instance: str,
        block_seconds: float = BLOCK_SECONDS,
    ) -> None:
        self._client = client
        self._keys = keys
        self._ttls = ttls
        self._instance = instance
        self._block = block_seconds
        self._cancel_handler: Callable[[str, str], None] | None = None
        #: Called with a run id when a key turn message arrives (``KeyClaims.wake``).
        self.turn_handler: Callable[[str], None] | None = None
        #: Releases a key of a run declared dead (``KeyClaims.release``).
        self.release_key: Callable[[str | None, str, str], Awaitable[None]] | None = None
        # run id -> trio time its lease was first seen missing
        self._missing_since: dict[str, float] = {}
        self.claimed_dead = 0
        #: The shared read of live tails (a single Redis; ``None``: one XREAD per run).
        self.tails: TailMux | None = None

    def set_cancel_handler(self, handler: Callable[[str, str], None]) -> None:
        self._cancel_handler = handler

    def cancel_local(self, run_id: str, reason: str) -> None:
        if self._cancel_handler is not None:
            self._cancel_handler(run_id, reason)

    # -- following ----------------------------------------------------------------------

    async def follow(self, run_id: str, after: int, deliver: Callable[[list[Event]], None]) -> bool:
        """Deliver the run's stored events after ``after`` as they arrive, in
        order, until its terminal event; return True then, or False if the run
        ended without one being stored (its events expired).

        Redis errors are retried with backoff (logged), never raised.

        Cancellation: the usual way to stop following a live run.
        """
        key = self._keys.events(run_id)
        seq = after
        last_id: str | None = None
        delay = 0.05
        while True:
            try:
                if last_id is None:
                    # Catch up by range (the first entry holds after + 1).
                    entries = await self._client().xrange(key, start=resume_start(seq), count=64)
                    if not entries:
                        last_id = f"{seq}-{seq}"
                        continue
                elif self.tails is not None and self.tails.accepts(key):
                    # Caught up: the live tail is read with every other run's (one XREAD).
                    return await self._follow_shared(self.tails, Tail(key, last_id, seq, deliver), run_id)
                else:
                    reply = await self._client().xread({key: last_id}, count=64, block=_ms(self._block))
                    entries = reply[key] if reply else ()
                delay = 0.05
            except Exception as exc:
                logger.warning("following run %s: %s; retrying in %.2fs", run_id, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if entries:
                events = decode_entries(((str(e.identifier), e.field_values) for e in entries), seq)  # type: ignore[misc]
                last_id = str(entries[-1].identifier)
                if events:
                    seq = events[-1].seq
                    deliver(events)
                    if events[-1].terminal:
                        return True
                continue
            if last_id is not None and await self._check_ended(run_id, seq):
                return False

    async def _follow_shared(self, tails: TailMux, tail: Tail, run_id: str) -> bool:
        """:meth:`follow` from ``tail`` on, read by ``tails`` with the other runs."""
        with tails.register(tail):
            await self._wake(tails, run_id)
            while True:
                with trio.move_on_after(self._block) as idle:
                    await tail.activity.wait()
                tail.activity = trio.Event()  # no checkpoint since the wait: nothing set is lost
                if tail.error is not None:
                    raise tail.error
                if tail.ended:
                    return True
                if idle.cancelled_caught:
                    # Paused while it looks: a dead event it appends (claiming the run) is
                    # delivered after the run left the indexes, as on its own XREAD.
                    tail.paused = True
                    try:
                        if await self._check_ended(run_id, tail.seq):
                            return False
                    finally:
                        tail.paused = False
                    await self._wake(tails, run_id)

    async def _wake(self, tails: TailMux, run_id: str) -> None:
        try:
            await tails.wake()
        except Exception as exc:  # the read picks it up anyway, within one block
            logger.warning("following run %s: %s (waking the shared read)", run_id, exc)

    async def _check_ended(self, run_id: str, seq: int) -> bool:
        """After an idle block: claim the run if its owner is gone; True if it
        is over with nothing more to read."""
        keys = self._keys
        try:
            async with self._client().pipeline(transaction=False) as pipe:
                meta_reply = pipe.hmget(keys.meta(run_id), ["status", "lease_ms"])
                lease_reply = pipe.exists([keys.lease(run_id)])
            (status, lease_ms), lease = await meta_reply, await lease_reply
            if status is None:
                return True  # the run's meta expired: nothing will ever come
            if status in ("running", "queued"):
                if self.lease_gone(run_id, bool(lease), lease_ms):
                    await self.claim_dead(run_id)
                return False
            # Finished: anything after seq still to read?
            entries = await self._client().xrange(keys.events(run_id), start=resume_start(seq), count=1)
            return not entries
        except Exception as exc:
            logger.warning("checking run %s: %s", run_id, exc)
            return False

    # -- dead owners --------------------------------------------------------------------

    def lease_gone(self, run_id: str, exists: bool, lease_ms: Any) -> bool:
        """True once the run's lease has been seen missing for ``CLAIM_GRACE``
        of its TTL (the owner's TTL, from the meta hash; else ours)."""
        now = trio.current_time()
        if exists:
            self._missing_since.pop(run_id, None)
            return False
        try:
            lease = int(lease_ms) / 1000
        except (TypeError, ValueError):
            lease = self._ttls.lease
        since = self._missing_since.setdefault(run_id, now)
        return now - since >= lease * CLAIM_GRACE

    async def claim_dead(self, run_id: str, tombstone: bool = False) -> int:
        """Mark the run ``dead`` if it is live and its lease expired; return
        the dead event's seq, or 0 if another instance did, or it is alive.

        With ``tombstone``, a run with no meta hash at all (never saved)
        gets a tombstone (-1): see ``CLAIM_DEAD``."""
        keys = self._keys
        ttls = self._ttls
        script = self._client().register_script(CLAIM_DEAD)
        seq = int(
            await script(
                keys=[keys.meta(run_id), keys.lease(run_id), keys.events(run_id)],
                args=[
                    repr(time.time()),
                    encode_json(OWNER_LOST),
                    _ms(ttls.finished),
                    _ms(ttls.events_finished),
                    "1" if tombstone else "0",
                ],
            )
        )
        self._missing_since.pop(run_id, None)
        if seq < 0:
            logger.warning("run %s: claimed a key, never saved; tombstoned by %s", run_id, self._instance)
        elif seq:
            self.claimed_dead += 1
            logger.warning(
                "run %s: owner's lease expired; marked dead (seq %d) by %s", run_id, seq, self._instance
            )
            await self._unindex(run_id)
        return seq

    async def _unindex(self, run_id: str) -> None:
        keys = self._keys
        fields = await self._client().hmget(keys.meta(run_id), ["owner", "key"])
        owner_json, key_json = fields[0], fields[1]
        await self._client().zrem(keys.running, [run_id])
        owner = None if owner_json is None else _loads_str(owner_json)
        if owner is not None:
            await self._client().zrem(keys.owner_live(owner), [run_id])
        key = None if key_json is None else _loads_str(key_json)
        if key is not None and self.release_key is not None:
            # Fenced: the run is dead, so its key passes to the next run.
            await self.release_key(owner, key, run_id)

    async def reap(self) -> None:
        """Forever: claim runs of the running index whose lease expired."""
        keys = self._keys
        while True:
            await trio.sleep(self._ttls.renew_every)
            try:
                run_ids = [str(m) for m in await self._client().zrange(keys.running, 0, 999)]
                if not run_ids:
                    continue
                async with self._client().pipeline(transaction=False) as pipe:
                    leases = [
                        (pipe.exists([keys.lease(run_id)]), pipe.hget(keys.meta(run_id), "lease_ms"))
                        for run_id in run_ids
                    ]
                for run_id, (lease, lease_ms) in zip(run_ids, leases, strict=True):
                    if self.lease_gone(run_id, bool(await lease), await lease_ms):
                        await self.claim_dead(run_id)
                for run_id in set(self._missing_since) - set(run_ids):
                    del self._missing_since[run_id]
            except Exception as exc:
                logger.warning("reaping expired leases: %s", exc)

    # -- cancelling ---------------------------------------------------------------------

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Record the intent in the run's meta hash, then tell every instance."""
        keys = self._keys
        client = self._client()
        await client.hset(keys.meta(run_id), {"cancel": reason})
        await client.xadd(
            keys.control,
            {"op": "cancel", "run": run_id, "reason": reason},
            trim_strategy=PureToken.MAXLEN,
            threshold=CONTROL_MAXLEN,
            trim_operator=PureToken.APPROXIMATELY,
        )

    async def watch_control(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: read the control stream; cancel the runs this instance owns.

        Messages sent before the reader found the stream's end are not lost:
        their intent is in the meta hash, which lease renewal reads.
        """
        key = self._keys.control
        last_id: str | None = None
        delay = 0.05
        task_status.started()
        while True:
            try:
                if last_id is None:
                    top: Any = await self._client().xrevrange(key, count=1)
                    last_id = str(top[0].identifier) if top else "0-0"
                reply = await self._client().xread({key: last_id}, count=256, block=_ms(self._block))
                delay = 0.05
            except Exception as exc:
                logger.warning("reading the control stream: %s; retrying in %.2fs", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for entry in (reply or {}).get(key, ()):
                last_id = str(entry.identifier)
                fields = entry.field_values
                op = fields.get("op")
                if op == "cancel":
                    self.cancel_local(str(fields.get("run")), str(fields.get("reason") or "cancelled"))
                elif op == "turn" and self.turn_handler is not None:
                    self.turn_handler(str(fields.get("run")))

    async def announce_turn(self, run_id: str) -> None:
        """Tell every instance that ``run_id`` holds its key now (its waiter wakes)."""
        await self._client().xadd(
            self._keys.control,
            {"op": "turn", "run": run_id},
            trim_strategy=PureToken.MAXLEN,
            threshold=CONTROL_MAXLEN,
            trim_operator=PureToken.APPROXIMATELY,
        )


def _loads_str(text: str) -> str | None:
    value = json.loads(text)
    return value if isinstance(value, str) else None
