"""Deprecated: ``trio_streams.stores`` moved; import from ``trio_streams.log``."""

# relayout: deprecation shim (issue 13)
import warnings

from trio_streams.log import KeyClaim as KeyClaim
from trio_streams.log import MemoryStore as MemoryStore
from trio_streams.log import SharedStore as SharedStore
from trio_streams.log import Store as Store
from trio_streams.log import StoreStatistics as StoreStatistics

warnings.warn(
    "trio_streams.stores is deprecated; import from trio_streams.log",
    DeprecationWarning,
    stacklevel=2,
)
