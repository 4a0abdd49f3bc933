"""The Redis layer: client, keys, scripts, the batched writer, tail reader, claims, embedded server."""

from ._client import RedisUnavailable as RedisUnavailable
from ._layout import LAYOUT_VERSION as LAYOUT_VERSION
from ._layout import LayoutMismatch as LayoutMismatch
from ._layout import check_layout as check_layout
from ._server import open_embedded_redis as open_embedded_redis
from ._store import RedisStore as RedisStore
from ._store import RedisStoreStatistics as RedisStoreStatistics
