"""``SubscribedBackend``: any Durable Streams store, telling a subscription registry about its data.

It forwards every operation to the store it wraps and, once a create or an
append succeeded, calls :meth:`~._subscriptions.SubscriptionRegistry.on_data`
with the stream's new tail (and ``on_delete`` after a delete). The registry
step is synchronous: matching costs the append the pattern index's lookup,
nothing that awaits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._backend import DurableBackend, StreamInfo
    from ._offsets import Offset
    from ._reads import ReadSource
    from ._stream import AppendOutcome, AppendRequest, CreateRequest
    from ._subscriptions import SubscriptionRegistry


class SubscribedBackend:
    """``inner`` as a :class:`~._backend.DurableBackend` that feeds ``registry``."""

    def __init__(self, inner: DurableBackend, registry: SubscriptionRegistry) -> None:
        self.inner = inner
        self.registry = registry

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> tuple[StreamInfo, bool]:
        stream, created = await self.inner.create(name, request, owner=owner)
        if created:
            self.registry.on_data(owner, name, stream.tail)
        return stream, created

    async def append(self, name: str, request: AppendRequest, *, owner: str | None = None) -> AppendOutcome:
        outcome = await self.inner.append(name, request, owner=owner)
        if request.body:
            self.registry.on_data(owner, name, outcome.next_offset)
        return outcome

    async def head(self, name: str, *, owner: str | None = None) -> StreamInfo:
        return await self.inner.head(name, owner=owner)

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        await self.inner.delete(name, owner=owner)
        self.registry.on_delete(owner, name)

    async def open_read(self, name: str, *, owner: str | None = None) -> ReadSource:
        return await self.inner.open_read(name, owner=owner)

    async def list_tails(self, *, owner: str | None = None) -> list[tuple[str, Offset]]:
        list_tails = getattr(self.inner, "list_tails", None)
        return [] if list_tails is None else list(await list_tails(owner=owner))

    def end_live_reads(self) -> None:
        self.inner.end_live_reads()

    def resume_live_reads(self) -> None:
        self.inner.resume_live_reads()


def with_subscriptions(inner: DurableBackend, **options: Any) -> SubscribedBackend:
    """``inner`` wrapped for a new :class:`~._subscriptions.SubscriptionRegistry`
    (``options`` are its arguments); the registry's own writes (wake events)
    go through the wrapper too, so they are seen like any other data.

    The registry is ``.registry``; run it with ``nursery.start(backend.registry.serve)``.
    Over a :class:`~.redis._store.RedisDurableStore` the subscriptions are in
    its Redis too (:class:`~.redis._sub_state.RedisSubscriptionState`: shared by
    every instance, kept across restarts) unless ``options`` name a ``state``.
    """
    from ._subscriptions import SubscriptionRegistry
    from .redis._store import RedisDurableStore

    if "state" not in options and isinstance(inner, RedisDurableStore):
        from .redis._sub_state import RedisSubscriptionState

        options["state"] = RedisSubscriptionState(inner)

    registry = SubscriptionRegistry(inner, **options)
    backend = SubscribedBackend(inner, registry)
    registry.backend = backend
    return backend
