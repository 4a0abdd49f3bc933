"""``SubscriptionCatalog``: which subscriptions exist, their configuration and members.

The part of :class:`~._subscriptions.SubscriptionRegistry` that keeps
subscriptions (create or confirm, look up, delete, explicit members, the
pattern index, backfill from the store's listing) and knows nothing of
wakes or tasks: the registry adds those (:meth:`SubscriptionCatalog._forget`
is its hook to end a deleted subscription's wake).
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

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._backend import DurableBackend
    from ._offsets import Offset
    from ._sub_config import SubscriptionConfig
    from ._sub_delivery import WebhookDelivery
    from ._webhook_signing import WebhookSigner


def not_found(subscription_id: str) -> DurableStreamError:
    return DurableStreamError(404, "SUBSCRIPTION_NOT_FOUND", f"no subscription {subscription_id!r}")


class SubscriptionCatalog:
    """The subscriptions of this process and their members (see the module docstring)."""

    def __init__(
        self,
        backend: DurableBackend,
        delivery: WebhookDelivery,
        *,
        max_subscriptions: int,
        wall_clock: Callable[[], float],
    ) -> None:
        self.backend = backend
        self.delivery = delivery
        self.max_subscriptions = max_subscriptions
        self._wall_clock = wall_clock
        self._subs: dict[Key, Subscription] = {}
        self._index = MembershipIndex()
        self._callback_urls: dict[Key, str] = {}
        #: Which namespaces hold a subscription of each id (token-authorized requests).
        self._owners: dict[str, set[str | None]] = {}

    def _forget(self, subscription: Subscription) -> None:
        """A hook: ``subscription`` was just deleted (the registry ends its wake)."""

    # -- configuration ---------------------------------------------------------------

    async def put(
        self, owner: str | None, subscription_id: str, config: SubscriptionConfig, callback_url: str
    ) -> tuple[Subscription, bool]:
        """Create the subscription (True), or confirm an identical one (False).

        Raises:
            DurableStreamError: 409 ``SUBSCRIPTION_ALREADY_EXISTS`` (another configuration),
                400 ``WEBHOOK_URL_REJECTED`` / ``INVALID_REQUEST``, 507 too many.

        Cancellation: nothing is created unless this returns.
        """
        key = (owner, subscription_id)
        existing = self._subs.get(key)
        if existing is not None:
            return self._confirm(existing, config), False
        if config.type == "webhook":
            if self.delivery.signer is None:
                raise invalid("webhook subscriptions are not enabled on this server")
            assert config.webhook_url is not None
            await self.delivery.check_url(config.webhook_url)
        tails = await self._tails(owner, config)
        # (Another PUT may have won while we awaited.)
        existing = self._subs.get(key)
        if existing is not None:
            return self._confirm(existing, config), False
        if len(self._subs) >= self.max_subscriptions:
            raise DurableStreamError(
                507, "too_many_subscriptions", "the server holds all the subscriptions it can"
            )
        created = datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(timespec="milliseconds")
        subscription = Subscription(owner, subscription_id, config, created.replace("+00:00", "Z"))
        glob = None if config.pattern is None else Glob.compile(config.pattern)
        for path, tail in tails.items():
            explicit = path in config.streams
            if explicit or (glob is not None and glob.matches(path)):
                subscription.link(path, explicit=explicit, tail=tail)
                if glob is not None and explicit and glob.matches(path):
                    subscription.link(path, explicit=False, tail=tail)
        for path in config.streams:
            subscription.link(path, explicit=True, tail=tails.get(path, START))
            self._index.add_explicit(StreamId(owner, path), key)
        if glob is not None:
            self._index.add_pattern(owner, key, glob)
        self._subs[key] = subscription
        self._owners.setdefault(subscription_id, set()).add(owner)
        self._callback_urls[key] = callback_url
        return subscription, True

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

    def get(self, owner: str | None, subscription_id: str) -> Subscription:
        """The subscription, or 404 ``SUBSCRIPTION_NOT_FOUND``."""
        subscription = self._subs.get((owner, subscription_id))
        if subscription is None:
            raise not_found(subscription_id)
        return subscription

    def callback_url(self, subscription: Subscription) -> str:
        return self._callback_urls[(subscription.owner, subscription.id)]

    def delete(self, owner: str | None, subscription_id: str) -> None:
        """Tombstone the subscription: gone from every index, its wake and lease ended. Idempotent."""
        key = (owner, subscription_id)
        subscription = self._subs.pop(key, None)
        if subscription is None:
            return
        config = subscription.config
        if config.pattern is not None:
            self._index.remove_pattern(owner, key, Glob.compile(config.pattern))
        for path, link in subscription.links.items():
            if link.explicit:
                self._index.remove_explicit(StreamId(owner, path), key)
        for path in config.streams:
            self._index.remove_explicit(StreamId(owner, path), key)
        self._forget(subscription)
        self._callback_urls.pop(key, None)
        owners = self._owners.get(subscription_id)
        if owners is not None:
            owners.discard(owner)
            if not owners:
                del self._owners[subscription_id]

    def owner_for_token(self, subscription_id: str, token: str | None) -> str | None:
        """The namespace whose subscription ``subscription_id`` has, or recently had,
        a wake with ``token`` (``None`` when none has: the request is then fenced or
        not found there)."""
        if token is None:
            return None
        for owner in self._owners.get(subscription_id, ()):
            if self._subs[(owner, subscription_id)].knows_token(token):
                return owner
        return None

    async def add_streams(self, owner: str | None, subscription_id: str, paths: tuple[str, ...]) -> None:
        """Link ``paths`` explicitly (at their tails; idempotent)."""
        self.get(owner, subscription_id)
        tails = {path: await self._tail(owner, path) for path in paths}
        subscription = self.get(owner, subscription_id)  # (it may have been deleted meanwhile)
        key = (owner, subscription_id)
        for path, tail in tails.items():
            subscription.link(path, explicit=True, tail=START if tail is None else tail)
            self._index.add_explicit(StreamId(owner, path), key)

    def remove_stream(self, owner: str | None, subscription_id: str, path: str) -> None:
        """Remove the explicit link of ``path`` (a glob link stays while the pattern matches)."""
        subscription = self.get(owner, subscription_id)
        pattern = subscription.config.pattern
        subscription.unlink_explicit(
            path, still_matches=pattern is not None and Glob.compile(pattern).matches(path)
        )
        self._index.remove_explicit(StreamId(owner, path), (owner, subscription_id))

    def on_delete(self, owner: str | None, name: str) -> None:
        """``name`` of ``owner`` was deleted: its glob links go (explicit links stay, at the start)."""
        stream = StreamId(owner, name)
        for key in self._index.by_pattern(stream):
            subscription = self._subs[key]
            link = subscription.links.get(name)
            if link is not None and not link.explicit:
                subscription.forget(name)
            elif link is not None:
                link.acked = link.tail = START
