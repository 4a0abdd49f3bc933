"""``RedisSubscriptionState``: Durable Streams subscriptions in Redis, shared by every instance.

The :class:`~.._sub_store.SubscriptionState` of a server whose streams are
in a :class:`~._store.RedisDurableStore`, on the store's own connection (its
Redis, key prefix, health and 503s). Layout and scripts: :mod:`._sub_layout`.

An update loads the subscription and Redis ``TIME`` (:data:`~._sub_layout.LOAD`),
applies the change in Python (the one implementation of the rules), and
saves what it changed only if the version it loaded is still the stored one
(:data:`~._sub_layout.SAVE`); otherwise it loads and applies again. So every
change of one subscription is atomic across instances: a wake is claimed
once, a stale token is fenced wherever it is presented. A change that
changed nothing is not saved. ``now`` is Redis time (seconds), so leases
are one clock for every instance; :meth:`RedisSubscriptionState.local_deadline`
turns one into this instance's trio time.

Other instances learn of configuration and membership changes through
:meth:`RedisSubscriptionState.announce` / :meth:`RedisSubscriptionState.follow`
(a capped Redis stream read with ``XREAD BLOCK``, as the store's notifications),
and of leases to sweep through the lease index (a sorted set).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

import coredis
import trio
from coredis.tokens import PureToken

from .._errors import DurableStreamError
from .._sub_store import not_found
from ._sub_layout import (
    CHANGES_MAXLEN,
    DROP_LEASE,
    DUE,
    LOAD,
    SAVE,
    SubKeys,
    changes,
    decode,
    encode_links,
    encode_state,
    key_of,
    member,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._sub_index import SubscriptionKey as Key
    from .._sub_state import Subscription
    from ._connection import Client
    from ._store import RedisDurableStore

T = TypeVar("T")

logger = logging.getLogger("trio_streams.durable.subscriptions")

#: Loads and saves per update before giving up (503): only endless contention gets there.
MAX_ATTEMPTS = 100
#: One XREAD BLOCK of the change feed waits this long (ms).
BLOCK_MS = 5_000
#: The follower's client's least reply timeout (it blocks for BLOCK_MS).
FOLLOW_TIMEOUT = 10.0


class RedisSubscriptionState:
    """Subscriptions in the Redis of ``store`` (see the module docstring).

    ``store`` must be connected (``connect`` or ``attach``) while the registry serves.
    """

    shared = True

    def __init__(self, store: RedisDurableStore) -> None:
        self._store = store
        self.instance = secrets.token_hex(8)
        self._scripts: dict[str, Any] = {}
        self._scripts_of: object = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def _keys(self) -> SubKeys:
        return SubKeys(self._store.prefix)

    def _client(self) -> Client:
        return self._store._require()

    def _script(self, source: str) -> Any:
        client = self._client()
        if self._scripts_of is not client:  # (a new connection: scripts registered anew)
            self._scripts, self._scripts_of = {}, client
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)
        return script

    async def _load(self, key: Key) -> tuple[Subscription | None, float, str]:
        """The subscription (``None``: none), Redis time, and the stored version."""
        keys = self._keys
        reply = await self._script(LOAD)(keys=[keys.state(key), keys.links(key)], args=[])
        now = int(reply[0]) + int(reply[1]) / 1_000_000
        if len(reply) < 4:
            return None, now, ""
        state = _pairs(reply[2])
        version = state.get(b"v", b"").decode()
        return decode(key, state, _pairs(reply[3])), now, version

    async def _save(self, key: Key, version: str, spec: dict[str, list[str]]) -> bool:
        keys = self._keys
        saved = await self._script(SAVE)(
            keys=[keys.state(key), keys.links(key)], args=[version, json.dumps(spec, separators=(",", ":"))]
        )
        return bool(saved)

    # -- the state ---------------------------------------------------------------------------

    async def create(self, subscription: Subscription) -> tuple[Subscription, bool]:
        key = (subscription.owner, subscription.id)
        with self._store._operation():
            # The member first: a create cut short leaves a member without state (skipped).
            await self._client().sadd(self._keys.all, [member(key)])
            for _ in range(MAX_ATTEMPTS):
                spec = changes(({}, {}), (encode_state(subscription), encode_links(subscription)))
                assert spec is not None
                if await self._save(key, "", spec):
                    return subscription, True
                existing, _, _ = await self._load(key)
                if existing is not None:
                    return existing, False
        raise _contention(key)

    async def get(self, key: Key) -> Subscription | None:
        with self._store._operation():
            subscription, _, _ = await self._load(key)
        return subscription

    async def delete(self, key: Key) -> Subscription | None:
        keys = self._keys
        with self._store._operation():
            subscription, _, _ = await self._load(key)
            await self._client().delete([keys.state(key), keys.links(key)])
            await self._client().srem(keys.all, [member(key)])
        return subscription

    async def update(self, key: Key, change: Callable[[Subscription, float], T]) -> tuple[Subscription, T]:
        with self._store._operation():
            for _ in range(MAX_ATTEMPTS):
                subscription, now, version = await self._load(key)
                if subscription is None:
                    raise not_found(key[1])
                before = (encode_state(subscription), encode_links(subscription))
                result = change(subscription, now)
                spec = changes(before, (encode_state(subscription), encode_links(subscription)))
                if spec is None or await self._save(key, version, spec):
                    return subscription, result
        raise _contention(key)

    async def keys(self) -> list[Key]:
        with self._store._operation():
            members = await self._client().smembers(self._keys.all)
        return sorted((key_of(value) for value in members), key=lambda key: (key[0] or "", key[1]))

    def local_deadline(self, deadline: float, now: float) -> float:
        return trio.current_time() + (deadline - now)

    def stopped(self) -> None:
        """Nothing to do: the wakes stay in Redis (their leases expire, swept by any instance)."""

    # -- leases ------------------------------------------------------------------------------

    async def note_lease(self, key: Key, deadline: float | None) -> None:
        """Index the lease's end (ms, Redis time). An ended lease is left for the
        sweepers to drop (a removal here could race a newer lease's indexing)."""
        if deadline is None:
            return
        with self._store._operation():
            await self._client().zadd(self._keys.leases, {member(key): int(deadline * 1000)})

    async def due_leases(self, limit: int) -> list[tuple[Key, float]]:
        with self._store._operation():
            flat = await self._script(DUE)(keys=[self._keys.leases], args=[str(limit)])
        return [(key_of(name), float(score)) for name, score in zip(flat[::2], flat[1::2], strict=True)]

    async def drop_lease(self, key: Key, deadline: float) -> None:
        with self._store._operation():
            await self._script(DROP_LEASE)(keys=[self._keys.leases], args=[member(key), str(int(deadline))])

    # -- changes of configuration and members ------------------------------------------------

    async def announce(self, key: Key) -> None:
        fields = {"s": key[1], "i": self.instance}
        if key[0] is not None:
            fields["o"] = key[0]
        with self._store._operation():
            await self._client().xadd(
                self._keys.changes,
                fields,
                trim_strategy=PureToken.MAXLEN,
                threshold=CHANGES_MAXLEN,
                trim_operator=PureToken.APPROXIMATELY,
            )

    async def follow(
        self,
        changed: Callable[[Key], Awaitable[None]],
        lost: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read the change feed from its current end until cancelled (started once
        the end is known), calling ``changed`` for other instances' changes and
        ``lost`` after the feed was lost.

        Cancellation: the only way it ends.
        """
        connection = self._store._connection
        if connection is None:
            raise DurableStreamError(503, "store_unavailable", "the Durable Streams store is not connected")
        key = self._keys.changes
        async with connection.binary_client(
            stream_timeout=max(connection.stream_timeout, FOLLOW_TIMEOUT)
        ) as client:
            top = await client.xrevrange(key, end="+", start="-", count=1)
            last: str | bytes = top[0].identifier if top else "0-0"
            task_status.started()
            delay = 0.05
            origin = self.instance.encode()
            while True:
                try:
                    reply = await client.xread({key: last}, count=1024, block=BLOCK_MS)
                except (coredis.exceptions.RedisError, OSError) as exc:
                    logger.warning("subscription changes: %s; retrying in %.2fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    await lost()
                    continue
                delay = 0.05
                for entries in (reply or {}).values():
                    for entry in entries:
                        last = entry.identifier
                        fields = entry.field_values
                        if fields.get(b"i") != origin:
                            owner = fields.get(b"o")
                            await changed((None if owner is None else _text(owner), _text(fields[b"s"])))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _contention(key: Key) -> DurableStreamError:
    return DurableStreamError(
        503,
        "store_busy",
        f"subscription {key[1]!r} changed too often to update",
        headers={"Retry-After": "1"},
    )
