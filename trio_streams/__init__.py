"""trio_streams: runs that outlive their requests, on trio.

Start a producer in a hub; it is drained in the hub's nursery, its events are
kept in a replay log and a store, fanned out to any number of subscribers,
and it can be resumed, watched or aborted later.
"""

import typing

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
from ._version import __version__ as __version__
from .log import KeyClaim as KeyClaim
from .log import MemoryStore as MemoryStore
from .log import SharedStore as SharedStore
from .log import Store as Store
from .log import StoreStatistics as StoreStatistics
from .log._budget import EventTooLarge as EventTooLarge
from .log._budget import MemoryBudget as MemoryBudget
from .log._budget import MemoryBudgetExceeded as MemoryBudgetExceeded
from .log._budget import MemoryStatistics as MemoryStatistics
from .log._events import MAX_EVENT_TYPE_LENGTH as MAX_EVENT_TYPE_LENGTH
from .log._events import RESERVED_TYPES as RESERVED_TYPES
from .log._events import TERMINAL_TYPES as TERMINAL_TYPES
from .log._events import Event as Event
from .log._events import Gap as Gap
from .log._events import Heartbeat as Heartbeat
from .log._events import Item as Item
from .log._events import check_event_type as check_event_type
from .log._replay_log import ReplayLog as ReplayLog
from .log._replay_log import ReplayLogStatistics as ReplayLogStatistics
from .runs._config import CrossInstanceKeys as CrossInstanceKeys
from .runs._config import HubConfig as HubConfig
from .runs._config import HubStatistics as HubStatistics
from .runs._config import OnFinish as OnFinish
from .runs._hub import Hub as Hub
from .runs._hub import Producer as Producer
from .runs._hub import RunNotLive as RunNotLive
from .runs._open_hub import open_hub as open_hub
from .runs._run import OnConflict as OnConflict
from .runs._run import OnDisconnect as OnDisconnect
from .runs._run import Run as Run
from .runs._run import RunContext as RunContext
from .runs._run import RunInfo as RunInfo
from .runs._run import RunOutcome as RunOutcome
from .runs._run import RunStatus as RunStatus
from .runs._subscription import Subscription as Subscription

if typing.TYPE_CHECKING:
    from .cli._plan import ServeConfigError as ServeConfigError
    from .cli._plan import ServePlan as ServePlan
    from .cli._plan import ServeStartupError as ServeStartupError
    from .cli._serve import serve_plan as serve_plan
    from .cli._server import serve as serve

#: The server, for embedding: imported on first use, so that ``import
#: trio_streams`` does not load Hypercorn and Quart.
_SERVE_NAMES = {
    "serve": "._server",
    "serve_plan": "._serve",
    "ServePlan": "._plan",
    "ServeConfigError": "._plan",
    "ServeStartupError": "._plan",
}


def __getattr__(name: str) -> typing.Any:
    """``serve`` and its configuration, imported from ``trio_streams.cli`` on first use."""
    module = _SERVE_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'trio_streams' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, "trio_streams.cli"), name)
    globals()[name] = value
    return value


#: Every public name (docs/api.md lists each; tests/test_public_api.py checks both).
__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "RESERVED_TYPES",
    "TERMINAL_TYPES",
    "AtCapacity",
    "CrossInstanceKeys",
    "Event",
    "EventTooLarge",
    "Gap",
    "Heartbeat",
    "Hub",
    "HubClosed",
    "HubConfig",
    "HubStatistics",
    "Item",
    "KeyClaim",
    "KeysUnavailable",
    "MemoryBudget",
    "MemoryBudgetExceeded",
    "MemoryStatistics",
    "MemoryStore",
    "OnConflict",
    "OnDisconnect",
    "OnFinish",
    "Producer",
    "ReplayLog",
    "ReplayLogStatistics",
    "Run",
    "RunClosed",
    "RunConflict",
    "RunContext",
    "RunFailed",
    "RunInfo",
    "RunNotFound",
    "RunNotLive",
    "RunOutcome",
    "RunStatus",
    "ServeConfigError",
    "ServePlan",
    "ServeStartupError",
    "SharedStore",
    "Store",
    "StoreOverflow",
    "StoreStatistics",
    "StreamError",
    "Subscription",
    "TrioStreamsInternalError",
    "__version__",
    "check_event_type",
    "open_hub",
    "serve",
    "serve_plan",
]
