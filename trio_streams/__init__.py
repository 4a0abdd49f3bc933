"""trio_streams: runs that outlive their requests, on trio.

Start a producer in a hub; it is drained in the hub's nursery, its events are
kept in a replay log and a store, fanned out to any number of subscribers,
and it can be resumed, watched or aborted later.
"""

from ._budget import EventTooLarge as EventTooLarge
from ._budget import MemoryBudget as MemoryBudget
from ._budget import MemoryBudgetExceeded as MemoryBudgetExceeded
from ._budget import MemoryStatistics as MemoryStatistics
from ._config import CrossInstanceKeys as CrossInstanceKeys
from ._config import HubConfig as HubConfig
from ._config import HubStatistics as HubStatistics
from ._config import OnFinish as OnFinish
from ._errors import AtCapacity as AtCapacity
from ._errors import HubClosed as HubClosed
from ._errors import KeysUnavailable as KeysUnavailable
from ._errors import RunClosed as RunClosed
from ._errors import RunConflict as RunConflict
from ._errors import RunFailed as RunFailed
from ._errors import RunNotFound as RunNotFound
from ._errors import StoreOverflow as StoreOverflow
from ._errors import StreamError as StreamError
from ._errors import TrioStreamsInternalError as TrioStreamsInternalError
from ._events import MAX_EVENT_TYPE_LENGTH as MAX_EVENT_TYPE_LENGTH
from ._events import RESERVED_TYPES as RESERVED_TYPES
from ._events import TERMINAL_TYPES as TERMINAL_TYPES
from ._events import Event as Event
from ._events import Gap as Gap
from ._events import Heartbeat as Heartbeat
from ._events import Item as Item
from ._events import check_event_type as check_event_type
from ._hub import Hub as Hub
from ._hub import Producer as Producer
from ._hub import RunNotLive as RunNotLive
from ._log import ReplayLog as ReplayLog
from ._log import ReplayLogStatistics as ReplayLogStatistics
from ._open_hub import open_hub as open_hub
from ._run import OnConflict as OnConflict
from ._run import OnDisconnect as OnDisconnect
from ._run import Run as Run
from ._run import RunContext as RunContext
from ._run import RunInfo as RunInfo
from ._run import RunOutcome as RunOutcome
from ._run import RunStatus as RunStatus
from ._subscription import Subscription as Subscription
from .stores import KeyClaim as KeyClaim
from .stores import MemoryStore as MemoryStore
from .stores import SharedStore as SharedStore
from .stores import Store as Store
from .stores import StoreStatistics as StoreStatistics

__version__ = "0.1.0"
