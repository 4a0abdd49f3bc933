"""Durable Streams: the open HTTP protocol for append-only, resumable streams, on trio.

``DurableStreamStore`` keeps streams in memory, ``RedisDurableStore`` in
Redis (shared by every instance on it); ``durable_streams_blueprint``
serves them (and, given a ``RunStreams``, the hub's runs, read-only) on any
Quart-Trio app. ``TrioStreams`` mounts both at ``/v1/stream`` by default.
See docs/durable.md.

Nothing in this package imports a web framework: ``durable_streams_blueprint``
(:mod:`trio_streams.web`) and ``RunStreams`` (:mod:`trio_streams.protocol`)
are still importable from here, loaded on first use.
"""

from ._access import DurableAccess as DurableAccess
from ._access import StreamId as StreamId
from ._backend import DurableBackend as DurableBackend
from ._backend import MemoryBackend as MemoryBackend
from ._errors import DurableStreamError as DurableStreamError
from ._offsets import Offset as Offset
from ._reads import ReadSettings as ReadSettings
from ._runs import RunAccess as RunAccess
from ._store import DurableStoreStatistics as DurableStoreStatistics
from ._store import DurableStreamStore as DurableStreamStore
from ._stream import AppendRequest as AppendRequest
from ._stream import CreateRequest as CreateRequest
from ._stream import DurableStream as DurableStream
from ._stream import ForkSpec as ForkSpec
from ._sub_backend import SubscribedBackend as SubscribedBackend
from ._sub_backend import with_subscriptions as with_subscriptions
from ._sub_store import MemorySubscriptionState as MemorySubscriptionState
from ._sub_store import SubscriptionState as SubscriptionState
from ._subscriptions import SubscriptionRegistry as SubscriptionRegistry
from .redis._batch import GroupCommitStatistics as GroupCommitStatistics
from .redis._store import RedisDurableStore as RedisDurableStore
from .redis._sub_state import RedisSubscriptionState as RedisSubscriptionState

# relayout: deprecated names (issue 13) -- start
# Names that moved to another public package. Looked up lazily (and with a
# DeprecationWarning) so that this package never imports the one they moved to.
_MOVED = {
    "RunStreams": "trio_streams.protocol",
    "durable_streams_blueprint": "trio_streams.web",
}


def __getattr__(name: str) -> object:
    import importlib
    import warnings

    if name == "WebhookSigner":  # loaded on first use: it imports cryptography
        from ._webhook_signing import WebhookSigner

        return WebhookSigner
    if name in _MOVED:
        target = _MOVED[name]
        warnings.warn(
            f"{__name__}.{name} is deprecated; import it from {target}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# relayout: deprecated names (issue 13) -- end
