"""What moved in the layout by layer (issue 13) still works from where it was.

The old public paths import, warn with a ``DeprecationWarning`` and hand out
the very objects of the new ones; the public API of ``trio_streams`` is the
same names as before the move; what pyproject.toml names (the console script,
the pytest plugin, package data) exists.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

import trio_streams

ROOT = Path(__file__).resolve().parent.parent

#: ``trio_streams``'s public names before the move (trio_streams/__init__.py at issue 12).
PUBLIC_API = [
    "AtCapacity",
    "CrossInstanceKeys",
    "Event",
    "EventTooLarge",
    "Gap",
    "HubClosed",
    "Heartbeat",
    "Hub",
    "HubConfig",
    "HubStatistics",
    "Item",
    "KeyClaim",
    "KeysUnavailable",
    "MAX_EVENT_TYPE_LENGTH",
    "MemoryBudget",
    "MemoryBudgetExceeded",
    "MemoryStatistics",
    "MemoryStore",
    "OnConflict",
    "OnDisconnect",
    "OnFinish",
    "Producer",
    "RESERVED_TYPES",
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
    "SharedStore",
    "Store",
    "StoreOverflow",
    "StoreStatistics",
    "StreamError",
    "Subscription",
    "TERMINAL_TYPES",
    "TrioStreamsInternalError",
    "check_event_type",
    "open_hub",
]

#: old module -> (new module, names it re-exports)
MOVED_MODULES = {
    "trio_streams.stores": (
        "trio_streams.log",
        ["KeyClaim", "MemoryStore", "SharedStore", "Store", "StoreStatistics"],
    ),
    "trio_streams.stores.memory": ("trio_streams.log", ["MemoryStore"]),
    "trio_streams.stores.redis": (
        "trio_streams.log.redis",
        [
            "LAYOUT_VERSION",
            "LayoutMismatch",
            "RedisStore",
            "RedisStoreStatistics",
            "RedisUnavailable",
            "check_layout",
            "open_embedded_redis",
        ],
    ),
}
MOVED_NAMES = {
    ("trio_streams.durable", "durable_streams_blueprint"): "trio_streams.web",
}


def test_the_public_api_is_unchanged():
    missing = [name for name in PUBLIC_API if not hasattr(trio_streams, name)]
    assert not missing


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_warns_and_gives_the_same_objects(old, monkeypatch):
    new, names = MOVED_MODULES[old]
    for name in [
        m for m in sys.modules if m == "trio_streams.stores" or m.startswith("trio_streams.stores.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.deprecated_call(match=r"import from trio_streams\.log"):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    for name in names:
        assert getattr(module, name) is getattr(target, name), name


@pytest.mark.parametrize(("old", "name"), sorted(MOVED_NAMES))
def test_an_old_name_warns_and_is_the_same_object(old, name):
    module = importlib.import_module(old)
    with pytest.deprecated_call(match=rf"{name} is deprecated; import it from trio_streams\.web"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(MOVED_NAMES[(old, name)]), name)


def test_an_unknown_name_of_durable_is_still_an_attribute_error():
    import trio_streams.durable

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = trio_streams.durable.nothing_here  # type: ignore[attr-defined]


def test_what_pyproject_names_exists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for target in project["project"]["scripts"].values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), target
    for plugin in project["project"]["entry-points"]["pytest11"].values():
        assert callable(importlib.import_module(plugin).pytest_configure), plugin  # the deprecated shim
    assert callable(importlib.import_module("trio_streams.testing").stream_hub)  # the opt-in plugin
    for package, files in project["tool"]["setuptools"]["package-data"].items():
        for name in files:
            assert (ROOT / package.replace(".", "/") / name).is_file(), (package, name)
