"""``SubscriptionCatalog``: which subscriptions exist, their configuration and members.

The part of :class:`~._subscriptions.SubscriptionRegistry` that keeps
subscriptions (create or confirm, look up, delete, explicit members, the
pattern index, backfill from the store's listing) and knows nothing of
wakes or tasks: the registry adds those (:meth:`SubscriptionCatalog._forget`
is its hook to end a deleted subscription's wake).

The subscriptions themselves are in a :class:`~._sub_store.SubscriptionState`
(in process, or in Redis shared by every instance); the pattern index
(which subscriptions an append matches) is in this process either way,
kept by :meth:`SubscriptionCatalog.reindex` from each subscription's pattern
and explicit members -- after this instance's own changes, and, with a
shared store, after other instances' (:mod:`._sub_shared`).
Subscriptions are in their owner's namespace like streams: ``(owner, id)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._access import StreamId
from ._errors import DurableStreamError
from ._offsets import START
from ._sub_config import invalid
from ._sub_index import Glob, MembershipIndex
from ._sub_index import SubscriptionKey as Key
from ._sub_state import Subscription
from ._sub_store import not_found as not_found

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._backend import DurableBackend
    from ._offsets import Offset
    from ._sub_config import SubscriptionConfig
    from ._sub_delivery import WebhookDelivery
    from ._sub_store import SubscriptionState
    from ._webhook_signing import WebhookSigner

#: What the index holds of one subscription: its pattern and its explicit members.
Indexed = tuple[Glob | None, frozenset[str]]


class SubscriptionCatalog:
    """The subscriptions and their members (see the module docstring)."""

    def __init__(
        self,
        backend: DurableBackend,
        delivery: WebhookDelivery,
        state: SubscriptionState,
        *,
        max_subscriptions: int,
        wall_clock: Callable[[], float],
    ) -> None:
        self.backend = backend
        self.delivery = delivery
        self.state = state
        self.max_subscriptions = max_subscriptions
        self._wall_clock = wall_clock
        self._index = MembershipIndex()
        #: What the index holds, by subscription (what a reindex compares against).
        self._indexed: dict[Key, Indexed] = {}
        #: Which namespaces hold a subscription of each id (token-authorized requests).
        self._owners: dict[str, set[str | None]] = {}

    def _forget(self, key: Key) -> None:
        """A hook: subscription ``key`` was just deleted (the registry ends its lease task)."""

    async def _changed(self, key: Key) -> None:
        """A hook: this instance changed ``key``'s configuration or members (shared: tell the others)."""

    # -- the index -------------------------------------------------------------------

    def reindex(self, subscription: Subscription) -> None:
        """Make the index hold ``subscription``'s pattern and explicit members as they are now."""
        key = (subscription.owner, subscription.id)
        pattern = subscription.config.pattern
        old = self._indexed.get(key)
        glob = old[0] if old is not None and old[0] is not None else None
        if pattern is not None and (glob is None or glob.text != pattern):
            glob = Glob.compile(pattern)
        new: Indexed = (
            glob if pattern is not None else None,
            frozenset(path for path, link in subscription.links.items() if link.explicit),
        )
        if old == new:
            return
        self._unindex(key)
        if new[0] is not None:
            self._index.add_pattern(key[0], key, new[0])
        for path in new[1]:
            self._index.add_explicit(StreamId(key[0], path), key)
        self._indexed[key] = new
        self._owners.setdefault(key[1], set()).add(key[0])

    def _unindex(self, key: Key) -> None:
        old = self._indexed.pop(key, None)
        if old is None:
            return
        if old[0] is not None:
            self._index.remove_pattern(key[0], key, old[0])
        for path in old[1]:
            self._index.remove_explicit(StreamId(key[0], path), key)
        owners = self._owners.get(key[1])
        if owners is not None:
            owners.discard(key[0])
            if not owners:
                del self._owners[key[1]]

    def matching(self, owner: str | None, name: str) -> tuple[set[Key], set[Key]]:
        """The subscriptions ``name`` of ``owner`` belongs to: (by pattern, explicitly)."""
        if not self._indexed:
            return set(), set()  # (the common case on a server nobody subscribed on: no lookup)
        stream = StreamId(owner, name)
        return set(self._index.by_pattern(stream)), set(self._index.by_explicit(stream))

    # -- configuration ---------------------------------------------------------------

    async def put(
        self, owner: str | None, subscription_id: str, config: SubscriptionConfig, callback_url: str
    ) -> tuple[Subscription, bool]:
        """Create the subscription (True), or confirm an identical one (False).

        Raises:
            DurableStreamError: 409 ``SUBSCRIPTION_ALREADY_EXISTS`` (another configuration),
                400 ``WEBHOOK_URL_REJECTED`` / ``INVALID_REQUEST``, 507 too many.

        Cancellation: nothing is created unless the store's create ran.
        """
        key = (owner, subscription_id)
        existing = await self.state.get(key)
        if existing is not None:
            return self._confirm(existing, config), False
        if config.type == "webhook":
            if self.delivery.signer is None:
                raise invalid("webhook subscriptions are not enabled on this server")
            assert config.webhook_url is not None
            await self.delivery.check_url(config.webhook_url)
        tails = await self._tails(owner, config)
        if len(self._indexed) >= self.max_subscriptions:
            raise DurableStreamError(
                507, "too_many_subscriptions", "the server holds all the subscriptions it can"
            )
        created = datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(timespec="milliseconds")
        subscription = Subscription(
            owner, subscription_id, config, created.replace("+00:00", "Z"), callback_url=callback_url
        )
        glob = None if config.pattern is None else Glob.compile(config.pattern)
        for path, tail in tails.items():
            explicit = path in config.streams
            if explicit or (glob is not None and glob.matches(path)):
                subscription.link(path, explicit=explicit, tail=tail)
                if glob is not None and explicit and glob.matches(path):
                    subscription.link(path, explicit=False, tail=tail)
        for path in config.streams:
            subscription.link(path, explicit=True, tail=tails.get(path, START))
        # (Another PUT, here or on another instance, may have won while we awaited.)
        stored, made = await self.state.create(subscription)
        if not made:
            return self._confirm(stored, config), False
        self.reindex(stored)
        await self._changed(key)
        return stored, True

    @staticmethod
    def _confirm(existing: Subscription, config: SubscriptionConfig) -> Subscription:
        if existing.config.digest != config.digest:
            raise DurableStreamError(
                409,
                "SUBSCRIPTION_ALREADY_EXISTS",
                "a subscription with this id exists with another configuration",
            )
        return existing

    async def _tails(self, owner: str | None, config: SubscriptionConfig) -> dict[str, Offset]:
        """Tails of the streams to link now: the listing (for a pattern) and the explicit ones."""
        tails: dict[str, Offset] = {}
        list_tails = getattr(self.backend, "list_tails", None)
        if config.pattern is not None and list_tails is not None:
            glob = Glob.compile(config.pattern)
            for name, tail in await list_tails(owner=owner):
                if glob.matches(name):
                    tails[name] = tail
        for path in config.streams:
            if path not in tails:
                tail = await self._tail(owner, path)
                if tail is not None:
                    tails[path] = tail
        return tails

    async def _tail(self, owner: str | None, path: str) -> Offset | None:
        try:
            return (await self.backend.head(path, owner=owner)).tail
        except DurableStreamError as exc:
            if exc.status in (404, 410):
                return None
            raise

    @property
    def signer(self) -> WebhookSigner | None:
        """The webhook signing key (``None``: webhooks are refused)."""
        return self.delivery.signer

    async def get(self, owner: str | None, subscription_id: str) -> Subscription:
        """The subscription as stored now, or 404 ``SUBSCRIPTION_NOT_FOUND``."""
        subscription = await self.state.get((owner, subscription_id))
        if subscription is None:
            raise not_found(subscription_id)
        return subscription

    def callback_url(self, subscription: Subscription) -> str:
        return subscription.callback_url

    async def delete(self, owner: str | None, subscription_id: str) -> None:
        """Tombstone the subscription: gone from every index, its wake and lease ended. Idempotent.

        Raises:
            DurableStreamError: 404 ``SUBSCRIPTION_NOT_FOUND`` (there was none).
        """
        key = (owner, subscription_id)
        subscription = await self.state.delete(key)
        self._unindex(key)
        self._forget(key)
        if subscription is None:
            raise not_found(subscription_id)
        await self._changed(key)

    async def owner_for_token(self, subscription_id: str, token: str | None) -> str | None:
        """The namespace whose subscription ``subscription_id`` has, or recently had,
        a wake with ``token`` (``None`` when none has: the request is then fenced or
        not found there)."""
        if token is None:
            return None
        for owner in sorted(self._owners.get(subscription_id, ()), key=lambda owner: owner or ""):
            subscription = await self.state.get((owner, subscription_id))
            if subscription is not None and subscription.knows_token(token):
                return owner
        return None

    async def add_streams(self, owner: str | None, subscription_id: str, paths: tuple[str, ...]) -> None:
        """Link ``paths`` explicitly (at their tails; idempotent)."""
        await self.get(owner, subscription_id)
        tails = {path: await self._tail(owner, path) for path in paths}

        def link(subscription: Subscription, now: float) -> None:
            for path, tail in tails.items():
                subscription.link(path, explicit=True, tail=START if tail is None else tail)

        # (It may have been deleted meanwhile: then a 404.)
        subscription, _ = await self.state.update((owner, subscription_id), link)
        self.reindex(subscription)
        await self._changed((owner, subscription_id))

    async def remove_stream(self, owner: str | None, subscription_id: str, path: str) -> None:
        """Remove the explicit link of ``path`` (a glob link stays while the pattern matches)."""

        def unlink(subscription: Subscription, now: float) -> None:
            pattern = subscription.config.pattern
            subscription.unlink_explicit(
                path, still_matches=pattern is not None and Glob.compile(pattern).matches(path)
            )

        subscription, _ = await self.state.update((owner, subscription_id), unlink)
        self.reindex(subscription)
        await self._changed((owner, subscription_id))
