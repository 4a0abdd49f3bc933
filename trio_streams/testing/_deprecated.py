"""The fixtures as the deprecated ``pytest11`` entry point gives them: working, with a warning.

Registered by :mod:`trio_streams._pytest_entry_point` only in a session that did not opt in to
``trio_streams.testing``. A test that uses one of them gets one
``DeprecationWarning`` saying how to opt in; the fixtures behave exactly as
the plugin's (the same code). This module goes away with the entry point.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pytest
import trio

from . import _fixtures

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trio.testing

    from ..runs._hub import Hub

#: The name the plugin is registered under once a session opts in.
PLUGIN = "trio_streams.testing"
MESSAGE = (
    "trio_streams' pytest fixtures (stream_hub, stream_hub_options, stream_hub_deadline) come from its "
    "pytest11 entry point, which loads them into every pytest session; that entry point goes away in "
    'the next release. Opt in: pytest_plugins = ["trio_streams.testing"] in your top-level conftest.py, '
    "or -p trio_streams.testing (e.g. in addopts)."
)
_WARNED = pytest.StashKey[bool]()


def warn_once(request: pytest.FixtureRequest) -> None:
    """Warn the first time a test uses one of these fixtures, unless the session opted in since."""
    if request.config.pluginmanager.has_plugin(PLUGIN) or request.node.stash.get(_WARNED, False):
        return
    request.node.stash[_WARNED] = True
    warnings.warn(MESSAGE, DeprecationWarning, stacklevel=2)


@pytest.fixture
def stream_hub_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Deprecated loading of ``trio_streams.testing``'s ``stream_hub_options``."""
    warn_once(request)
    return {}


@pytest.fixture
def stream_hub_deadline(request: pytest.FixtureRequest) -> float | None:
    """Deprecated loading of ``trio_streams.testing``'s ``stream_hub_deadline``."""
    warn_once(request)
    return _fixtures.DEFAULT_STREAM_HUB_DEADLINE


@pytest.fixture
async def stream_hub(
    request: pytest.FixtureRequest,
    autojump_clock: trio.testing.MockClock,
    stream_hub_options: dict[str, Any],
    stream_hub_deadline: float | None,
) -> AsyncIterator[Hub]:
    """Deprecated loading of ``trio_streams.testing``'s ``stream_hub`` (the same hub)."""
    warn_once(request)
    async with _fixtures.open_stream_hub(autojump_clock, stream_hub_options, stream_hub_deadline) as hub:
        yield hub
