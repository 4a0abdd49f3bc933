"""The log engine both policies stand on: runs (``ReplayLog``) and Durable Streams (``StreamLog``).

What lives here: entries with positions (``_entries``), the bounded
in-memory tail (``_tail``), wake-ups for readers and the live-reads latch
(``_wakeup``), and the memory budget the tails are charged to
(``_budget``). Rule: nothing here imports the runs engine, Durable Streams,
the protocol, web or CLI code; they import this.
"""

from ._entries import Entry as Entry
from ._entries import cut_to_bytes as cut_to_bytes
from ._memory import MemoryStore as MemoryStore
from ._store import KeyClaim as KeyClaim
from ._store import SharedStore as SharedStore
from ._store import Store as Store
from ._store import StoreStatistics as StoreStatistics
from ._tail import UNBOUNDED as UNBOUNDED
from ._tail import Meter as Meter
from ._tail import Tail as Tail
from ._wakeup import Changed as Changed
from ._wakeup import LiveReads as LiveReads
