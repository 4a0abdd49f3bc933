"""Deprecated: ``trio_streams.stores.redis`` moved; import from ``trio_streams.log.redis``."""

# relayout: deprecation shim (issue 13)
import warnings

from trio_streams.log.redis import LAYOUT_VERSION as LAYOUT_VERSION
from trio_streams.log.redis import LayoutMismatch as LayoutMismatch
from trio_streams.log.redis import RedisStore as RedisStore
from trio_streams.log.redis import RedisStoreStatistics as RedisStoreStatistics
from trio_streams.log.redis import RedisUnavailable as RedisUnavailable
from trio_streams.log.redis import check_layout as check_layout
from trio_streams.log.redis import open_embedded_redis as open_embedded_redis

warnings.warn(
    "trio_streams.stores.redis is deprecated; import from trio_streams.log.redis",
    DeprecationWarning,
    stacklevel=2,
)
