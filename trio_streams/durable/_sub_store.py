"""Where subscriptions' state lives: the :class:`SubscriptionState` interface, and in process.

The registry (:mod:`._subscriptions`) changes a subscription only through
:meth:`SubscriptionState.update`, giving it a *change*: a synchronous
function ``change(subscription, now) -> result`` that applies the rules
(:class:`~._sub_state.Subscription`'s transitions) and may raise a
:class:`~._errors.DurableStreamError` to refuse. The store makes the change
atomic per subscription:

- :class:`MemorySubscriptionState` (this module): the subscriptions are
  objects in a dict and a change runs on the object itself, in one
  synchronous step (no checkpoint), with ``now`` = ``trio.current_time()``:
  atomic in this process, exact on the mock clock;
- :class:`~.redis._sub_state.RedisSubscriptionState`: a change runs on a
  fresh copy loaded from Redis, and is saved only if nobody saved in
  between (compare-and-set on a version, retried): atomic across every
  instance, with ``now`` = Redis ``TIME``.

So a change must be a pure function of the subscription (it may run more
than once), and whatever it makes happen (tasks, POSTs) happens after it
returned. ``shared`` tells the registry which world it is in: with a shared
store, other instances change subscriptions too (it follows their changes,
sweeps leases whose holder died, and defers an append's matching to a
background task so that appends never wait for Redis).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio

from ._errors import DurableStreamError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._sub_index import SubscriptionKey as Key
    from ._sub_state import Subscription

T = TypeVar("T")


def not_found(subscription_id: str) -> DurableStreamError:
    return DurableStreamError(404, "SUBSCRIPTION_NOT_FOUND", f"no subscription {subscription_id!r}")


class SubscriptionState(Protocol):
    """What the registry needs of a subscription store (see the module docstring)."""

    #: This instance's name (a wake's ``deliverer``).
    instance: str
    #: Other instances share the state (Redis): see the module docstring.
    shared: bool

    async def create(self, subscription: Subscription) -> tuple[Subscription, bool]:
        """Store ``subscription`` unless one with its key exists: (the stored one, created)."""
        ...

    async def get(self, key: Key) -> Subscription | None:
        """The subscription as stored now (``None``: none)."""
        ...

    async def delete(self, key: Key) -> Subscription | None:
        """Remove the subscription; the removed one (``None``: there was none)."""
        ...

    async def update(self, key: Key, change: Callable[[Subscription, float], T]) -> tuple[Subscription, T]:
        """Apply ``change`` atomically; the subscription after it, and its result.

        Raises:
            DurableStreamError: 404 unknown subscription; whatever ``change`` raised
                (then nothing changed).
        """
        ...

    async def keys(self) -> list[Key]:
        """Every subscription's key."""
        ...

    def local_deadline(self, deadline: float, now: float) -> float:
        """The trio time of ``deadline`` (in the store's clock, read as ``now`` by an update)."""
        ...

    async def note_lease(self, key: Key, deadline: float | None) -> None:
        """Index the lease deadline of ``key``'s wake for the sweepers (``None``: no lease)."""
        ...

    def stopped(self) -> None:
        """The registry stopped serving (no lease task of it runs any more)."""
        ...


class MemorySubscriptionState:
    """Subscriptions in this process (see the module docstring)."""

    shared = False

    def __init__(self) -> None:
        self.instance = secrets.token_hex(8)
        self.subscriptions: dict[Key, Subscription] = {}

    async def create(self, subscription: Subscription) -> tuple[Subscription, bool]:
        key = (subscription.owner, subscription.id)
        existing = self.subscriptions.get(key)
        if existing is not None:
            return existing, False
        self.subscriptions[key] = subscription
        return subscription, True

    async def get(self, key: Key) -> Subscription | None:
        return self.subscriptions.get(key)

    async def delete(self, key: Key) -> Subscription | None:
        return self.subscriptions.pop(key, None)

    async def update(self, key: Key, change: Callable[[Subscription, float], T]) -> tuple[Subscription, T]:
        return self.update_now(key, change)

    def update_now(self, key: Key, change: Callable[[Subscription, float], T]) -> tuple[Subscription, T]:
        """:meth:`update`, synchronously (an append's matching runs here, in its request)."""
        subscription = self.subscriptions.get(key)
        if subscription is None:
            raise not_found(key[1])
        return subscription, change(subscription, trio.current_time())

    async def keys(self) -> list[Key]:
        return list(self.subscriptions)

    def local_deadline(self, deadline: float, now: float) -> float:
        return deadline  # (the store's clock is trio's)

    async def note_lease(self, key: Key, deadline: float | None) -> None:
        """Nothing to index: the lease tasks of this one process are the only ones."""

    def stopped(self) -> None:
        # Their lease tasks are gone: end every wake, so that a later serve()
        # wakes pending work afresh (new generations).
        for subscription in self.subscriptions.values():
            subscription.wake = None
