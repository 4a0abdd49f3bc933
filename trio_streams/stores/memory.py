"""Deprecated: ``trio_streams.stores.memory`` moved; import from ``trio_streams.log``."""

# relayout: deprecation shim (issue 13)
import warnings

from trio_streams.log import MemoryStore as MemoryStore

warnings.warn(
    "trio_streams.stores.memory is deprecated; import from trio_streams.log",
    DeprecationWarning,
    stacklevel=2,
)
