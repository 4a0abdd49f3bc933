"""Stores: where runs outlive the hub's memory."""

from ._base import KeyClaim as KeyClaim
from ._base import SharedStore as SharedStore
from ._base import Store as Store
from ._base import StoreStatistics as StoreStatistics
from .memory import MemoryStore as MemoryStore
