"""The memory budget moved into the log engine: :mod:`trio_streams.log._budget`.

This module re-exports it, so imports of ``trio_streams._budget`` keep working.
"""

from .log._budget import HEADROOM_SHARE as HEADROOM_SHARE
from .log._budget import Account as Account
from .log._budget import EventTooLarge as EventTooLarge
from .log._budget import MemoryBudget as MemoryBudget
from .log._budget import MemoryBudgetExceeded as MemoryBudgetExceeded
from .log._budget import MemoryStatistics as MemoryStatistics
from .log._budget import Part as Part
from .log._budget import RunLedger as RunLedger
from .log._budget import mib as mib
