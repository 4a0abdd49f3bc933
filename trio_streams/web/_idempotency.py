"""Idempotency-Key: the same caller and key get the same run back."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._errors import ApiError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class _Entry:
    __slots__ = ("done", "fingerprint", "run_id")

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.run_id: str | None = None
        self.done = trio.Event()


class IdempotencyKeys:
    """Remembers which run each ``(caller, Idempotency-Key)`` started.

    Bounded: the oldest keys are forgotten beyond ``max_keys``. A key reused
    with a different request body is refused (422), as is a key still being
    processed by a concurrent request that fails: the second request then
    starts afresh. Keys live in this process only.
    """

    MAX_KEY_LENGTH = 256

    def __init__(self, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str | None, str], _Entry] = OrderedDict()

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

        Cancellation: waiting for a concurrent request with the same key is
        a checkpoint; cancelling it leaves the key to that request.
        """
        if not key or len(key) > self.MAX_KEY_LENGTH:
            raise ApiError(
                400, "invalid_idempotency_key", f"Idempotency-Key must be 1-{self.MAX_KEY_LENGTH} chars"
            )
        fingerprint = hashlib.sha256(body).hexdigest()
        slot = (caller, key)
        while True:
            entry = self._entries.get(slot)
            if entry is None:
                break
            if entry.fingerprint != fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                )
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
