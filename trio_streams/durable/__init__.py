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

from typing import Any

from ._access import DurableAccess as DurableAccess
from ._access import StreamId as StreamId
from ._backend import DurableBackend as DurableBackend
from ._backend import MemoryBackend as MemoryBackend
from ._errors import DurableStreamError as DurableStreamError
from ._offsets import Offset as Offset
from ._reads import ReadSettings as ReadSettings
from ._redis_batch import GroupCommitStatistics as GroupCommitStatistics
from ._redis_store import RedisDurableStore as RedisDurableStore
from ._runs import RunAccess as RunAccess
from ._store import DurableStoreStatistics as DurableStoreStatistics
from ._store import DurableStreamStore as DurableStreamStore
from ._stream import AppendRequest as AppendRequest
from ._stream import CreateRequest as CreateRequest
from ._stream import DurableStream as DurableStream
from ._stream import ForkSpec as ForkSpec


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that importing the rules and stores loads no web framework.
    if name == "durable_streams_blueprint":
        from ..web._durable_routes import durable_streams_blueprint

        return durable_streams_blueprint
    if name == "RunStreams":
        from ..protocol import RunStreams

        return RunStreams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
