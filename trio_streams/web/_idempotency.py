"""Idempotency-Key: the same caller and key get the same run back.

On a store of one process the keys live here, in memory. On a shared store
(Redis: several instances, or ``serve --workers N``) they live in the store
(``Store.idempotency_records``), so a retry that reaches another instance
gets the same run: the first request claims the key atomically (a pending
claim with a TTL), starts its run and records it; a concurrent duplicate
polls until the run is recorded (or the claim is released or expires).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._errors import ApiError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..log._store import IdempotencyRecords, Store

logger = logging.getLogger("trio_streams.web")


class _Entry:
    __slots__ = ("done", "fingerprint", "run_id")

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.run_id: str | None = None
        self.done = trio.Event()


class IdempotencyKeys:
    """Remembers which run each ``(caller, Idempotency-Key)`` started.

    Bounded: the oldest keys are forgotten beyond ``max_keys``. A key reused
    with a different request body is refused (422). A request with a key
    still being processed by a concurrent request waits for it; if that one
    fails, the second starts afresh. Keys live in this process, unless
    :meth:`share_through` gave a shared store: then in the store, for its
    TTL, and ``max_keys`` does not apply.

    Args:
        max_keys: keys kept in this process, at most.
        pending_ttl: on a shared store, how long a claim may stay pending
            (its request starting the run) before it expires -- and how long
            a concurrent duplicate waits for it before a 503 ``keys_unavailable``.
        poll_min, poll_max: a duplicate's first and longest wait between
            looks at a pending claim (doubling).
        cleanup_timeout: bound on recording or releasing a claim at the end.
    """

    MAX_KEY_LENGTH = 256

    def __init__(
        self,
        max_keys: int = 10_000,
        *,
        pending_ttl: float = 30.0,
        poll_min: float = 0.02,
        poll_max: float = 0.5,
        cleanup_timeout: float = 5.0,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if not 0 < poll_min <= poll_max <= pending_ttl:
            raise ValueError("need 0 < poll_min <= poll_max <= pending_ttl")
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str | None, str], _Entry] = OrderedDict()
        self._shared: IdempotencyRecords | None = None
        self.pending_ttl = pending_ttl
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._cleanup_timeout = cleanup_timeout

    @staticmethod
    def fingerprint(body: bytes) -> str:
        """What a replay's body must match: its sha256, in hex."""
        return hashlib.sha256(body).hexdigest()

    def share_through(self, store: Store) -> None:
        """Keep keys in ``store`` from now on, if it offers records every
        instance sees (``Store.idempotency_records``); else in this process."""
        self._shared = store.idempotency_records()

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def claim(self, caller: str | None, key: str, body: bytes) -> AsyncIterator[_Claim]:
        """Claim ``key`` for this request.

        Yields a claim whose ``run_id`` is set when an earlier request with
        this key already started a run (answer with it); otherwise the body
        must start a run and call ``claim.started(run_id)``. If the block
        raises before that, the key is released for a retry.

        Raises:
            ApiError: 400 for an over-long key, 422 when the key was used
                with a different body.

            ApiError: 503 ``keys_unavailable`` (shared store) when the store
                cannot decide now, or a concurrent request's claim stayed
                pending for ``pending_ttl``.

        Cancellation: waiting for a concurrent request with the same key is
        a checkpoint; cancelling it leaves the key to that request. On a
        shared store, recording or releasing the claim at the end is shielded
        (bounded by ``cleanup_timeout``).
        """
        if not key or len(key) > self.MAX_KEY_LENGTH:
            raise ApiError(
                400, "invalid_idempotency_key", f"Idempotency-Key must be 1-{self.MAX_KEY_LENGTH} chars"
            )
        fingerprint = self.fingerprint(body)
        if self._shared is not None:
            async with self._claim_shared(self._shared, caller, key, fingerprint) as claim:
                yield claim
            return
        slot = (caller, key)
        while True:
            entry = self._entries.get(slot)
            if entry is None:
                break
            if entry.fingerprint != fingerprint:
                raise _reused()
            await entry.done.wait()
            if entry.run_id is not None:
                self._entries.move_to_end(slot)
                yield _Claim(entry, existing=True)
                return
            # The earlier request failed and released the key: try again.
        entry = _Entry(fingerprint)
        self._entries[slot] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        try:
            yield _Claim(entry, existing=False)
        finally:
            if entry.run_id is None and self._entries.get(slot) is entry:
                del self._entries[slot]
            entry.done.set()

    @asynccontextmanager
    async def _claim_shared(
        self, records: IdempotencyRecords, caller: str | None, key: str, fingerprint: str
    ) -> AsyncIterator[_Claim]:
        """:meth:`claim` on a shared store (see the module docstring)."""
        token = secrets.token_hex(8)
        deadline = trio.current_time() + self.pending_ttl
        delay = self._poll_min
        while True:
            try:
                found = await records.claim(caller, key, fingerprint, token, self.pending_ttl)
            except BaseException as exc:
                # The claim may have been made (cancelled, or the reply lost):
                # undo it, or the key would wait out its pending TTL.
                await self._settle(records, caller, key, token, fingerprint, None)
                if isinstance(exc, Exception):  # the store cannot decide: never start a second run
                    raise _unavailable(f"the Idempotency-Key cannot be checked now ({exc})") from None
                raise
            if found is None:
                break
            if found.fingerprint != fingerprint:
                raise _reused()
            if found.run_id is not None:
                entry = _Entry(fingerprint)
                entry.run_id = found.run_id
                yield _Claim(entry, existing=True)
                return
            now = trio.current_time()
            if now >= deadline:
                raise _unavailable("another request with this Idempotency-Key is still starting its run")
            # A pending claim: its request is starting the run. Look again soon;
            # it ends recorded, released (a failure) or expired.
            await trio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, self._poll_max)
        entry = _Entry(fingerprint)
        try:
            yield _Claim(entry, existing=False)
        finally:
            await self._settle(records, caller, key, token, fingerprint, entry.run_id)

    async def _settle(
        self,
        records: IdempotencyRecords,
        caller: str | None,
        key: str,
        token: str,
        fingerprint: str,
        run_id: str | None,
    ) -> None:
        """Record ``run_id`` under the pending claim ``token``, or (``None``)
        release it. Never raises: a claim left pending expires on its own.

        Cancellation: shielded, bounded by ``cleanup_timeout``.
        """
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._cleanup_timeout
            try:
                if run_id is None:
                    await records.release(caller, key, token)
                elif not await records.record(caller, key, token, fingerprint, run_id):
                    logger.warning("an Idempotency-Key claim expired before run %s", run_id)
            except Exception as exc:
                logger.warning("cannot record or release an Idempotency-Key claim: %s", exc)
        if scope.cancelled_caught:
            logger.warning("recording or releasing an Idempotency-Key claim timed out")


def _reused() -> ApiError:
    return ApiError(
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request body",
    )


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "keys_unavailable", message, headers={"Retry-After": "1"})


class _Claim:
    __slots__ = ("_entry", "existing")

    def __init__(self, entry: _Entry, *, existing: bool) -> None:
        self._entry = entry
        self.existing = existing

    @property
    def run_id(self) -> str | None:
        """The run an earlier request started with this key, if any."""
        return self._entry.run_id if self.existing else None

    def started(self, run_id: str) -> None:
        """Record the run this request started."""
        self._entry.run_id = run_id
